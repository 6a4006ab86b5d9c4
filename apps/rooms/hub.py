"""The per-process room hub and presence (ARCHITECTURE.md § Fan-out, ISSUE: real-time rooms).

One hub per ``ws`` process. Local sockets subscribe to channels (a room, their user); the hub
holds ONE Redis pub/sub connection for the whole process and one subscription per channel, no
matter how many local sockets want it. An event arrives once, is decoded once, and the same
encoded frame is written to every local socket that wants it, in one pass. A socket that cannot
take a frame within SLOW_SEND_SECONDS (its client stopped reading) is dropped, so one stuck
client never stalls a room.

Under uvicorn's websockets-sansio protocol (the Procfile's, with per-message deflate off) the
WebSocket frame of an event is built once and the same bytes are written to each open socket's
transport (``direct_protocol``); any socket that does not qualify at that moment goes through the
ordinary ASGI ``send``.

When Redis goes away the hub keeps serving local traffic, reconnects with backoff and
re-subscribes every channel it needs, so sockets hear events again within seconds of Redis
answering. Presence lives in Redis with heartbeats (a dead node's sockets expire), or in
process memory in the embedded default.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import redis.asyncio as aioredis
from django.conf import settings
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from apps.core import events, realtime

try:
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    from websockets.frames import Frame, Opcode
    from websockets.protocol import OPEN
except ImportError:  # another ASGI server: every frame goes through the ASGI send
    WebSocketsSansIOProtocol = None

logger = logging.getLogger(__name__)

SLOW_SEND_SECONDS = 0.25
REDIS_POOL_SIZE = 50  # connections for publishes and presence, per process
RECONNECT_DELAYS = (0.2, 0.5, 1.0, 2.0)
HEARTBEAT_SECONDS = 5.0
PRESENCE_TTL_SECONDS = 15.0
SUBSCRIBE_CONFIRM_SECONDS = 2.0


class Subscriber(Protocol):
    """What the hub needs from a socket."""

    base_send: Callable
    connection_id: str
    direct: Any  # direct_protocol(base_send) once the socket is accepted, or None

    def on_event(self, channel: str, event: dict[str, Any]) -> bool:
        """React to an event; return True to have the encoded frame written to the socket."""

    def on_slow(self) -> None:
        """The socket did not take a frame in time: it will be dropped."""


class RoomHub:
    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.channels: dict[str, set[Subscriber]] = defaultdict(set)
        self._redis: aioredis.Redis | None = None
        self._subscriber: aioredis.Redis | None = None
        self._pubsub = None
        self._connected: asyncio.Event | None = None
        self._reader: asyncio.Task | None = None
        self._confirm: dict[str, asyncio.Future] = {}
        self.presence: Presence | None = None
        self.shutting_down = False
        self.stats = {"delivered": 0, "delivered_direct": 0, "dropped_slow": 0, "redis_reconnects": 0}

    # --- lifecycle -------------------------------------------------------------------------------

    async def ensure_started(self) -> None:
        if self.loop is not None:
            return
        self.loop = asyncio.get_running_loop()
        realtime.set_local_hub(self)
        if settings.REDIS_URL:
            options = {
                "socket_connect_timeout": 1,
                "socket_timeout": 5,
                "decode_responses": True,
                "health_check_interval": 15,
            }
            # After a Redis restart every pooled connection is dead: a command retries once, at
            # once, on a fresh one (else the first publish would reach this node only). The
            # subscriber connection keeps no retry, so its reader sees every loss and resyncs.
            once = Retry(NoBackoff(), 1, supported_errors=(aioredis.ConnectionError,))
            # A blocking pool: when a node's sockets all close at once (a restart, a load test
            # ending) every disconnect publishes member_left concurrently; redis-py's default pool
            # raises "Too many connections" past 100 and those events reached this node only.
            # Here a burst waits for a free connection instead.
            pool = aioredis.BlockingConnectionPool.from_url(
                settings.REDIS_URL, max_connections=REDIS_POOL_SIZE, timeout=5, retry=once, **options
            )
            self._redis = aioredis.Redis(connection_pool=pool)
            self._subscriber = aioredis.Redis.from_url(settings.REDIS_URL, **options)
            self._connected = asyncio.Event()
            self._reader = asyncio.create_task(self._read_forever(), name="room-hub-reader")
            self.presence = RedisPresence(self._redis)
        else:
            self.presence = LocalPresence()
        self.presence.start()

    @property
    def redis(self) -> aioredis.Redis | None:
        return self._redis

    def local_subscribers(self) -> list[Subscriber]:
        seen: dict[int, Subscriber] = {}
        for subs in self.channels.values():
            for s in subs:
                seen[id(s)] = s
        return list(seen.values())

    async def announce_shutdown(self, message: str, reconnect_after_ms: int) -> int:
        """Tell every local socket the server is going away; new connections are refused from now."""
        self.shutting_down = True
        subscribers = self.local_subscribers()
        text = realtime.encode(events.server_shutdown(message=message, reconnect_after_ms=reconnect_after_ms))
        await self.send_many(subscribers, {"type": "websocket.send", "text": text})
        logger.info(
            "hub: %(delivered)d frames delivered (%(delivered_direct)d written directly), "
            "%(dropped_slow)d slow sockets dropped, %(redis_reconnects)d Redis reconnects",
            self.stats,
        )
        return len(subscribers)

    # --- subscriptions ---------------------------------------------------------------------------

    async def subscribe(self, channel: str, subscriber: Subscriber) -> None:
        """Add a local subscriber; the first one makes the process subscribe on Redis. Returns
        once Redis confirmed (or could not be reached), so state read afterwards misses nothing."""
        await self.ensure_started()
        subs = self.channels[channel]
        first = not subs
        subs.add(subscriber)
        if first and self._pubsub is not None and self._connected is not None and self._connected.is_set():
            future = self.loop.create_future()
            self._confirm[channel] = future
            try:
                await self._pubsub.subscribe(channel)
                await asyncio.wait_for(asyncio.shield(future), SUBSCRIBE_CONFIRM_SECONDS)
            except (TimeoutError, OSError, aioredis.RedisError):
                logger.warning("subscription to %s not confirmed; the reader will retry", channel)
            finally:
                self._confirm.pop(channel, None)

    async def unsubscribe(self, channel: str, subscriber: Subscriber) -> None:
        subs = self.channels.get(channel)
        if not subs:
            return
        subs.discard(subscriber)
        if not subs:
            del self.channels[channel]
            if self._pubsub is not None and self._connected is not None and self._connected.is_set():
                with contextlib.suppress(OSError, aioredis.RedisError):
                    await self._pubsub.unsubscribe(channel)

    # --- publishing (from async code in this process) ----------------------------------------------

    async def publish(self, channel: str, event: Mapping[str, Any]) -> None:
        text = realtime.encode(event)
        if self._redis is not None:
            try:
                await self._redis.publish(channel, text)
                return
            except (OSError, aioredis.RedisError) as exc:
                logger.warning(
                    "Redis unavailable (%s: %s): %s delivered on this node only",
                    type(exc).__name__,
                    exc,
                    event.get("type"),
                )
        await self.dispatch(channel, text)

    def deliver_threadsafe(self, channel: str, text: str) -> None:
        """From a worker thread of this process (services run there): deliver locally."""
        if self.loop is None or self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self.dispatch(channel, text)))

    # --- delivery --------------------------------------------------------------------------------

    async def dispatch(self, channel: str, text: str) -> None:
        subs = self.channels.get(channel)
        if not subs:
            return
        try:
            event = json.loads(text)
        except ValueError:
            logger.error("undecodable event on %s dropped", channel)
            return
        wanted = []
        for sub in list(subs):
            try:
                if sub.on_event(channel, event):
                    wanted.append(sub)
            except Exception:  # one socket's bug must not stop the room
                logger.exception("subscriber failed on %s", event.get("type"))
        if wanted:
            await self.send_many(wanted, {"type": "websocket.send", "text": text})

    async def send_many(self, subscribers: list[Subscriber], message: dict) -> None:
        """Write one frame to many sockets in one pass: the frame is built once and written to
        every socket that takes it directly (``direct_protocol``, ``_writable_now``); the others
        go through ``send_asgi``."""
        text = message.get("text")
        if text is None or WebSocketsSansIOProtocol is None:
            return await self.send_asgi(subscribers, message)
        try:
            # What proto.conn.send_text() would queue: an unmasked (server side) final TEXT frame,
            # no extension (direct_protocol refused sockets that negotiated one).
            frame = Frame(Opcode.TEXT, text.encode()).serialize(mask=False, extensions=[])
        except ValueError:  # not encodable (a lone surrogate): the ASGI path fails per socket
            return await self.send_asgi(subscribers, message)
        rest, direct = [], 0
        for sub in subscribers:
            proto = getattr(sub, "direct", None)
            if proto is None or not _writable_now(proto):
                rest.append(sub)
                continue
            try:
                proto.transport.write(frame)
            except Exception:  # noqa: S112 - the transport failed meanwhile; the rest still get it
                continue
            direct += 1
        self.stats["delivered"] += direct
        self.stats["delivered_direct"] += direct
        if rest:
            await self.send_asgi(rest, message)

    async def send_asgi(self, subscribers: list[Subscriber], message: dict) -> None:
        """Write one frame to many sockets through each one's ASGI send, in one pass. One timer
        covers the whole pass; the socket that was being written when it fires is the slow one
        and is dropped."""
        i, n = 0, len(subscribers)
        while i < n:
            try:
                async with asyncio.timeout(SLOW_SEND_SECONDS):
                    while i < n:
                        sub = subscribers[i]
                        i += 1
                        await sub.base_send(message)
                        self.stats["delivered"] += 1
            except TimeoutError:
                self.stats["dropped_slow"] += 1
                subscribers[i - 1].on_slow()
            except Exception:  # noqa: S112 - a socket that closed meanwhile; the rest still get it
                continue

    def _resync_local(self) -> None:
        """Events published while Redis was down never reached this node (a kick, a ban, a logout
        on another node): every local socket re-checks what they would have told it."""
        for sub in self.local_subscribers():
            resync = getattr(sub, "on_resync", None)
            if resync is None:
                continue
            try:
                resync()
            except Exception:
                logger.exception("resync failed for a subscriber")

    # --- Redis reader ------------------------------------------------------------------------------

    async def _read_forever(self) -> None:
        attempt = 0
        while True:
            try:
                self._pubsub = self._subscriber.pubsub()
                channels = list(self.channels)
                await self._pubsub.subscribe("synctv:__hub__", *channels)
                self._connected.set()
                if attempt:
                    self.stats["redis_reconnects"] += 1
                    logger.info("hub reconnected to Redis; re-subscribed %d channel(s)", len(channels))
                    self._resync_local()
                attempt = 0
                while True:
                    message = await self._pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    kind = message["type"]
                    if kind == "message":
                        await self.dispatch(message["channel"], message["data"])
                    elif kind == "subscribe":
                        future = self._confirm.get(message["channel"])
                        if future is not None and not future.done():
                            future.set_result(True)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis went away: keep the process up, come back later
                self._connected.clear()
                delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
                attempt += 1
                logger.warning("hub lost Redis (%s); retrying in %.1fs", type(exc).__name__, delay)
                with contextlib.suppress(Exception):
                    await self._pubsub.aclose()
                await asyncio.sleep(delay)


# --- writing frames directly ----------------------------------------------------------------------------


def direct_protocol(send: Callable) -> Any:
    """The uvicorn protocol behind an ASGI ``send`` if the hub may write frames to its transport
    itself, else None. Only uvicorn's websockets-sansio protocol qualifies (its ``send`` does
    exactly this: ``conn.send_text`` + ``transport.write``, nothing else), and only on a socket
    that negotiated no extension (per-message deflate compresses each message per socket). Call
    once the socket is accepted: extensions are settled then and never change."""
    proto = getattr(send, "__self__", None)
    if (
        WebSocketsSansIOProtocol is None
        or type(proto) is not WebSocketsSansIOProtocol
        or getattr(send, "__func__", None) is not WebSocketsSansIOProtocol.send
        or not proto.handshake_complete
        or proto.conn.extensions
    ):
        return None
    try:
        _writable_now(proto)  # every attribute it reads exists in this uvicorn/websockets
    except AttributeError:
        logger.warning("uvicorn's websockets-sansio protocol changed: frames go through ASGI send")
        return None
    return proto


def _writable_now(proto) -> bool:
    """Would ``proto.send`` write a text frame right now, without waiting? The same conditions
    it checks (writable, not disconnected, no close sent, an accepted socket), plus nothing of the
    connection's own still queued and no fragmented message open, so no frame can be reordered.
    A socket that is not writable (its client stopped reading) takes the ASGI path, where the
    slow-socket timer applies to it as before."""
    conn = proto.conn
    return (
        proto.writable.is_set()
        and not proto.disconnected
        and not proto.close_sent
        and proto.initial_response is None
        and conn.state is OPEN
        and not conn.writes
        and not conn.expect_continuation_frame
        and not proto.transport.is_closing()
    )


# --- presence ------------------------------------------------------------------------------------------


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
                pipe.expire(hkey, 24 * 3600)
                pipe.expire(zkey, 24 * 3600)
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
                    pipe.expire(hkey, 24 * 3600)
                await pipe.execute()
        for room_id, _conns in rooms:
            await self._sweep(room_id, now)

    async def _sweep(self, room_id: str, now: float) -> None:
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
                await hub.publish(realtime.room_channel(room_id), events.member_left(user=_public(info)))


def _public(info: dict) -> events.UserRef:
    """The user object of a presence entry (as apps.rooms.serializers.user_ref)."""
    return {"id": info["user_id"], "username": info.get("username", ""), "guest": bool(info.get("guest"))}


hub = RoomHub()
