"""The cluster registry: which nodes are alive, by role (docs/streaming.md, "Cluster").

Every ``web``, ``ws``, ``worker``, ``relay`` and ``rtmp`` process of a node registers ``{id, role, started,
last_seen}`` under ``cluster:node:{role}:{id}`` with a TTL of NODE_TTL_SECONDS, refreshed every
HEARTBEAT_SECONDS by a ``Heartbeat`` thread; ``cluster:nodes`` indexes the entries so listing
them needs no SCAN. An entry whose key expired belongs to a dead process and is pruned from the
index by whoever lists next. The processes of one node share its id (``SYNCTV_NODE_ID``), so the
gunicorn workers of a node all refresh one entry.

``leave`` removes entries at once (docs/streaming.md, "Nodes"): the failover job, which reads the
registry, then no longer waits for the TTL. It also publishes a ``NodeLeaving`` message on
``cluster:events``, an observer channel: no server process subscribes to it (the registry is the
truth); operators (``redis-cli subscribe cluster:events``) and the failover benchmark watch it.

Liveness is the key's TTL, kept by Redis: no clock of any node is compared with another's.
Without REDIS_URL (the embedded default: one process) the registry lives in process memory.
While Redis is down a heartbeat fails quietly (logged once) and the next one after Redis
returns registers the node again.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, TypedDict

import redis
from django.conf import settings

from apps.core.redis import RedisUnavailable, call_redis, get_redis

logger = logging.getLogger(__name__)

Role = Literal["web", "ws", "worker", "relay", "rtmp"]
ROLES: tuple[Role, ...] = ("web", "ws", "worker", "relay", "rtmp")
HEARTBEAT_SECONDS = 5.0
NODE_TTL_SECONDS = 15
INDEX_KEY = "cluster:nodes"
CHANNEL = "cluster:events"


@dataclass(frozen=True)
class NodeInfo:
    id: str
    role: str
    started: float  # unix time the process registered first
    last_seen: float  # unix time of its last heartbeat

    @property
    def member(self) -> str:
        return f"{self.role}:{self.id}"


class NodeLeaving(TypedDict):
    """On ``cluster:events``: a node's process(es) left; ``role`` None means the whole node."""

    type: Literal["node_leaving"]
    node: str
    role: str | None
    at: float


def node_leaving(*, node: str, role: str | None) -> NodeLeaving:
    return {"type": "node_leaving", "node": node, "role": role, "at": time.time()}


def _key(member: str) -> str:
    return f"cluster:node:{member}"


_PRUNE = """
for i, member in ipairs(ARGV) do
  if redis.call('EXISTS', KEYS[i + 1]) == 0 then redis.call('SREM', KEYS[1], member) end
end
return 0
"""

# The embedded default's registry: member -> (info, expiry on the monotonic clock).
_local: dict[str, tuple[NodeInfo, float]] = {}
_local_lock = threading.Lock()


def register(node_id: str, role: str, *, started: float, ttl: int = NODE_TTL_SECONDS) -> NodeInfo:
    """Add or refresh an entry. Raises RedisUnavailable when Redis does not answer."""
    info = NodeInfo(id=node_id, role=role, started=started, last_seen=time.time())
    if get_redis() is None:
        with _local_lock:
            _local[info.member] = (info, time.monotonic() + ttl)
        return info

    def write(client: redis.Redis) -> None:
        pipe = client.pipeline(transaction=True)
        pipe.set(_key(info.member), json.dumps(asdict(info)), ex=ttl)
        pipe.sadd(INDEX_KEY, info.member)
        pipe.execute()

    call_redis(write)
    return info


def live_nodes() -> list[NodeInfo]:
    """Every live entry, sorted by id then role. Raises RedisUnavailable."""
    if get_redis() is None:
        now = time.monotonic()
        with _local_lock:
            for member in [m for m, (_, until) in _local.items() if until <= now]:
                del _local[member]
            found = [info for info, _ in _local.values()]
        return sorted(found, key=lambda n: (n.id, n.role))

    def read(client: redis.Redis) -> list[NodeInfo]:
        members: list[str] = sorted(client.smembers(INDEX_KEY))  # type: ignore[arg-type]  # decoded
        if not members:
            return []
        values = client.mget([_key(m) for m in members])
        dead = [m for m, v in zip(members, values, strict=True) if v is None]
        if dead:
            # Pruned only if still absent: an entry registered since the MGET stays listed.
            client.eval(_PRUNE, 1 + len(dead), INDEX_KEY, *[_key(m) for m in dead], *dead)
        return [NodeInfo(**json.loads(v)) for v in values if v is not None]

    return sorted(call_redis(read), key=lambda n: (n.id, n.role))


def live_node_ids(role: str | None = None) -> list[str]:
    """The distinct ids of live nodes (of any role, or of ``role``): the members of a hash ring.
    Pulled streams are given to nodes running a ``relay`` (apps.streaming.relay)."""
    return sorted({n.id for n in live_nodes() if role is None or n.role == role})


def leave(node_id: str, role: str | None = None) -> list[str]:
    """Remove the node's entry for ``role`` (every role when None) at once and announce
    ``NodeLeaving``. Returns the members removed. Raises RedisUnavailable."""
    members = [f"{r}:{node_id}" for r in ((role,) if role else ROLES)]
    if get_redis() is None:
        with _local_lock:
            return [m for m in members if _local.pop(m, None) is not None]

    def remove(client: redis.Redis) -> list[str]:
        pipe = client.pipeline(transaction=True)
        for member in members:
            pipe.delete(_key(member))
        pipe.srem(INDEX_KEY, *members)
        pipe.publish(CHANNEL, json.dumps(node_leaving(node=node_id, role=role)))
        deleted = pipe.execute()[: len(members)]
        return [m for m, n in zip(members, deleted, strict=True) if n]

    removed = call_redis(remove)
    logger.info("cluster: %s left (%s)", node_id, ", ".join(removed) or "no live entry")
    return removed


# How many sockets each ``ws`` node holds (apps.rooms.balance keeps the nodes even with it): one key
# per node, written by the node itself every WS_BALANCE_SECONDS and expiring unless refreshed.
def _sockets_key(node_id: str) -> str:
    return f"cluster:sockets:{node_id}"


def report_sockets(node_id: str, count: int, *, ttl: int = NODE_TTL_SECONDS) -> None:
    """Record that ``node_id`` holds ``count`` sockets. Raises RedisUnavailable."""
    call_redis(lambda client: client.set(_sockets_key(node_id), count, ex=ttl))


def socket_counts(nodes: list[NodeInfo] | None = None) -> dict[str, int]:
    """Sockets per live ``ws`` node (of ``nodes``, when the caller has just listed them); a live
    node that has not reported yet (just started) holds none. Raises RedisUnavailable."""
    ids = sorted({n.id for n in (live_nodes() if nodes is None else nodes) if n.role == "ws"})
    if not ids or get_redis() is None:
        return dict.fromkeys(ids, 0)
    values = call_redis(lambda client: client.mget([_sockets_key(i) for i in ids]))
    return {i: int(v or 0) for i, v in zip(ids, values, strict=True)}


class Heartbeat:
    """Registers one process's entry now and every ``interval`` seconds, on a daemon thread.

    A thread and not an asyncio task, so the same code runs in the three process kinds: the
    gunicorn workers and the Celery worker have no event loop, and in ``ws`` a Redis round trip
    of at most a second (the client's timeout) never runs on the loop that serves the sockets.
    """

    def __init__(
        self,
        role: str,
        *,
        node_id: str | None = None,
        interval: float = HEARTBEAT_SECONDS,
        ttl: int = NODE_TTL_SECONDS,
    ) -> None:
        self.role = role
        self.node_id = node_id or settings.SYNCTV_NODE_ID
        self.interval = interval
        self.ttl = ttl
        self.started = time.time()
        self.failing = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> bool:
        """One heartbeat; False when Redis did not answer (logged on the first failure only)."""
        try:
            register(self.node_id, self.role, started=self.started, ttl=self.ttl)
        except RedisUnavailable as exc:
            if not self.failing:
                logger.warning(
                    "cluster heartbeat of %s/%s failed (%s); retrying", self.node_id, self.role, exc
                )
            self.failing = True
            return False
        if self.failing:
            logger.info("cluster heartbeat of %s/%s is back: registered again", self.node_id, self.role)
        self.failing = False
        return True

    def start(self) -> Heartbeat:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"cluster-heartbeat-{self.role}", daemon=True
            )
            self._thread.start()
        return self

    def _run(self) -> None:
        self.beat()
        while not self._stop.wait(self.interval):
            self.beat()

    def stop(self, *, leave_cluster: bool = True) -> None:
        """Stop beating; with ``leave_cluster``, remove the entry at once (best effort)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 2)
        if leave_cluster:
            try:
                leave(self.node_id, self.role)
            except RedisUnavailable as exc:
                logger.warning("cluster: could not leave (%s); the entry expires by itself", exc)


_heartbeats: dict[str, Heartbeat] = {}
_heartbeats_lock = threading.Lock()


def start_heartbeat(role: str) -> Heartbeat:
    """This process's heartbeat for ``role``, started once per process."""
    with _heartbeats_lock:
        if role not in _heartbeats:
            _heartbeats[role] = Heartbeat(role).start()
        return _heartbeats[role]


def stop_heartbeat(role: str, *, leave_cluster: bool = True) -> None:
    with _heartbeats_lock:
        beat = _heartbeats.pop(role, None)
    if beat is not None:
        beat.stop(leave_cluster=leave_cluster)


# The command a process runs tells its role: gunicorn is ``web``, uvicorn is ``ws`` (the Procfile;
# uvicorn's and gunicorn's worker processes keep the parent's argv). Celery workers register from
# their own signals (synctv/celery.py), and tests, shells and ``manage.py`` do not register.
_SERVERS: dict[str, Role] = {"gunicorn": "web", "uvicorn": "ws"}


def server_role(argv: list[str] | None = None) -> Role | None:
    program = Path((argv if argv is not None else sys.argv)[0] or "")
    return _SERVERS.get(program.name) or _SERVERS.get(program.parent.name)  # or ``python -m ...``


def start_for_server() -> Heartbeat | None:
    """Called once per process at startup (apps.streaming.apps): beat if this is a server."""
    role = server_role()
    return start_heartbeat(role) if role else None
