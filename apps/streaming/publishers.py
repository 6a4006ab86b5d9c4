"""The publisher registry: which node publishes each live stream, and the failover lock
(docs/streaming.md, "Publishers").

Keys (by the stream's opaque id, never its key: a stream key appears in no Redis key or log):
- ``stream:publisher:{stream}`` -> node id, TTL PUBLISHER_TTL_SECONDS. ``claim`` sets it only if
  absent or already this node's (one publisher per stream); ``refresh`` and ``release`` act only
  for the owner. Each is one Lua script, so the check and the change are one atomic step.
- ``stream:publishers``: a sorted set stream -> the Redis time of its last claim or refresh. It
  outlives an expired publisher key, which is how the failover job finds a stream whose
  publisher went silent (``silent``).
- ``lock:stream:failover:{stream}`` -> a random token, TTL FAILOVER_LOCK_SECONDS; only the holder
  of the token releases it (compare-and-delete).

Times come from Redis (``TIME``), so the nodes' clocks never need to agree. Without REDIS_URL
(the embedded default: one process) the same rules run on process memory. When Redis is
configured but down every call raises ``RedisUnavailable``: a claim is refused rather than
risking two publishers.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

import redis

from apps.core.redis import call_redis, get_redis
from apps.streaming import cluster
from apps.streaming.ring import HashRing

PUBLISHER_TTL_SECONDS = 300
FAILOVER_LOCK_SECONDS = 30
INDEX_KEY = "stream:publishers"


def publisher_key(stream_id: str) -> str:
    return f"stream:publisher:{stream_id}"


def failover_lock_key(stream_id: str) -> str:
    return f"lock:stream:failover:{stream_id}"


@dataclass(frozen=True)
class Publisher:
    stream_id: str
    node: str | None  # None: the publisher key expired, the stream waits for failover
    ttl: float | None  # seconds left on the publisher key
    last_refresh: float  # unix time (Redis clock) of the last claim or refresh


# KEYS[1] publisher key, KEYS[2] index; ARGV node, ttl ms, stream id, mode.
# mode "claim": take it if free or ours; "refresh": only if ours; "transfer": if free or held by
# ARGV[5] (the failed node), under the failover lock.
_SET = """
local current = redis.call('GET', KEYS[1])
local mode = ARGV[4]
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
elseif mode == 'refresh' then
  return 0
elseif current == false or (mode == 'transfer' and current == ARGV[5]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
  return 0
end
local now = redis.call('TIME')
redis.call('ZADD', KEYS[2], now[1] + now[2] / 1000000, ARGV[3])
return 1
"""
# KEYS[1] publisher key, KEYS[2] index; ARGV node, stream id. An expired entry leaves the index
# too: its owner said it is done, there is nothing to fail over.
_RELEASE = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[2])
  return 1
end
if current == false then redis.call('ZREM', KEYS[2], ARGV[2]) end
return 0
"""
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class _LocalRegistry:
    """The embedded default's registry: the same rules on process memory."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: dict[str, tuple[str, float]] = {}  # key -> (value, expiry, monotonic)
        self.index: dict[str, float] = {}  # stream -> unix time of the last claim or refresh

    def get(self, key: str) -> str | None:
        found = self.values.get(key)
        if found is None or found[1] <= time.monotonic():
            self.values.pop(key, None)
            return None
        return found[0]

    def ttl(self, key: str) -> float | None:
        return max(0.0, self.values[key][1] - time.monotonic()) if self.get(key) is not None else None

    def put(self, key: str, value: str, ttl: float) -> None:
        self.values[key] = (value, time.monotonic() + ttl)

    def set_publisher(self, stream_id: str, node: str, ttl: float, mode: str, failed: str) -> bool:
        with self.lock:
            current = self.get(publisher_key(stream_id))
            allowed = current == node or (
                mode != "refresh" and (current is None or (mode == "transfer" and current == failed))
            )
            if allowed:
                self.put(publisher_key(stream_id), node, ttl)
                self.index[stream_id] = time.time()
            return allowed

    def release(self, stream_id: str, node: str) -> bool:
        with self.lock:
            current = self.get(publisher_key(stream_id))
            if current in (node, None):
                self.values.pop(publisher_key(stream_id), None)
                self.index.pop(stream_id, None)
            return current == node


_local = _LocalRegistry()


def _set(stream_id: str, node: str, *, ttl: float, mode: str, failed: str = "") -> bool:
    if get_redis() is None:
        return _local.set_publisher(stream_id, node, ttl, mode, failed)
    keys = [publisher_key(stream_id), INDEX_KEY]
    args: list[str | int] = [node, int(ttl * 1000), stream_id, mode, failed]
    return bool(call_redis(lambda client: client.eval(_SET, 2, *keys, *args)))


def claim(stream_id: str, node: str, *, ttl: float = PUBLISHER_TTL_SECONDS) -> bool:
    """Make ``node`` the stream's publisher unless another node is; the same node may claim
    again (its TTL starts over). Raises RedisUnavailable."""
    return _set(stream_id, node, ttl=ttl, mode="claim")


def refresh(stream_id: str, node: str, *, ttl: float = PUBLISHER_TTL_SECONDS) -> bool:
    """Extend the TTL, only if ``node`` is the publisher (False otherwise: a cut or moved one)."""
    return _set(stream_id, node, ttl=ttl, mode="refresh")


def transfer(stream_id: str, *, failed: str | None, to: str, ttl: float = PUBLISHER_TTL_SECONDS) -> bool:
    """Failover, under the stream's failover lock: make ``to`` the publisher if the key expired
    or still names the ``failed`` node. False if someone else claimed it meanwhile."""
    return _set(stream_id, to, ttl=ttl, mode="transfer", failed=failed or "")


def release(stream_id: str, node: str) -> bool:
    """Remove the stream's publisher, only if it is ``node``."""
    if get_redis() is None:
        return _local.release(stream_id, node)
    keys = [publisher_key(stream_id), INDEX_KEY]
    return bool(call_redis(lambda client: client.eval(_RELEASE, 2, *keys, node, stream_id)))


def forget(stream_id: str) -> None:
    """Drop the stream from the registry whoever publishes it (a cut, a deleted stream, a pushed
    stream whose publisher failed: it waits for its streamer)."""
    if get_redis() is None:
        with _local.lock:
            _local.values.pop(publisher_key(stream_id), None)
            _local.index.pop(stream_id, None)
        return

    def drop(client: redis.Redis) -> None:
        pipe = client.pipeline(transaction=True)
        pipe.delete(publisher_key(stream_id))
        pipe.zrem(INDEX_KEY, stream_id)
        pipe.execute()

    call_redis(drop)


def owner(stream_id: str) -> str | None:
    if get_redis() is None:
        with _local.lock:
            return _local.get(publisher_key(stream_id))
    return call_redis(lambda client: client.get(publisher_key(stream_id)))  # type: ignore[return-value]


def all_publishers() -> list[Publisher]:
    """Every stream in the registry, by stream id, with its node (None once the key expired)."""
    if get_redis() is None:
        with _local.lock:
            return [
                Publisher(s, _local.get(publisher_key(s)), _local.ttl(publisher_key(s)), at)
                for s, at in sorted(_local.index.items())
            ]

    def read(client: redis.Redis) -> list[Publisher]:
        entries: list[tuple[str, float]] = client.zrange(INDEX_KEY, 0, -1, withscores=True)  # type: ignore[assignment]
        pipe = client.pipeline(transaction=False)
        for stream_id, _ in entries:
            pipe.get(publisher_key(stream_id))
            pipe.pttl(publisher_key(stream_id))
        found = pipe.execute()
        return sorted(
            (
                Publisher(s, found[2 * i], found[2 * i + 1] / 1000 if found[2 * i + 1] >= 0 else None, at)
                for i, (s, at) in enumerate(entries)
            ),
            key=lambda p: p.stream_id,
        )

    return call_redis(read)


def redis_time() -> float:
    """Now on the registry's clock (Redis's when configured)."""
    if get_redis() is None:
        return time.time()
    seconds, micros = call_redis(lambda client: client.time())
    return seconds + micros / 1_000_000


def silent(max_silence: float, *, live: set[str] | None = None) -> list[Publisher]:
    """Publishers that failed: not refreshed for ``max_silence`` seconds, key expired, or (with
    ``live``, the live node ids) held by a node that is no longer alive."""
    now = redis_time()
    return [
        p
        for p in all_publishers()
        if p.node is None or now - p.last_refresh >= max_silence or (live is not None and p.node not in live)
    ]


# --- the failover lock and the election ------------------------------------------------------------


def acquire_failover_lock(stream_id: str, *, ttl: float = FAILOVER_LOCK_SECONDS) -> str | None:
    """Take the stream's failover lock: its token, or None when another holds it."""
    token = secrets.token_hex(16)
    if get_redis() is None:
        with _local.lock:
            if _local.get(failover_lock_key(stream_id)) is not None:
                return None
            _local.put(failover_lock_key(stream_id), token, ttl)
            return token
    taken = call_redis(
        lambda client: client.set(failover_lock_key(stream_id), token, nx=True, px=int(ttl * 1000))
    )
    return token if taken else None


def release_failover_lock(stream_id: str, token: str) -> bool:
    """Release the lock only if ``token`` still holds it (not after it expired and was retaken)."""
    if get_redis() is None:
        with _local.lock:
            if _local.get(failover_lock_key(stream_id)) != token:
                return False
            _local.values.pop(failover_lock_key(stream_id), None)
            return True
    return bool(call_redis(lambda client: client.eval(_UNLOCK, 1, failover_lock_key(stream_id), token)))


def elect(stream_id: str, nodes: list[str] | None = None) -> str | None:
    """The node the ring gives the stream to, over ``nodes`` (default: the nodes whose ``relay``
    is live: only they can run a pulled stream). Every process computes the same answer from the
    same live set. None when there is no candidate."""
    candidates = cluster.live_node_ids("relay") if nodes is None else nodes
    return HashRing(candidates).node_for(stream_id)
