"""The per-process room hub: fan-out of real-time events to this process's sockets.

One hub per ``ws`` process (``hub``). Local sockets subscribe to channels (a room, their user);
the hub holds ONE Redis pub/sub connection for the whole process and one subscription per
channel, no matter how many local sockets want it. An event arrives once, is decoded once, and
the same encoded frame is written to every local socket that wants it, in one pass.

Invariants:
- A socket that cannot take a frame within SLOW_SEND_SECONDS (its client stopped reading) is
  dropped, so one stuck client never stalls a room.
- ``subscribe`` returns only once Redis confirmed the subscription (or could not be reached), so
  state a consumer reads afterwards misses no event.
- When Redis goes away the hub keeps serving local traffic, reconnects with backoff and
  re-subscribes every channel it needs, then asks every local socket to re-check what it may
  have missed and tells each room's sockets its current playback state (docs/security.md, When
  Redis is down).
- The pass is the hot path measured by bench/ws: per socket per event it does only what
  ``dispatch``/``send_many`` do here and in apps.rooms.frames, nothing more.

The job is split in three modules:
- this one: subscriptions, publishing, the Redis reader, dispatch and the ASGI send path;
- apps.rooms.frames: building a frame once and writing it straight to uvicorn's transports
  (``direct_protocol``);
- apps.rooms.presence: who is online per room (Redis, or process memory without Redis);
- apps.rooms.roster: who is online per room as this node knows it, and the batched member
  events its sockets get (the hub hands it the ``_presence`` announcements and never passes
  them to the sockets).
Their public names are re-exported here, so ``from apps.rooms.hub import ...`` keeps working.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import operator
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import redis.asyncio as aioredis
from django.conf import settings
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from apps.core import events, metrics, realtime
from apps.rooms.batching import Batcher
from apps.rooms.dbthreads import database_sync_to_async
from apps.rooms.frames import DIRECT_WRITES, count_sent, direct_protocol, text_frame, write_direct
from apps.rooms.greeting import current_playback_event, readings
from apps.rooms.presence import (
    HEARTBEAT_SECONDS,
    PRESENCE_TTL_SECONDS,
    LocalPresence,
    Presence,
    RedisPresence,
)
from apps.rooms.roster import Roster, Rosters

__all__ = [
    "HEARTBEAT_SECONDS",
    "PRESENCE_TTL_SECONDS",
    "LocalPresence",
    "Presence",
    "RedisPresence",
    "RoomHub",
    "Subscriber",
    "direct_protocol",
    "hub",
]

logger = logging.getLogger(__name__)

SLOW_SEND_SECONDS = 0.25
REDIS_POOL_SIZE = 50  # connections for publishes and presence, per process
RECONNECT_DELAYS = (0.2, 0.5, 1.0, 2.0)
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
        # Sockets joining in the same moment share one SUBSCRIBE (apps.rooms.batching).
        self._redis_subscriptions: Batcher[tuple[str, str]] = Batcher(self._send_subscriptions)
        self.presence: Presence | None = None
        self.rosters = Rosters(self.send_text)
        self._reloading: asyncio.Future | None = None
        self._catching_up: asyncio.Future | None = None
        self.shutting_down = False
        self.admission = asyncio.Semaphore(settings.WS_CONNECTS_IN_FLIGHT)  # RoomConsumer._connect
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
        self.presence.announce_locally = self.dispatch_event
        self.presence.start()

    async def roster(self, room_id: str) -> Roster:
        """This node's roster of the room, read once (the caller is subscribed to the room)."""
        roster = self.rosters.get(room_id)
        await roster.ensure_loaded(self.presence)
        return roster

    @property
    def redis(self) -> aioredis.Redis | None:
        return self._redis

    def local_subscribers(self) -> list[Subscriber]:
        seen: dict[int, Subscriber] = {}
        for subs in self.channels.values():
            for s in subs:
                seen[id(s)] = s
        return list(seen.values())

    async def announce_shutdown(
        self, message: str, reconnect_after_ms: int, reconnects_per_second: float, drain_ms: int = 0
    ) -> int:
        """Tell every local socket the server is going away; new connections are refused from now.
        Their reconnects are spread over a window sized from how many they are, so that the
        nodes taking them over get ``reconnects_per_second`` at most (docs/operations.md). With
        ``drain_ms`` the sockets stay open and delivering that long while their clients move
        (apps.rooms.lifecycle): the window then fits in the first half of it."""
        self.shutting_down = True
        self.rosters.stop_telling()
        subscribers = self.local_subscribers()
        window_ms = reconnect_window_ms(len(subscribers), reconnects_per_second)
        if drain_ms:
            window_ms = min(window_ms, max(500, drain_ms // 2))
        text = realtime.encode(
            events.server_shutdown(
                message=message,
                reconnect_after_ms=reconnect_after_ms,
                reconnect_window_ms=window_ms,
                drain_ms=drain_ms,
            )
        )
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
        once Redis confirmed (or could not be reached), so state read afterwards misses nothing:
        a second subscriber that comes while the first waits waits for the same confirmation."""
        await self.ensure_started()
        subs = self.channels[channel]
        first = not subs
        subs.add(subscriber)
        if first and channel.startswith(realtime.ROOM_CHANNEL_PREFIX):
            metrics.WS_ROOMS.labels(settings.SYNCTV_NODE_ID).inc()
        if not self._listening():
            return
        if first:
            confirmed = self._confirm[channel] = self.loop.create_future()
        elif (confirmed := self._confirm.get(channel)) is None:
            return  # confirmed already
        try:
            if first:
                await self._redis_subscriptions.submit(None, ("subscribe", channel))
            await asyncio.wait_for(asyncio.shield(confirmed), SUBSCRIBE_CONFIRM_SECONDS)
        except (TimeoutError, OSError, aioredis.RedisError):
            logger.warning("subscription to %s not confirmed; the reader will retry", channel)
        finally:
            if first and self._confirm.get(channel) is confirmed:
                del self._confirm[channel]

    async def unsubscribe(self, channel: str, subscriber: Subscriber) -> None:
        subs = self.channels.get(channel)
        if not subs:
            return
        subs.discard(subscriber)
        if not subs:
            del self.channels[channel]
            if channel.startswith(realtime.ROOM_CHANNEL_PREFIX):
                metrics.WS_ROOMS.labels(settings.SYNCTV_NODE_ID).dec()
            self.rosters.drop(channel)
            readings.invalidate(channel)
            if self._listening():
                with contextlib.suppress(OSError, aioredis.RedisError):
                    await self._redis_subscriptions.submit(None, ("unsubscribe", channel))

    def _listening(self) -> bool:
        return self._pubsub is not None and self._connected is not None and self._connected.is_set()

    async def _send_subscriptions(self, _key: None, changes: list[tuple[str, str]]) -> list[None]:
        """The (un)subscriptions of the sockets that came and went while the last were sent: one
        command per run of the same kind, in order (an unsubscription and a subscription of one
        channel must reach Redis in the order they were made)."""
        pubsub = self._pubsub
        if pubsub is None:
            raise aioredis.ConnectionError("not connected")
        for kind, run in itertools.groupby(changes, key=operator.itemgetter(0)):
            channels = [channel for _, channel in run]
            await (pubsub.subscribe if kind == "subscribe" else pubsub.unsubscribe)(*channels)
        return [None] * len(changes)

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

    async def dispatch_event(self, channel: str, event: Mapping[str, Any]) -> None:
        """Deliver an event on this node only (presence without Redis, or while it is down)."""
        await self.dispatch(channel, realtime.encode(event))

    async def dispatch(self, channel: str, text: str) -> None:
        """Deliver an event read off Redis to this node's sockets on ``channel``; its time, from
        here to the last socket written, goes to /metrics (``synctv_ws_fanout_seconds``)."""
        subs = self.channels.get(channel)
        if not subs:
            return
        started = time.perf_counter()
        try:
            event = json.loads(text)
        except ValueError:
            logger.error("undecodable event on %s dropped", channel)
            return
        readings.invalidate(channel, event.get("type"))
        if self.rosters.on_event(channel, event):
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
            metrics.WS_FANOUT.observe(time.perf_counter() - started)

    async def send_text(self, subscribers: list[Subscriber], text: str) -> None:
        await self.send_many(subscribers, {"type": "websocket.send", "text": text})

    async def send_many(self, subscribers: list[Subscriber], message: dict) -> None:
        """Write one frame to many sockets in one pass: the frame is built once and written to
        every socket that takes it directly (apps.rooms.frames: ``direct_protocol``,
        ``writable_now``); the others go through ``send_asgi``."""
        text = message.get("text")
        if text is not None:
            count_sent(text, len(subscribers))
        if text is None or not DIRECT_WRITES:
            return await self.send_asgi(subscribers, message)
        try:
            frame = text_frame(text)
        except ValueError:  # not encodable (a lone surrogate): the ASGI path fails per socket
            return await self.send_asgi(subscribers, message)
        rest, direct = write_direct(subscribers, frame)
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

    async def _tell_current_playback(self) -> None:
        """After Redis came back: a playback change made meanwhile on another node (or over REST)
        reached none of this node's sockets, and nothing would tell them until the next change.
        Each room's current state goes to its sockets once (a client applies the newest version)."""
        for room_id in [roster.room_id for roster in self.rosters.by_channel.values()]:
            try:
                event = await database_sync_to_async(current_playback_event)(room_id)
            except Exception:  # the database is down too: the next change will tell them
                logger.warning("playback of %s not re-sent after the Redis outage", room_id, exc_info=True)
                continue
            if event is not None:
                await self.dispatch_event(realtime.room_channel(room_id), event)

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
                    readings.clear()
                    self._resync_local()
                    self._reloading = asyncio.ensure_future(self.rosters.reload(self.presence))
                    self._catching_up = asyncio.ensure_future(self._tell_current_playback())
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


def reconnect_window_ms(sockets: int, per_second: float) -> int:
    """How long the reconnects of ``sockets`` take at ``per_second``: at least half a second (a
    few sockets still should not arrive in the same millisecond), at most a minute."""
    return int(min(60_000, max(500, 1000 * sockets / max(per_second, 1.0))))


hub = RoomHub()
