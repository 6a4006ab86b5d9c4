"""apps/rooms/presence.py RedisPresence against a real Redis: the Lua scripts count each user's
connections, announce a user's first arrival and last departure exactly once, numbered in the
order Redis applied them, in the shape of ``events.presence_changed``; the heartbeat refreshes
timestamps and counts a connection again only when Redis lost it."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid

import pytest
import redis.asyncio as aioredis
from django.conf import settings

from apps.core import events, realtime
from apps.rooms import presence as presence_module
from apps.rooms.presence import RedisPresence

pytestmark = pytest.mark.redis


def info(n: int, **more) -> dict:
    return {"user_id": f"u{n}", "username": f"user{n}", **more}


def scenario(check, *, joined: int = 3):
    """Runs ``check(client, presence, room, keys, heard)`` with ``joined`` connections (conn<n> of
    user u<n>) in a fresh room; ``heard`` collects what was published on the room's channel."""

    async def run():
        client = aioredis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
        presence = RedisPresence(client)
        room = f"pr-{uuid.uuid4().hex[:8]}"
        keys = presence._keys(room)
        pubsub = client.pubsub()
        await pubsub.subscribe(realtime.room_channel(room))
        heard: list[dict] = []

        async def listen():
            async for message in pubsub.listen():
                if message["type"] == "message":
                    heard.append(json.loads(message["data"]))

        listener = asyncio.create_task(listen())
        try:
            for n in range(joined):
                assert await presence.join(room, f"conn{n}", info(n)) is True
            await check(client, presence, room, keys, heard)
        finally:
            listener.cancel()
            await pubsub.aclose()
            await client.delete(*keys)
            await client.aclose()

    asyncio.run(run())


async def heard_soon(heard: list[dict], n: int) -> list[dict]:
    for _ in range(200):
        if len(heard) >= n:
            break
        await asyncio.sleep(0.01)
    return heard


def test_first_and_last_connections_are_announced_once_in_order():
    async def check(client, presence, room, keys, heard):
        assert await presence.join(room, "conn0-tab2", info(0)) is False  # a second tab
        assert await presence.leave(room, "conn0", "u0") is False  # the other tab stays
        assert await presence.leave(room, "conn0-tab2", "u0") is True
        assert await presence.leave(room, "conn0-tab2", "u0") is False  # twice: nothing more
        got = await heard_soon(heard, 4)
        assert got == [
            events.presence_changed(version=1, joined=[info(0)], left=[]),
            events.presence_changed(version=2, joined=[info(1)], left=[]),
            events.presence_changed(version=3, joined=[info(2)], left=[]),
            events.presence_changed(version=4, joined=[], left=["u0"]),
        ]
        version, online = await presence.snapshot(room)
        assert version == 4 and sorted(i["user_id"] for i in online) == ["u1", "u2"]
        assert await client.hgetall(keys[2]) == {"u1": "1", "u2": "1"}

    scenario(check)


def test_a_dead_nodes_connections_are_swept_and_announced_in_one_message():
    async def check(client, presence, room, keys, heard):
        await presence.join(room, "conn1-other", info(1))  # u1 also elsewhere, alive
        old = time.time() - presence_module.PRESENCE_TTL_SECONDS - 1
        await client.zadd(keys[1], {"conn0": old, "conn1": old, "conn2": old})
        await presence._sweep(room, time.time())
        await presence._sweep(room, time.time())  # a second sweeper finds nothing
        got = await heard_soon(heard, 4)
        await asyncio.sleep(0.05)
        assert got[3:] == [events.presence_changed(version=4, joined=[], left=["u0", "u2"])]
        assert [i["user_id"] for i in (await presence.snapshot(room))[1]] == ["u1"]

    scenario(check)


def test_a_beat_refreshes_timestamps_and_leaves_the_entries_alone():
    async def check(client, presence, room, keys, heard):
        hkey, zkey = keys[:2]
        before = await client.zscore(zkey, "conn0")
        # Mark an entry: a beat that rewrote every entry would put the original back.
        await client.hset(hkey, "conn1", json.dumps({"user_id": "u1", "username": "marked"}))
        await asyncio.sleep(0.01)
        await presence._beat_and_sweep()
        assert await client.zscore(zkey, "conn0") > before
        assert json.loads(await client.hget(hkey, "conn1"))["username"] == "marked"
        assert all(ttl > 0 for ttl in [await client.ttl(key) for key in keys])

    scenario(check)


def test_a_beat_after_redis_lost_the_keys_counts_the_connections_again():
    async def check(client, presence, room, keys, heard):
        await client.delete(*keys)  # what a Redis restart leaves
        await presence._beat_and_sweep()
        entries = {c: json.loads(v) for c, v in (await client.hgetall(keys[0])).items()}
        assert entries == {f"conn{n}": info(n) for n in range(3)}
        assert await client.zcard(keys[1]) == 3
        assert await client.hgetall(keys[2]) == {"u0": "1", "u1": "1", "u2": "1"}
        got = await heard_soon(heard, 4)
        # Counted again in one script, told in one announcement, numbered again from the restart.
        assert got[3:] == [events.presence_changed(version=1, joined=[info(n) for n in range(3)], left=[])]

    scenario(check)


def test_a_connection_swept_while_this_node_could_not_beat_comes_back():
    async def check(client, presence, room, keys, heard):
        await client.zadd(keys[1], {"conn2": time.time() - presence_module.PRESENCE_TTL_SECONDS - 1})
        await presence._sweep(room, time.time())
        assert await client.hget(keys[0], "conn2") is None
        await presence._beat_and_sweep()
        assert json.loads(await client.hget(keys[0], "conn2"))["user_id"] == "u2"
        assert await client.hget(keys[2], "u2") == "1"
        got = await heard_soon(heard, 5)
        assert [(e["left"], [i["user_id"] for i in e["joined"]]) for e in got[3:]] == [
            (["u2"], []),
            ([], ["u2"]),
        ]

    scenario(check)


def test_many_nodes_joining_and_leaving_at_once_keep_the_counts_exact():
    """Concurrent joins and leaves of the same users (tabs on two nodes): the counts end at zero,
    and the announcements alternate joined/left per user, never twice in a row."""

    async def check(client, presence, room, keys, heard):
        other = RedisPresence(client)

        async def churn(p, tag, n):
            for round_ in range(20):
                await p.join(room, f"{tag}-{n}-{round_}", info(n))
                await p.leave(room, f"{tag}-{n}-{round_}", f"u{n}")

        await asyncio.gather(
            *(churn(p, tag, n) for p, tag in ((presence, "a"), (other, "b")) for n in range(3, 8))
        )
        assert set(await client.hkeys(keys[2])) == {"u0", "u1", "u2"}
        await asyncio.sleep(0.2)
        versions = [e["v"] for e in heard]
        assert versions == list(range(1, len(versions) + 1))
        for n in range(3, 8):
            mine = [
                "j" if f"u{n}" in [i["user_id"] for i in e["joined"]] else "l"
                for e in heard
                if f"u{n}" in (e["left"] + [i["user_id"] for i in e["joined"]])
            ]
            assert mine and mine[0] == "j" and mine[-1] == "l"
            assert all(a != b for a, b in itertools.pairwise(mine)), mine

    scenario(check)


def test_changes_submitted_together_go_in_one_script_and_as_few_announcements_as_keep_order():
    """Sockets joining and leaving in the same moment share a script (apps.rooms.batching); its
    announcements name each user once at most, so a roster applying ``left`` before ``joined``
    sees every user's transitions in the order Redis applied them."""

    async def check(client, presence, room, keys, heard):
        calls = []
        script = presence._changes

        async def counted_script(*, keys, args):
            calls.append((len(args) - 2) // 4)
            return await script(keys=keys, args=args)

        presence._changes = counted_script
        results = await asyncio.gather(
            presence.join(room, "conn3", info(3)),
            presence.join(room, "conn4", info(4)),
            presence.leave(room, "conn3", "u3"),  # after its join: the same user, so a new message
            presence.join(room, "conn0-tab2", info(0)),  # a second tab: nothing to tell
            presence.leave(room, "conn1", "u1"),
            presence.join(room, "conn3-again", info(3)),  # back: a third message
        )
        assert results == [True, True, True, False, True, True]
        assert calls == [6]
        got = (await heard_soon(heard, 6))[3:]
        assert got == [
            events.presence_changed(version=4, joined=[info(3), info(4)], left=[]),
            events.presence_changed(version=5, joined=[], left=["u3", "u1"]),
            events.presence_changed(version=6, joined=[info(3)], left=[]),
        ]
        assert await client.hgetall(keys[2]) == {"u0": "2", "u2": "1", "u3": "1", "u4": "1"}

    scenario(check)
