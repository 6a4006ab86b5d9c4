"""Who is online in a room, per connection, across every ``ws`` process.

The room hub (apps.rooms.hub) starts one presence per process: ``RedisPresence`` when Redis is
configured, ``LocalPresence`` (process memory) in the embedded default. Consumers ``join`` on
connect and ``leave`` on disconnect; both say whether that was the user's first / last
connection in the room, the moments to announce ``member_joined`` / ``member_left``.

Invariants (RedisPresence):
- ``presence:{room}`` is a hash connection id -> info (JSON), ``presence:{room}:seen`` a sorted
  set connection id -> last heartbeat. A connection counts as online only while its heartbeat
  is younger than PRESENCE_TTL_SECONDS.
- Each process refreshes its own connections every HEARTBEAT_SECONDS and writes their entries
  back only when Redis lost them (a restart, or swept while this node could not beat).
- Entries older than the TTL belong to a dead node; whichever process removes one (ZREM wins
  once) announces ``member_left``, exactly once, if that user has no live connection left.
- While Redis is unreachable answers come from this process's own connections (``local``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import defaultdict

import redis.asyncio as aioredis
from django.conf import settings

from apps.core import events, realtime

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0
PRESENCE_TTL_SECONDS = 15.0
KEY_TTL_SECONDS = 24 * 3600  # a room nobody joins again does not keep its keys forever


class Presence:
    """Who is online in a room, per connection. ``join``/``leave`` return True when the user's
    first connection arrived / last one left (the moments to announce)."""

    node_id = settings.SYNCTV_NODE_ID

    def new_connection_id(self) -> str:
        return f"{self.node_id}:{uuid.uuid4().hex[:12]}"

    def start(self) -> None: ...

    async def join(self, room_id: str, connection_id: str, info: dict) -> bool: ...

    async def leave(self, room_id: str, connection_id: str, user_id: str) -> bool: ...

    async def online(self, room_id: str) -> list[dict]: ...

    async def set_info(self, room_id: str, connection_id: str, info: dict) -> None: ...


class LocalPresence(Presence):
    """The embedded default (no Redis): one process, so its memory is the whole truth."""

    def __init__(self) -> None:
        self.rooms: dict[str, dict[str, dict]] = defaultdict(dict)

    async def join(self, room_id, connection_id, info) -> bool:
        conns = self.rooms[room_id]
        first = not any(i["user_id"] == info["user_id"] for i in conns.values())
        conns[connection_id] = info
        return first

    async def leave(self, room_id, connection_id, user_id) -> bool:
        conns = self.rooms.get(room_id, {})
        conns.pop(connection_id, None)
        if not conns:
            self.rooms.pop(room_id, None)
        return not any(i["user_id"] == user_id for i in conns.values())

    async def online(self, room_id) -> list[dict]:
        return _dedupe(self.rooms.get(room_id, {}).values())

    async def set_info(self, room_id, connection_id, info) -> None:
        if connection_id in self.rooms.get(room_id, {}):
            self.rooms[room_id][connection_id] = info


def _dedupe(infos) -> list[dict]:
    users: dict[str, dict] = {}
    for info in infos:
        users.setdefault(info["user_id"], info)
    return sorted(users.values(), key=lambda i: i.get("username", ""))


class RedisPresence(Presence):
    """``presence:{room}`` hash conn -> info, ``presence:{room}:seen`` sorted set conn -> last
    heartbeat. Every process refreshes its own connections every HEARTBEAT_SECONDS; entries older
    than PRESENCE_TTL_SECONDS belong to a dead node and are swept (the sweeper that removes one
    announces member_left, exactly once, if that user has no live connection left)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self.local: dict[str, dict[str, dict]] = defaultdict(dict)  # room -> conn -> info
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._heartbeat_forever(), name="presence-heartbeat")

    @staticmethod
    def _keys(room_id: str) -> tuple[str, str]:
        return f"presence:{room_id}", f"presence:{room_id}:seen"

    async def join(self, room_id, connection_id, info) -> bool:
        self.local[room_id][connection_id] = info
        hkey, zkey = self._keys(room_id)
        try:
            before = await self._live_users(room_id)
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.hset(hkey, connection_id, json.dumps(info))
                pipe.zadd(zkey, {connection_id: time.time()})
                await pipe.execute()
        except (OSError, aioredis.RedisError):
            others = (i for c, i in self.local[room_id].items() if c != connection_id)
            return not any(i["user_id"] == info["user_id"] for i in others)
        return info["user_id"] not in before

    async def leave(self, room_id, connection_id, user_id) -> bool:
        self.local.get(room_id, {}).pop(connection_id, None)
        if room_id in self.local and not self.local[room_id]:
            del self.local[room_id]
        hkey, zkey = self._keys(room_id)
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.zrem(zkey, connection_id)
                pipe.hdel(hkey, connection_id)
                await pipe.execute()
            return user_id not in await self._live_users(room_id)
        except (OSError, aioredis.RedisError):
            return not any(i["user_id"] == user_id for i in self.local.get(room_id, {}).values())

    async def set_info(self, room_id, connection_id, info) -> None:
        if connection_id not in self.local.get(room_id, {}):
            return
        self.local[room_id][connection_id] = info
        with contextlib.suppress(OSError, aioredis.RedisError):
            await self.client.hset(self._keys(room_id)[0], connection_id, json.dumps(info))

    async def _live_infos(self, room_id: str) -> list[dict]:
        hkey, zkey = self._keys(room_id)
        conns = await self.client.zrangebyscore(zkey, time.time() - PRESENCE_TTL_SECONDS, "+inf")
        if not conns:
            return []
        raw = await self.client.hmget(hkey, conns)
        return [json.loads(r) for r in raw if r]

    async def _live_users(self, room_id: str) -> set[str]:
        return {i["user_id"] for i in await self._live_infos(room_id)}

    async def online(self, room_id) -> list[dict]:
        try:
            return _dedupe(await self._live_infos(room_id))
        except (OSError, aioredis.RedisError):
            return _dedupe(self.local.get(room_id, {}).values())

    async def _heartbeat_forever(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await self._beat_and_sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down: try again next beat
                logger.warning("presence heartbeat failed: %s", type(exc).__name__)

    async def _beat_and_sweep(self) -> None:
        now = time.time()
        rooms = list(self.local.items())
        if not rooms:
            return
        beating = [(room_id, conns) for room_id, conns in rooms if conns]
        async with self.client.pipeline(transaction=False) as pipe:
            for room_id, conns in beating:
                hkey, zkey = self._keys(room_id)
                pipe.zadd(zkey, dict.fromkeys(conns, now))
                pipe.expire(hkey, KEY_TTL_SECONDS)
                pipe.expire(zkey, KEY_TTL_SECONDS)
            added = (await pipe.execute())[::3]
        # ZADD counts the members it had to ADD: our connections are written on join, so any
        # added here were lost (a Redis restart, or swept while this node could not beat).
        # Only then are their entries written back; rewriting every entry on every beat cost a
        # few ms of the event loop per 1,000 sockets, every 5 s, in the middle of fan-outs.
        lost = [(room_id, conns) for (room_id, conns), n in zip(beating, added, strict=True) if n]
        if lost:
            async with self.client.pipeline(transaction=False) as pipe:
                for room_id, conns in lost:
                    hkey, _zkey = self._keys(room_id)
                    pipe.hset(hkey, mapping={c: json.dumps(i) for c, i in conns.items()})
                    pipe.expire(hkey, KEY_TTL_SECONDS)
                await pipe.execute()
        for room_id, _conns in rooms:
            await self._sweep(room_id, now)

    async def _sweep(self, room_id: str, now: float) -> None:
        # The process's hub publishes the announcement (to every node, or this one while Redis
        # is down). Imported here: the hub module imports this one to start presence.
        from apps.rooms.hub import hub

        hkey, zkey = self._keys(room_id)
        stale = await self.client.zrangebyscore(zkey, "-inf", now - PRESENCE_TTL_SECONDS)
        for conn in stale:
            if not await self.client.zrem(zkey, conn):
                continue  # another node swept it first
            raw = await self.client.hget(hkey, conn)
            await self.client.hdel(hkey, conn)
            if not raw:
                continue
            info = json.loads(raw)
            if info["user_id"] not in await self._live_users(room_id):
                await hub.publish(realtime.room_channel(room_id), events.member_left(user=user_of(info)))


def user_of(info: dict) -> events.UserRef:
    """The user object of a presence entry (as apps.rooms.serializers.user_ref)."""
    return {"id": info["user_id"], "username": info.get("username", ""), "guest": bool(info.get("guest"))}
