"""Who is online in a room, per connection, across every ``ws`` process.

The room hub (apps.rooms.hub) starts one presence per process: ``RedisPresence`` when Redis is
configured, ``LocalPresence`` (process memory) in the embedded default. Consumers ``join`` on
connect and ``leave`` on disconnect. A user's first connection in a room and their last one are
the moments the room hears of them: presence announces them as ``_presence {v, joined, left}`` on
the room's channel, and each node's roster (apps.rooms.roster) turns those into the batched
member events its sockets get (docs/realtime.md, "Who is online").

Invariants (RedisPresence), per room:
- ``presence:{room}`` is a hash connection id -> info (JSON), ``presence:{room}:seen`` a sorted
  set connection id -> last heartbeat, ``presence:{room}:users`` a hash user id -> how many of
  that user's connections are counted, ``presence:{room}:info`` a hash user id -> the info of the
  user's latest connection (what the room's list shows), ``presence:{room}:v`` the room's
  presence version.
- Every change of those keys is one Lua script: a user's count goes 0 -> 1 and 1 -> 0 exactly
  once per arrival and departure, whoever caused it (the socket's node, or a sweeper for a dead
  node), and that transition bumps the version and PUBLISHes its ``_presence`` inside the script,
  so every node receives the transitions in the order Redis applied them, numbered.
- A join or a leave costs O(1) in Redis and in Python: nothing reads the whole room, except a
  node's roster once when it first needs the room (``snapshot``). The joins and leaves of a room
  submitted while its last script runs go together in the next (apps.rooms.batching), in order.
- Each process refreshes its own connections every HEARTBEAT_SECONDS and counts them again only
  when Redis lost them (a restart, or swept while this node could not beat). Connections older
  than PRESENCE_TTL_SECONDS belong to a dead node and are swept (by any node in the room).
- While Redis is unreachable this process's own connections are the answer (``local``) and the
  announcements reach this node only; the hub's resync reloads the rosters when Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from django.conf import settings

from apps.core import events, realtime
from apps.rooms.batching import Batcher

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0
PRESENCE_TTL_SECONDS = 15.0
KEY_TTL_SECONDS = 24 * 3600  # a room nobody joins again does not keep its keys forever

Announce = Callable[[str, dict], Awaitable[None]]  # (channel, event) -> delivered on this node


class Presence:
    """Who is online in a room, per connection. ``join``/``leave`` return True when the user's
    first connection arrived / last one left; presence itself announces those moments."""

    node_id = settings.SYNCTV_NODE_ID

    def __init__(self) -> None:
        self.announce_locally: Announce | None = None  # set by the hub: its local dispatch

    def new_connection_id(self) -> str:
        return f"{self.node_id}:{uuid.uuid4().hex[:12]}"

    def start(self) -> None: ...

    async def join(self, room_id: str, connection_id: str, info: dict) -> bool: ...

    async def leave(self, room_id: str, connection_id: str, user_id: str) -> bool: ...

    async def set_info(self, room_id: str, connection_id: str, info: dict) -> None: ...

    async def snapshot(self, room_id: str) -> tuple[int | None, list[dict]]:
        """The room's presence version and who is online (one info per user), read together."""
        ...

    async def _announce_here(self, room_id: str, *, joined: list[dict], left: list[str]) -> None:
        if self.announce_locally is not None and (joined or left):
            event = events.presence_changed(version=None, joined=joined, left=left)
            await self.announce_locally(realtime.room_channel(room_id), event)


class LocalPresence(Presence):
    """The embedded default (no Redis): one process, so its memory is the whole truth."""

    def __init__(self) -> None:
        super().__init__()
        self.rooms: dict[str, dict[str, dict]] = defaultdict(dict)

    def _user_online(self, room_id: str, user_id: str) -> bool:
        return any(i["user_id"] == user_id for i in self.rooms.get(room_id, {}).values())

    async def join(self, room_id, connection_id, info) -> bool:
        first = not self._user_online(room_id, info["user_id"])
        self.rooms[room_id][connection_id] = info
        if first:
            await self._announce_here(room_id, joined=[info], left=[])
        return first

    async def leave(self, room_id, connection_id, user_id) -> bool:
        conns = self.rooms.get(room_id, {})
        if conns.pop(connection_id, None) is None:
            return False
        if not conns:
            self.rooms.pop(room_id, None)
        last = not self._user_online(room_id, user_id)
        if last:
            await self._announce_here(room_id, joined=[], left=[user_id])
        return last

    async def snapshot(self, room_id) -> tuple[int | None, list[dict]]:
        return None, _one_per_user(self.rooms.get(room_id, {}).values())

    async def set_info(self, room_id, connection_id, info) -> None:
        if connection_id in self.rooms.get(room_id, {}):
            self.rooms[room_id][connection_id] = info


def _one_per_user(infos) -> list[dict]:
    users: dict[str, dict] = {}
    for info in infos:
        users[info["user_id"]] = info  # the latest connection's, as RedisPresence keeps it
    return list(users.values())


# The scripts take the room's keys in this order (RedisPresence._keys) and its channel as the
# last argument. Each announces a 0 -> 1 or 1 -> 0 transition in the shape of
# events.presence_changed, built here because it must be published inside the script (the
# tests in apps/rooms/tests/test_presence_redis.py hold the two to the same shape).
_ANNOUNCE = """
local function announce(joined, left, channel)
  local v = redis.call('INCR', KEYS[5])
  redis.call('PUBLISH', channel,
    '{"type":"_presence","v":' .. v .. ',"joined":[' .. table.concat(joined, ',') ..
    '],"left":[' .. table.concat(left, ',') .. ']}')
end
local function count_in(conn, uid, info)
  redis.call('HSET', KEYS[1], conn, info)
  redis.call('HSET', KEYS[4], uid, info)
  return redis.call('HINCRBY', KEYS[3], uid, 1)
end
local function count_out(uid)
  local n = redis.call('HINCRBY', KEYS[3], uid, -1)
  if n > 0 then return false end
  redis.call('HDEL', KEYS[3], uid)
  redis.call('HDEL', KEYS[4], uid)
  return true
end
"""

# ARGV: now, channel, then one change per 4 arguments: 'j' (a join) or 'l' (a leave), connection,
# user id, info (JSON; empty for a leave). Applies them in order; returns per change 1 when it was
# the user's first connection (a join) or last one (a leave), else 0 (a second tab; a leave of a
# connection a sweeper already removed, and announced if it was the last). The transitions go out
# in as few announcements as keep each user in one at most, so applying an announcement's ``left``
# before its ``joined`` (apps.rooms.roster) is the order Redis applied them.
CHANGES_SCRIPT = (
    _ANNOUNCE
    + """
local joined, left, named, results = {}, {}, {}, {}
local function tell()
  if #joined > 0 or #left > 0 then announce(joined, left, ARGV[2]) end
  joined, left, named = {}, {}, {}
end
for i = 3, #ARGV, 4 do
  local kind, conn, uid, info = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local changed = 0
  if kind == 'j' then
    local counted = redis.call('HEXISTS', KEYS[1], conn) == 1
    redis.call('ZADD', KEYS[2], ARGV[1], conn)
    if counted then
      redis.call('HSET', KEYS[1], conn, info)
    elseif count_in(conn, uid, info) == 1 then
      if named[uid] then tell() end
      table.insert(joined, info)
      named[uid], changed = true, 1
    end
  elseif redis.call('ZREM', KEYS[2], conn) == 1 then
    redis.call('HDEL', KEYS[1], conn)
    if count_out(uid) then
      if named[uid] then tell() end
      table.insert(left, cjson.encode(uid))
      named[uid], changed = true, 1
    end
  end
  table.insert(results, changed)
end
tell()
return results
"""
)

# ARGV: now, key TTL, then this node's connections in the room. Refreshes the ones Redis still
# counts and returns the others (lost to a restart, or swept while this node could not beat):
# the caller joins them again.
BEAT_SCRIPT = """
local missing = {}
for i = 3, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[2], ARGV[1], ARGV[i])
  else
    table.insert(missing, ARGV[i])
  end
end
for i = 1, 5 do redis.call('EXPIRE', KEYS[i], ARGV[2]) end
return missing
"""

# ARGV: the oldest heartbeat still alive, channel. Removes the connections of dead nodes; the
# users left with none are announced in one message. Returns how many connections it removed.
SWEEP_SCRIPT = (
    _ANNOUNCE
    + """
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1])
local left = {}
for _, conn in ipairs(stale) do
  redis.call('ZREM', KEYS[2], conn)
  local raw = redis.call('HGET', KEYS[1], conn)
  redis.call('HDEL', KEYS[1], conn)
  if raw then
    local uid = cjson.decode(raw).user_id
    if count_out(uid) then table.insert(left, cjson.encode(uid)) end
  end
end
if #left > 0 then announce({}, left, ARGV[2]) end
return #stale
"""
)

# Who is online, with the version it is the state after.
SNAPSHOT_SCRIPT = """
return {tonumber(redis.call('GET', KEYS[5]) or '0'), redis.call('HVALS', KEYS[4])}
"""


class RedisPresence(Presence):
    """The room's keys in Redis, changed only by the scripts above (see the module docstring).
    Every process refreshes its own connections every HEARTBEAT_SECONDS and sweeps the rooms it
    has sockets in."""

    def __init__(self, client: aioredis.Redis) -> None:
        super().__init__()
        self.client = client
        self.local: dict[str, dict[str, dict]] = defaultdict(dict)  # room -> conn -> info
        self._task: asyncio.Task | None = None
        self._changes = client.register_script(CHANGES_SCRIPT)
        # The joins and leaves of a room submitted while its last script runs go in the next one.
        self._batches: Batcher[tuple[str, str, str, str]] = Batcher(self._apply_changes)
        self._beat = client.register_script(BEAT_SCRIPT)
        self._sweep_script = client.register_script(SWEEP_SCRIPT)
        self._snapshot = client.register_script(SNAPSHOT_SCRIPT)

    def start(self) -> None:
        self._task = asyncio.create_task(self._heartbeat_forever(), name="presence-heartbeat")

    @staticmethod
    def _keys(room_id: str) -> list[str]:
        base = f"presence:{room_id}"
        return [base, f"{base}:seen", f"{base}:users", f"{base}:info", f"{base}:v"]

    async def join(self, room_id, connection_id, info) -> bool:
        self.local[room_id][connection_id] = info
        try:
            return await self._count_in(room_id, connection_id, info)
        except (OSError, aioredis.RedisError):
            others = (i for c, i in self.local[room_id].items() if c != connection_id)
            first = not any(i["user_id"] == info["user_id"] for i in others)
            if first:
                await self._announce_here(room_id, joined=[info], left=[])
            return first

    async def _count_in(self, room_id: str, connection_id: str, info: dict) -> bool:
        change = ("j", connection_id, info["user_id"], json.dumps(info))
        return bool(await self._batches.submit(room_id, change))

    async def leave(self, room_id, connection_id, user_id) -> bool:
        conns = self.local.get(room_id, {})
        conns.pop(connection_id, None)
        if room_id in self.local and not conns:
            del self.local[room_id]
        try:
            return bool(await self._batches.submit(room_id, ("l", connection_id, user_id, "")))
        except (OSError, aioredis.RedisError):
            last = not any(i["user_id"] == user_id for i in conns.values())
            if last:
                await self._announce_here(room_id, joined=[], left=[user_id])
            return last

    async def _apply_changes(self, room_id, changes: list[tuple[str, str, str, str]]) -> list[int]:
        args: list = [time.time(), realtime.room_channel(room_id)]
        for change in changes:
            args.extend(change)
        return await self._changes(keys=self._keys(room_id), args=args)

    async def set_info(self, room_id, connection_id, info) -> None:
        if connection_id not in self.local.get(room_id, {}):
            return
        self.local[room_id][connection_id] = info
        hkey, _seen, _users, ukey, _v = self._keys(room_id)
        with contextlib.suppress(OSError, aioredis.RedisError):
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(hkey, connection_id, json.dumps(info))
                pipe.hset(ukey, info["user_id"], json.dumps(info))
                await pipe.execute()

    async def snapshot(self, room_id) -> tuple[int | None, list[dict]]:
        try:
            version, raw = await self._snapshot(keys=self._keys(room_id))
        except (OSError, aioredis.RedisError):
            return None, _one_per_user(self.local.get(room_id, {}).values())
        return int(version), [json.loads(r) for r in raw]

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
        # Only the timestamps move on a beat: rewriting every entry cost a few ms of the event
        # loop per 1,000 sockets, every 5 s, in the middle of fan-outs (bench/ws/README.md).
        now = time.time()
        for room_id, conns in list(self.local.items()):
            if not conns:
                continue
            missing = await self._beat(keys=self._keys(room_id), args=[now, KEY_TTL_SECONDS, *conns])
            back = [(c, conns[c]) for c in missing if c in conns]  # the others left meanwhile
            await asyncio.gather(*(self._count_in(room_id, c, info) for c, info in back))
            await self._sweep(room_id, now)

    async def _sweep(self, room_id: str, now: float) -> None:
        args = [now - PRESENCE_TTL_SECONDS, realtime.room_channel(room_id)]
        await self._sweep_script(keys=self._keys(room_id), args=args)


def user_of(info: dict) -> events.UserRef:
    """The user object of a presence entry (as apps.rooms.serializers.user_ref)."""
    return {"id": info["user_id"], "username": info.get("username", ""), "guest": bool(info.get("guest"))}
