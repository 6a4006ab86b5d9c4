"""apps/rooms/presence.py RedisPresence heartbeat: every beat refreshes the connections' timestamps;
their entries are written back only when Redis lost them (restart), not rewritten every beat."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
import redis.asyncio as aioredis
from django.conf import settings

from apps.rooms.presence import RedisPresence

pytestmark = pytest.mark.redis


def scenario(check):
    async def run():
        client = aioredis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
        presence = RedisPresence(client)
        room = f"hb-{uuid.uuid4().hex[:8]}"
        hkey, zkey = presence._keys(room)
        try:
            for n in range(3):
                await presence.join(room, f"conn{n}", {"user_id": f"u{n}", "username": f"user{n}"})
            await check(client, presence, room, hkey, zkey)
        finally:
            await client.delete(hkey, zkey)
            await client.aclose()

    asyncio.run(run())


def test_a_beat_refreshes_timestamps_and_leaves_the_entries_alone():
    async def check(client, presence, room, hkey, zkey):
        before = await client.zscore(zkey, "conn0")
        # Mark an entry: a beat that rewrote every entry would put the original back.
        await client.hset(hkey, "conn1", json.dumps({"user_id": "u1", "username": "marked"}))
        await asyncio.sleep(0.01)
        await presence._beat_and_sweep()
        assert await client.zscore(zkey, "conn0") > before
        assert json.loads(await client.hget(hkey, "conn1"))["username"] == "marked"
        assert await client.ttl(hkey) > 0 and await client.ttl(zkey) > 0

    scenario(check)


def test_a_beat_after_redis_lost_the_keys_writes_the_entries_back():
    async def check(client, presence, room, hkey, zkey):
        await client.delete(hkey, zkey)  # what a Redis restart leaves
        await presence._beat_and_sweep()
        entries = {c: json.loads(v) for c, v in (await client.hgetall(hkey)).items()}
        assert entries == {f"conn{n}": {"user_id": f"u{n}", "username": f"user{n}"} for n in range(3)}
        assert await client.zcard(zkey) == 3

    scenario(check)


def test_a_connection_swept_while_this_node_could_not_beat_comes_back():
    async def check(client, presence, room, hkey, zkey):
        await client.zrem(zkey, "conn2")
        await client.hdel(hkey, "conn2")
        await presence._beat_and_sweep()
        assert json.loads(await client.hget(hkey, "conn2"))["user_id"] == "u2"
        assert await client.zscore(zkey, "conn2") is not None

    scenario(check)
