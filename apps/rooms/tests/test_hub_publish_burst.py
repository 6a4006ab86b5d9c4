"""apps/rooms/hub.py: a burst of publishes from one process (every socket of a node closing at
once, each announcing member_left) all reach Redis, the other nodes' way in, instead of failing
with "Too many connections" past redis-py's default pool size and staying on this node."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
import redis.asyncio as aioredis
from django.conf import settings

from apps.rooms import hub as hub_module
from apps.rooms.hub import RoomHub

pytestmark = pytest.mark.redis

BURST = 400  # well past redis-py's default asyncio pool limit of 100


def test_a_burst_of_publishes_reaches_redis_every_time(caplog):
    channel = f"synctv:test:burst:{uuid.uuid4().hex[:8]}"

    async def scenario():
        listener = aioredis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
        pubsub = listener.pubsub()
        await pubsub.subscribe(channel)
        await pubsub.get_message(timeout=1)  # the subscribe confirmation
        hub = RoomHub()
        await hub.ensure_started()
        try:
            events = [{"type": "member_left", "n": n} for n in range(BURST)]
            await asyncio.gather(*(hub.publish(channel, e) for e in events))
            received = 0
            while received < BURST:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
                if message is None:
                    break
                received += 1
            pool = hub.redis.connection_pool
            return received, pool.max_connections
        finally:
            await pubsub.aclose()
            await listener.aclose()
            for task in (hub._reader, getattr(hub.presence, "_task", None)):
                if task is not None:
                    task.cancel()
            await hub.redis.aclose()
            await hub._subscriber.aclose()

    with caplog.at_level(logging.WARNING, logger="apps.rooms.hub"):
        received, pool_size = asyncio.run(scenario())
    assert received == BURST
    assert pool_size == hub_module.REDIS_POOL_SIZE
    assert not [r for r in caplog.records if "delivered on this node only" in r.getMessage()]
