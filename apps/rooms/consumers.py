"""The room WebSocket: ``/ws/rooms/{room_id}/`` (docs/api.md, "WebSocket").

Thin: authentication and the permission check are the same functions REST uses
(apps.accounts.selectors.authenticate_access_token, apps.permissions via RoomActor); playback goes
through the same service as ``PUT playback``. Room-wide events reach this socket through the
process's room hub (apps.rooms.hub), never through a per-socket channel-layer subscription.
Nothing a client sends can end this consumer: every frame is parsed by apps.rooms.messages and
every failure becomes an ``error`` frame.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.db import DatabaseSyncToAsync
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import connections

from apps.accounts.selectors import authenticate_access_token
from apps.core import events, realtime
from apps.core.context import Origin
from apps.core.errors import ApplicationError, NotFound, UserBanned
from apps.permissions.flags import Perm
from apps.rooms import messages, selectors, services
from apps.rooms.hub import direct_protocol, hub
from apps.rooms.moderation import escape
from apps.rooms.presence import user_of
from apps.rooms.serializers import MemberSerializer, RoomSerializer, user_ref

logger = logging.getLogger(__name__)

SUBPROTOCOL = "synctv.v1"
BEARER_PREFIX = "bearer."
CHAT_HISTORY = 50
CLOSE_UNAUTHORIZED, CLOSE_FORBIDDEN, CLOSE_NOT_FOUND = 4401, 4403, 4404
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_INTERNAL_ERROR = 1011
# One user's sockets in one room on this node. A few tabs or windows (a phone, a TV, a laptop) are
# normal; each socket is a subscriber in every fan-out and a presence entry, so more is a cost
# others pay. The next one is refused (not the oldest closed: two tabs that reconnect would evict
# each other forever); its page reconnects with backoff and gets in once one of the others closes.
MAX_SOCKETS_PER_USER_ROOM = 5
CLOSE_TOO_MANY_SOCKETS = 4429
# Member events tell who is in the room: they need VIEW_MEMBER_LIST, as REST ``members`` does.
MEMBER_EVENTS = frozenset({"member_joined", "member_left", "member_updated", "member_ready"})


class TokenBucket:
    """Burst ``capacity``, refilled at ``rate`` per second."""

    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, capacity: float, rate: float) -> None:
        self.capacity, self.rate, self.tokens, self.stamp = capacity, rate, capacity, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def wait(self) -> float:
        """Seconds until the next token (after a failed ``take``)."""
        return max(0.0, (1 - self.tokens) / self.rate)


# Per user (all their sockets in this process): chat 5 at once then 1 a second; emoji 10 then 3/s.
_chat_buckets: dict[str, TokenBucket] = {}
_emoji_buckets: dict[str, TokenBucket] = {}
CHAT_BURST, CHAT_RATE = 5, 1.0
EMOJI_BURST, EMOJI_RATE = 10, 3.0
FRAME_BURST, FRAME_RATE = 40, 20.0  # any frame, per socket
# Per user and room (all their sockets in this process): a changed ready state is broadcast to
# every member, so 4 at once then 2 a second; a change past that is sent when the allowance
# allows, the latest state only (so what members see ends right).
_ready_buckets: dict[str, TokenBucket] = {}
READY_BURST, READY_RATE = 4, 2.0
# Per user and room: connects, each announced to the room with its leave (member_joined and
# member_left); 10 at once (reloads, a flaky network) then one every 2 seconds.
_connect_buckets: dict[str, TokenBucket] = {}
CONNECT_BURST, CONNECT_RATE = 10, 0.5
# (user id, room id) -> that user's open sockets in that room in this process.
_sockets: dict[tuple[str, str], int] = {}


# --- database calls ---------------------------------------------------------------------------------
# channels' ``database_sync_to_async`` runs every call of the process on ONE thread (thread-
# sensitive), so chat inserts and playback writes of all sockets queue there. On PostgreSQL they run
# on a small pool of threads instead, each with its own connection (from the psycopg pool when one
# is configured; DatabaseSyncToAsync returns it after every call). Calls of one socket still run one
# at a time: a consumer handles its frames in order. SQLite keeps the one thread: concurrent
# writers there fail with "database is locked".
DEFAULT_PG_DB_THREADS = 4


def resolve_db_threads(*, requested: int, vendor: str, pool: object) -> int:
    """Threads for consumer database calls. ``requested``: WS_DB_THREADS (0 = automatic);
    ``pool``: the database's ``OPTIONS["pool"]`` (None, True or psycopg_pool arguments)."""
    if vendor != "postgresql":
        return 1
    threads = requested if requested > 0 else DEFAULT_PG_DB_THREADS
    if pool:
        # psycopg_pool's own default when Django is given pool=True: min_size 4, max_size = min_size.
        options = pool if isinstance(pool, dict) else {}
        max_size = options.get("max_size") or options.get("min_size") or 4
        # Leave one connection for the process's other sync work (the HTTP requests it answers);
        # a thread with no connection to take would wait for the pool's timeout, then fail.
        threads = min(threads, max_size - 1)
    return max(1, threads)


@functools.cache
def _db_executor() -> ThreadPoolExecutor | None:
    """The pool for consumer database calls, or None for channels' one shared thread."""
    db = connections["default"]
    requested = settings.WS_DB_THREADS
    pool = (db.settings_dict.get("OPTIONS") or {}).get("pool")
    threads = resolve_db_threads(requested=requested, vendor=db.vendor, pool=pool)
    if requested > threads:
        logger.warning("WS_DB_THREADS=%d lowered to %d (%s, pool %s)", requested, threads, db.vendor, pool)
    logger.info("WebSocket database calls on %d thread(s)", threads)
    if threads == 1:
        return None
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ws-db")


def database_sync_to_async(func):
    """channels' ``database_sync_to_async`` (old connections closed before and after each call),
    on this process's consumer database threads (see above)."""
    executor = _db_executor()
    if executor is None:
        return DatabaseSyncToAsync(func)
    return DatabaseSyncToAsync(func, thread_sensitive=False, executor=executor)


def _bucket(table: dict, key: str, capacity: float, rate: float) -> TokenBucket:
    bucket = table.get(key)
    if bucket is None:
        if len(table) > 100_000:
            table.clear()  # bounded memory; forgetting old buckets only forgives
        bucket = table[key] = TokenBucket(capacity, rate)
    return bucket


class RoomConsumer(AsyncWebsocketConsumer):
    # No channel layer per socket: the hub carries room and user events (see module docstring).
    channel_layer_alias = "__room_hub_only__"

    connection_id = ""
    user = None
    room = None
    actor = None
    claims = None
    direct = None  # the hub's fast path to this socket's transport, if any (hub.direct_protocol)
    _closing = False
    _pending: list[dict] | None = None  # events that arrived while connecting, held until after hello
    _channels: tuple[str, ...] = ()  # the hub channels this socket is subscribed to
    _slot: tuple[str, str] | None = None  # its place in _sockets, given back at disconnect
    _ready = True  # the ready state members were last told (presence starts everyone ready)
    _ready_wanted = True  # the latest the client sent
    _ready_later: asyncio.Task | None = None  # a rate-limited change waiting to go out

    async def dispatch(self, message):
        # channels' AsyncConsumer.dispatch awaits aclose_old_connections() (a hop to the sync
        # thread and back, ~0.5 ms) before EVERY handler, i.e. every frame a client sends. This
        # consumer touches the database only through database_sync_to_async, which closes old
        # connections itself before and after each call, on the thread that owns them; the
        # extra hop closed nothing and delayed every frame. (websocket_disconnect still does it.)
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    # --- connect / disconnect -----------------------------------------------------------------

    def _token(self) -> str | None:
        for proto in self.scope.get("subprotocols") or ():
            if proto.startswith(BEARER_PREFIX):
                return proto[len(BEARER_PREFIX) :]
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        values = query.get("token")
        return values[0] if values else None

    async def _refuse(self, code: int, reason: str, **details: Any) -> None:
        # A close code only reaches the client after the handshake: accept, say why, close.
        self._give_back_slot()
        await self.accept(self._subprotocol())
        await self.send_json_event(events.error("connection_refused", reason, **details))
        await self.close(code=code)

    def _take_slot(self) -> bool:
        """A place among this user's sockets in this room (MAX_SOCKETS_PER_USER_ROOM)."""
        key = (self.user.pk, self.room_id)
        count = _sockets.get(key, 0)
        if count >= MAX_SOCKETS_PER_USER_ROOM:
            return False
        _sockets[key] = count + 1
        self._slot = key
        return True

    def _give_back_slot(self) -> None:
        key, self._slot = self._slot, None
        if key is not None:
            left = _sockets.get(key, 1) - 1
            if left > 0:
                _sockets[key] = left
            else:
                _sockets.pop(key, None)

    def sees_members(self) -> bool:
        """VIEW_MEMBER_LIST: the right REST ``members`` checks (services.require), on this actor."""
        return self.actor is not None and self.actor.is_member and self.actor.can(Perm.VIEW_MEMBER_LIST)

    def _subprotocol(self) -> str | None:
        return SUBPROTOCOL if SUBPROTOCOL in (self.scope.get("subprotocols") or ()) else None

    async def connect(self) -> None:
        try:
            await self._connect()
        except BaseException:
            # channels never calls disconnect() for a connect that raised (the database or Redis
            # failed, the client left mid-handshake): give back what this socket took (its slot
            # among the user's sockets, its subscriptions, its presence entry) or it leaks.
            self._closing = True
            try:
                await self.disconnect(CLOSE_INTERNAL_ERROR)
            except Exception:
                logger.warning("clean-up after a failed connect failed", exc_info=True)
            finally:
                self._pending = None
            raise

    async def _connect(self) -> None:
        self._tasks: set[asyncio.Task] = set()
        self._frames = TokenBucket(FRAME_BURST, FRAME_RATE)
        self.room_id = self.scope["url_route"]["kwargs"]["room_id"]
        client = self.scope.get("client") or (None, None)
        headers = dict(self.scope.get("headers") or ())
        self.origin = Origin(ip=client[0], user_agent=headers.get(b"user-agent", b"").decode("latin-1")[:512])
        if hub.shutting_down:
            return await self._refuse(1012, "This server is restarting; reconnect shortly.")
        token = self._token()
        if not token:
            return await self._refuse(CLOSE_UNAUTHORIZED, "No token: send a bearer.<token> subprotocol.")
        try:
            self.user, self.claims = await database_sync_to_async(authenticate_access_token)(token)
        except UserBanned:
            return await self._refuse(CLOSE_FORBIDDEN, "This account is banned.")
        except ApplicationError as exc:
            return await self._refuse(CLOSE_UNAUTHORIZED, exc.message)
        try:
            room_channel = realtime.room_channel(self.room_id)
        except ValueError:  # not the shape of a room id: no such room
            return await self._refuse(CLOSE_NOT_FOUND, "No such room.")
        churn = _bucket(_connect_buckets, f"{self.user.pk}:{self.room_id}", CONNECT_BURST, CONNECT_RATE)
        if not churn.take():  # each connect and its leave are announced to the whole room
            return await self._refuse(
                CLOSE_TOO_MANY_SOCKETS,
                "Connecting too often; this page reconnects in a moment.",
                close_code=CLOSE_TOO_MANY_SOCKETS,
                retry_after=math.ceil(churn.wait()),
            )
        if not self._take_slot():  # before any database read: an extra socket costs nothing
            return await self._refuse(
                CLOSE_TOO_MANY_SOCKETS,
                f"This room is already open in {MAX_SOCKETS_PER_USER_ROOM} windows or tabs of yours; "
                "close one and this one reconnects.",
                close_code=CLOSE_TOO_MANY_SOCKETS,
            )
        # Subscribe before reading the room, the membership and the state, so that nothing
        # published in between is missed (a kick, a ban, a permission change, a playback
        # change); every event that arrives meanwhile is held and replayed after the hello.
        self._pending = []
        self._channels = (room_channel, realtime.user_channel(self.user.pk))
        for channel in self._channels:
            await hub.subscribe(channel, self)
        try:
            # The room once, with its member count, for the actor AND the hello (so the hello's
            # room settings and the member's effective permissions come from the same row).
            self.room, self.actor = await database_sync_to_async(self._load_room_and_actor)(with_counts=True)
        except NotFound:
            await self._unsubscribe()
            return await self._refuse(CLOSE_NOT_FOUND, "No such room.")
        if not self.actor.is_member:
            await self._unsubscribe()
            return await self._refuse(CLOSE_FORBIDDEN, "You are not a member of this room.")

        await self.accept(self._subprotocol())
        self.direct = direct_protocol(self.base_send)  # extensions are known once accepted
        self.connection_id = hub.presence.new_connection_id()
        first = await hub.presence.join(self.room.pk, self.connection_id, self._presence_info(ready=True))
        hello, history = await database_sync_to_async(self._hello_and_history)()
        online = await hub.presence.online(self.room.pk)
        if not self.sees_members():  # the field stays, with themselves only
            online = [info for info in online if info.get("user_id") == self.user.pk]
        hello["members_online"] = online
        await self.send_json_event(hello)
        for chat in history:
            await self.send_json_event(chat)
        last_chat, version = (history[-1]["id"] if history else 0), hello["playback"]["version"]
        while self._pending and not self._closing:  # then what was held, in order
            event = self._pending.pop(0)
            if not self._act_on(event):  # a kick, a ban, a permission change: acted on here
                continue
            kind = event.get("type")  # sent, unless hello or the history already hold it
            if (kind == "chat" and event.get("id", 0) <= last_chat) or (
                kind == "playback" and event.get("version", 0) <= version
            ):
                continue
            await self.send_json_event(event)
        self._pending = None
        if first and not self._closing:
            await hub.publish(
                realtime.room_channel(self.room.pk),
                events.member_joined(user=self._user_ref(), role=self.actor_role()),
            )

    def _load_room_and_actor(self, *, with_counts: bool = False):
        """The room and this socket's actor: 2 queries (the membership row comes with this
        socket's user and the room attached, so serialising it reads nothing more)."""
        room = selectors.room_get(self.room_id, with_counts=with_counts)
        return room, selectors.room_actor(user=self.user, room=room, auth=self.claims)

    def _hello_and_history(self) -> tuple[events.Hello, list[events.Chat]]:
        """Playback state and chat history: 2 queries (the room is the one connect loaded). The
        hello's ``members_online`` is filled in by connect, from presence, after these reads."""
        state = selectors.playback_get(room=self.room)
        member = self.actor.member
        if member is not None:
            member_payload = dict(MemberSerializer(member).data)
        else:
            member_payload = {
                "user": self._user_ref(),
                "role": "site_admin",
                "status": "active",
                "effective_permissions": self.actor.permissions,
            }
        history = [
            services.chat_event(row, history=True)
            for row in selectors.chat_history(room=self.room, limit=CHAT_HISTORY)
        ]
        hello = events.hello(
            member=member_payload,
            room=dict(RoomSerializer(self.room).data),
            playback=events.playback_state(selectors.playback_view(state)),
            members_online=[],
        )
        return hello, history

    def _user_ref(self) -> dict:
        return user_ref(self.user)

    def actor_role(self) -> str:
        return self.actor.member.role if self.actor.member is not None else "site_admin"

    def _presence_info(self, *, ready: bool) -> dict:
        user = self.user
        return {
            "user_id": user.pk,
            "username": user.public_name,
            "guest": user.is_guest,
            "role": self.actor_role(),
            "ready": ready,
        }

    async def _unsubscribe(self) -> None:
        channels, self._channels = self._channels, ()
        for channel in channels:
            await hub.unsubscribe(channel, self)

    async def disconnect(self, code) -> None:
        self._give_back_slot()
        for task in list(getattr(self, "_tasks", ())):
            task.cancel()
        await self._unsubscribe()
        if self.room is None or self.user is None:
            return
        if self.connection_id:
            last = await hub.presence.leave(self.room.pk, self.connection_id, self.user.pk)
            if last:
                event = events.member_left(user=self._user_ref())
                await hub.publish(realtime.room_channel(self.room.pk), event)

    # --- sending ----------------------------------------------------------------------------------

    async def send_json_event(self, event: Mapping[str, Any]) -> None:
        await self.send(text_data=realtime.encode(event))

    async def send_error(self, code: str, message: str, ref: Any = None, **details: Any) -> None:
        await self.send_json_event(events.error(code, message, ref, **details))

    # --- receiving --------------------------------------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None) -> None:
        if self._closing:
            return
        try:
            if not self._frames.take():
                return await self.send_error("rate_limited", "Too many messages; slow down.")
            message = messages.parse(text_data, bytes_data)
        except messages.BadMessage as exc:
            return await self.send_error("invalid", exc.message, exc.ref)
        try:
            await getattr(self, f"on_{message.type}")(message)
        except ApplicationError as exc:
            await self.send_error(exc.code, exc.message, message.ref, **exc.details)
        except Exception:
            logger.exception("room consumer failed on %s", message.type)
            await self.send_error("server_error", "That failed on our side.", message.ref)

    async def on_ping(self, message: messages.Ping) -> None:
        await self.send_json_event(events.pong(t=message.t))

    async def on_sync(self, message: messages.Sync) -> None:
        state = await database_sync_to_async(selectors.playback_get)(room=self.room)
        state_now = events.playback_state(selectors.playback_view(state))
        await self.send_json_event(events.playback(state=state_now, by=None, sync=True))

    async def on_chat(self, message: messages.Chat) -> None:
        # The right and the text first (no query), then the user's allowance, then one INSERT.
        services.chat_check(actor=self.actor, text=message.text)
        if not _bucket(_chat_buckets, self.user.pk, CHAT_BURST, CHAT_RATE).take():
            return await self.send_error("rate_limited", "You are sending messages too fast.", message.ref)
        row = await database_sync_to_async(services.chat_send)(
            actor=self.actor, room=self.room, text=message.text, origin=self.origin, announce=False
        )
        # Published here, on the event loop, not by the service from the database thread
        # (services.chat_send says why).
        await hub.publish(realtime.room_channel(self.room.pk), services.chat_event(row))

    async def on_emoji(self, message: messages.Emoji) -> None:
        services.require(self.actor, Perm.SEND_EMOJI)
        if not _bucket(_emoji_buckets, self.user.pk, EMOJI_BURST, EMOJI_RATE).take():
            return await self.send_error("rate_limited", "You are sending emoji too fast.", message.ref)
        await hub.publish(
            realtime.room_channel(self.room.pk),
            events.emoji(user=self._user_ref(), emoji=escape(message.emoji)),
        )

    async def on_playback(self, message: messages.Playback) -> None:
        # Validated when parsed (messages.Playback is a PlaybackChange, PUT playback's rules).
        await database_sync_to_async(services.playback_update)(
            actor=self.actor, room=self.room, origin=self.origin, **message.changes()
        )  # the service announces the new state to the room after commit

    async def on_ready(self, message: messages.Ready) -> None:
        self._ready_wanted = message.ready
        if self._ready_later is None:  # else the change already waiting will carry this one
            await self._announce_ready()

    async def _announce_ready(self) -> None:
        """Tell the room this socket's ready state if it changed, within the user's allowance;
        past it, once the allowance allows, whatever the latest state is then. Nothing is
        refused: a client reports its buffering as it happens and must not be told off for it."""
        if self._ready_wanted == self._ready or self._closing:
            return  # no change (or back where it was): nothing to tell anyone
        bucket = _bucket(_ready_buckets, f"{self.user.pk}:{self.room.pk}", READY_BURST, READY_RATE)
        if not bucket.take():
            self._ready_later = self._spawn(self._announce_ready_later(bucket.wait()))
            return
        ready = self._ready = self._ready_wanted
        await hub.presence.set_info(self.room.pk, self.connection_id, self._presence_info(ready=ready))
        await hub.publish(
            realtime.room_channel(self.room.pk),
            events.member_ready(user=self._user_ref(), ready=ready),
        )

    async def _announce_ready_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._ready_later = None
        await self._announce_ready()

    # --- events from the hub (sync: return True to forward the frame) ------------------------------

    def on_event(self, channel: str, event: dict[str, Any]) -> bool:
        if self._closing:
            return False
        if self._pending is not None:  # connecting: connect() replays it after the hello
            self._pending.append(event)
            return False
        return self._act_on(event)

    def _act_on(self, event: dict[str, Any]) -> bool:
        """Act on an event for this socket; True when its frame goes to the client."""
        kind = event.get("type", "")
        if not kind.startswith("_"):
            subject = None
            if kind in MEMBER_EVENTS:
                member = event.get("member") or {}
                who = member.get("user") if kind == "member_updated" else event.get("user")
                subject = (who or {}).get("id")
                if subject != self.user.pk and not self.sees_members():
                    # Not theirs to know. The hub wrote nothing yet: the frame, built once for the
                    # room, just skips this socket.
                    return False
            if (kind == "member_updated" and subject == self.user.pk) or kind == "room_updated":
                self._spawn(self._reload_actor())  # permissions may have changed
            return True
        # Internal events (apps.core.events): acted on, never forwarded. A site ban arrives as
        # _sessions_revoked: the token re-check finds the account banned and kicks with "banned".
        if kind == "_member_removed" and event.get("user_id") == self.user.pk:
            self._spawn(self._kick(event.get("reason", "removed"), CLOSE_FORBIDDEN))
        elif kind == "_room_closed":
            self._spawn(self._kick(event.get("reason", "room_closed"), CLOSE_NOT_FOUND))
        elif kind == "_sessions_revoked":
            self._spawn(self._recheck_token())
        return False

    def on_slow(self) -> None:
        self._spawn(self._drop_slow())

    def on_resync(self) -> None:
        """The hub is back on Redis after an outage: re-check the session and the membership."""
        if not self._closing and self.room is not None:
            self._spawn(self._resync())

    async def _resync(self) -> None:
        await self._recheck_token()
        if self._closing:
            return
        try:
            await self._reload_actor()
        except NotFound:
            await self._kick("room_closed", CLOSE_NOT_FOUND)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _reload_actor(self) -> None:
        saw_members = self.sees_members()
        self.room, self.actor = await database_sync_to_async(self._load_room_and_actor)()
        if not self.actor.is_member:
            await self._kick("removed", CLOSE_FORBIDDEN)
        elif not saw_members and self.sees_members():
            await self._catch_up_on_members()

    async def _catch_up_on_members(self) -> None:
        """VIEW_MEMBER_LIST was just granted: tell this socket who is online, as the hello would
        have (one ``member_joined`` each, with their ``ready`` state), so its list is right without
        a reconnect. From here on the room's member events reach it as they happen."""
        for info in await hub.presence.online(self.room.pk):
            if info.get("user_id") == self.user.pk:
                continue
            await self.send_json_event(
                events.member_joined(user=user_of(info), role=info.get("role"), ready=info.get("ready", True))
            )

    async def _recheck_token(self) -> None:
        token = self._token()
        try:
            await database_sync_to_async(authenticate_access_token)(token)
        except UserBanned:
            await self._kick("banned", CLOSE_FORBIDDEN)
        except ApplicationError:
            await self._kick("session_ended", CLOSE_UNAUTHORIZED)

    async def _kick(self, reason: str, code: int) -> None:
        if self._closing:
            return
        self._closing = True
        await self.send_json_event(events.kicked(reason=reason))
        await self.close(code=code)

    async def _drop_slow(self) -> None:
        if not self._closing:
            self._closing = True
            await self.close(code=CLOSE_TRY_AGAIN_LATER)
