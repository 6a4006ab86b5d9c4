"""apps/rooms/hub.py against a real Redis: sockets subscribing in the same moment share one
SUBSCRIBE; every subscriber, not only a channel's first, returns once Redis confirmed the
subscription; an unsubscription and a subscription of one channel made one after the other reach
Redis in that order, so the channel ends subscribed and its events arrive."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as aioredis
from django.conf import settings

from apps.rooms.hub import RoomHub

pytestmark = pytest.mark.redis


class Listener:
    """A subscriber that records the events it is given (and takes no frame)."""

    def __init__(self) -> None:
        self.connection_id = uuid.uuid4().hex
        self.base_send = None
        self.direct = None
        self.heard: list[dict] = []

    def on_event(self, channel, event) -> bool:
        self.heard.append(event)
        return False

    def on_slow(self) -> None: ...


def with_hub(check: Callable[[RoomHub, aioredis.Redis, list], Awaitable[None]]) -> None:
    """Runs ``check(hub, client, sent)`` on a started hub; ``sent`` records each (un)subscription
    command the hub's pub/sub connection sends, as (kind, channels)."""

    async def run():
        hub = RoomHub()
        await hub.ensure_started()
        client = aioredis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
        sent: list[tuple[str, tuple[str, ...]]] = []
        try:
            await asyncio.wait_for(hub._connected.wait(), 5)
            pubsub = hub._pubsub
            for kind in ("subscribe", "unsubscribe"):
                original = getattr(pubsub, kind)

                async def recorded(*channels, _kind=kind, _original=original):
                    sent.append((_kind, channels))
                    return await _original(*channels)

                setattr(pubsub, kind, recorded)
            await check(hub, client, sent)
        finally:
            for task in (hub._reader, getattr(hub.presence, "_task", None)):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await client.aclose()
            await hub.redis.aclose()
            await hub._subscriber.aclose()

    asyncio.run(run())


def channels(n: int) -> list[str]:
    tag = uuid.uuid4().hex[:8]
    return [f"synctv:test:sub:{tag}:{i}" for i in range(n)]


async def numsub(client: aioredis.Redis, names: list[str]) -> dict[str, int]:
    return dict(await client.pubsub_numsub(*names))


def test_sockets_subscribing_together_share_one_subscribe_and_each_returns_confirmed():
    async def check(hub, client, sent):
        names = channels(40)
        await asyncio.gather(*(hub.subscribe(name, Listener()) for name in names))
        # The first goes out at once; the other 39 were submitted while it was in flight.
        assert [kind for kind, _ in sent] == ["subscribe"] * len(sent)
        assert len(sent) <= 2
        assert sorted(c for _, batch in sent for c in batch) == sorted(names)
        # Every subscribe returned only once Redis counted it: nothing to wait for here.
        assert await numsub(client, names) == dict.fromkeys(names, 1)

    with_hub(check)


def test_a_second_subscriber_waits_for_the_confirmation_the_first_is_waiting_for():
    async def check(hub, client, sent):
        (name,) = channels(1)
        first = asyncio.ensure_future(hub.subscribe(name, Listener()))
        await asyncio.sleep(0)  # the first has registered its confirmation and sent nothing yet
        assert name in hub._confirm
        second = asyncio.ensure_future(hub.subscribe(name, Listener()))
        await asyncio.sleep(0)
        assert not second.done()  # before this change it returned at once, unconfirmed
        await asyncio.gather(first, second)
        assert await numsub(client, [name]) == {name: 1}
        assert name not in hub._confirm
        assert sent == [("subscribe", (name,))]

    with_hub(check)


def test_unsubscribing_then_subscribing_again_at_once_leaves_the_channel_subscribed():
    async def check(hub, client, sent):
        (name,) = channels(1)
        leaving, coming = Listener(), Listener()
        await hub.subscribe(name, leaving)
        await asyncio.gather(hub.unsubscribe(name, leaving), hub.subscribe(name, coming))
        assert sent[1:] == [("unsubscribe", (name,)), ("subscribe", (name,))]
        assert await numsub(client, [name]) == {name: 1}
        await client.publish(name, '{"type": "chat", "n": 1}')
        for _ in range(200):
            if coming.heard:
                break
            await asyncio.sleep(0.01)
        assert coming.heard == [{"type": "chat", "n": 1}]
        assert leaving.heard == []

    with_hub(check)
