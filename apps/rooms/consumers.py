"""The room WebSocket: ``/ws/rooms/{room_id}/`` (docs/api.md, "WebSocket").

Thin: authentication and the permission check are the same functions REST uses
(apps.accounts.selectors: the two halves of authenticate_access_token, verify_access_token on the
event loop and authenticate_verified_token in the connect's one database call; apps.permissions
via RoomActor); playback goes
through the same service as ``PUT playback``. Room-wide events reach this socket through the
process's room hub (apps.rooms.hub), never through a per-socket channel-layer subscription.
Nothing a client sends can end this consumer: every frame is parsed by apps.rooms.messages and
every failure becomes an ``error`` frame.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer
from uvicorn.protocols.utils import ClientDisconnected

from apps.accounts.selectors import authenticate_access_token, authenticate_verified_token
from apps.core import events, ratelimit, realtime
from apps.core.errors import ApplicationError, NotFound, ServiceDegraded, UserBanned
from apps.permissions.flags import Perm
from apps.permissions.rules import RoomActor
from apps.rooms import greeting, messages, roster, selectors, services
from apps.rooms.dbthreads import database_sync_to_async
from apps.rooms.frames import CountedSends, release_handshake
from apps.rooms.handshake import (  # the close codes are read as consumers.CLOSE_* too
    CLOSE_FORBIDDEN,
    CLOSE_INTERNAL_ERROR,
    CLOSE_NOT_FOUND,
    CLOSE_SERVICE_RESTART,
    CLOSE_TOO_MANY_SOCKETS,  # noqa: F401  (read as consumers.CLOSE_TOO_MANY_SOCKETS)
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNAUTHORIZED,
    SUBPROTOCOL,
    Refused,
    log_socket_closed,
    origin_of,
    protocol_offered,
    refusal_for,
    socket_opened,
    take_connect_allowance,
    token_from,
    verified_token,
)
from apps.rooms.hub import direct_protocol, hub
from apps.rooms.models import Room
from apps.rooms.moderation import escape
from apps.rooms.serializers import user_ref

logger = logging.getLogger(__name__)

# Member events tell who is in the room: they need VIEW_MEMBER_LIST, as REST ``members`` does.
MEMBER_EVENTS = frozenset({"member_joined", "member_left", "member_updated", "member_ready"})


class RoomConsumer(CountedSends, AsyncWebsocketConsumer):
    # No channel layer per socket: the hub carries room and user events (see module docstring).
    channel_layer_alias = "__room_hub_only__"

    connection_id = ""
    protocol = SUBPROTOCOL
    user = None
    room = None
    actor = None
    claims = None
    room_id = ""
    user_id = ""  # the verified token's subject, before ``user`` is loaded
    direct = None  # the hub's fast path to this socket's transport, if any (hub.direct_protocol)
    _closing = False
    _pending: list[dict] | None = None  # events that arrived while connecting, held until after hello
    _channels: tuple[str, ...] = ()  # the hub channels this socket is subscribed to
    _slot: str | None = None  # its place in ratelimit.socket_slots, given back at disconnect
    _ready = True  # the ready state members were last told (presence starts everyone ready)
    _ready_wanted = True  # the latest the client sent
    _ready_later: asyncio.Task | None = None  # a rate-limited change waiting to go out
    _tasks: set[asyncio.Task] | None = None  # made by the first _spawn: most sockets never spawn
    _roster: roster.Roster | None = None  # who is online, as this node knows it (after the hello)
    _reading: greeting.RoomReading | None = None  # the room's part of the hello, while connecting
    _member: dict[str, Any] | None = None  # the hello's member, while connecting
    _verified: Any = None  # the verified access token, while connecting
    _churn: ratelimit.TokenBucket | None = None  # the connect allowance this socket took from
    _opened = 0.0  # time.monotonic() at accept: the lifetime in its closing log line

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
        return token_from(self.scope)

    async def _refuse(self, refusal: Refused) -> None:
        # A close code only reaches the client after the handshake: accept, say why, close.
        self._give_back_slot()
        await self.accept(self._subprotocol())
        await self.send_json_event(events.error("connection_refused", refusal.reason, **refusal.details))
        await self.close(code=refusal.code)

    def _give_back_slot(self) -> None:
        key, self._slot = self._slot, None
        if key is not None:
            ratelimit.socket_slots.give_back(key)

    def sees_members(self) -> bool:
        """VIEW_MEMBER_LIST: the right REST ``members`` checks (services.require), on this actor."""
        return self.actor is not None and self.actor.is_member and self.actor.can(Perm.VIEW_MEMBER_LIST)

    def _subprotocol(self) -> str | None:
        protocol = protocol_offered(self.scope)
        if protocol is not None:
            self.protocol = protocol
        return protocol

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
        self._frames = ratelimit.socket_bucket("ws_frame")
        self.room_id = self.scope["url_route"]["kwargs"]["room_id"]
        self.origin = origin_of(self.scope)
        # A few connects at a time (WS_CONNECTS_IN_FLIGHT): under a reconnect storm the others
        # wait their turn here, and the events of the rooms already open are not queued behind
        # hundreds of half-done connects on the event loop.
        async with hub.admission:
            try:
                await self._admit()
                await self._enter()
            except Refused as refusal:
                return await self._refuse(refusal)
            await self.accept(self._subprotocol())
            self._opened = socket_opened()
            self.direct = direct_protocol(self.base_send)  # extensions are known once accepted
            release_handshake(self.base_send, self.scope)
            await self._greet()

    async def _admit(self) -> None:
        """Who is connecting, and may they open one more socket here? Cheapest checks first: the
        token's signature on the event loop, then this node's counts; no Redis or database read
        for a socket that is refused for its token's form, its churn or its count."""
        if hub.shutting_down:
            raise Refused(CLOSE_SERVICE_RESTART, "This server is restarting; reconnect shortly.")
        self._verified = await verified_token(self._token())  # no token: Refused (4401) too
        # Only the claims the permission layer reads (selectors.room_actor): the token object,
        # with its raw text and every claim, was ~1.3 KiB held by every idle socket.
        self.claims = {"token_type": self._verified.get("token_type"), "rid": self._verified.get("rid")}
        self.user_id = self._verified["sub"]
        try:
            realtime.room_channel(self.room_id)
        except ValueError:  # not the shape of a room id: no such room
            raise Refused(CLOSE_NOT_FOUND, "No such room.") from None
        self._churn, self._slot = take_connect_allowance(self.user_id, self.room_id)

    async def _enter(self) -> None:
        """Subscribe, then read the room and, in one database call, the rest of the token check
        (revocation, user, ban, session) with the membership. Subscribing first means nothing
        published in between is missed (a kick, a ban, a logout, a permission change, a playback
        change); every event that arrives meanwhile is held and replayed after the hello."""
        self._pending = []
        self._channels = (realtime.room_channel(self.room_id), realtime.user_channel(self.user_id))
        for channel in self._channels:
            await hub.subscribe(channel, self)
        try:
            await self._identify()
        except Refused:
            await self._unsubscribe()
            raise

    async def _identify(self) -> None:
        """The room's reading, then the user, their actor and hello ``member`` (Refused if not)."""
        try:
            # The room's part of the hello, read once per node for the sockets joining now; the
            # actor from the same room row (so the hello's room settings and the member's
            # effective permissions agree).
            self._reading = await greeting.readings.get(self.room_id)
        except NotFound:
            self._reading = None
        except ServiceDegraded as exc:
            raise refusal_for(exc) from None
        self.room = greeting.shared_room(self._reading) if self._reading is not None else None
        try:
            self.user, self.actor, self._member = await database_sync_to_async(self._authenticated_actor)()
        except ApplicationError as exc:
            self._churn.give_back()  # a token refused costs its user no connect allowance
            raise refusal_for(exc) from None
        finally:
            self._verified = None  # the socket keeps only ``claims``
        if self.actor is None:
            raise Refused(CLOSE_NOT_FOUND, "No such room.")
        if not self.actor.is_member:
            raise Refused(CLOSE_FORBIDDEN, "You are not a member of this room.")

    def _authenticated_actor(self) -> tuple[Any, RoomActor | None, dict[str, Any] | None]:
        """On a database thread: the user behind the verified token (authenticate_verified_token),
        and its actor and hello ``member`` in the room read (None: there is no such room; the
        token is checked all the same, so a refused token never learns whether a room exists)."""
        user = authenticate_verified_token(self._verified)
        if self.room is None:
            return user, None, None
        actor = selectors.room_actor(user=user, room=self.room, auth=self.claims)
        return user, actor, (greeting.member_payload(actor, user) if actor.is_member else None)

    async def _greet(self) -> None:
        """Online in presence (which tells the room, once per user: a second tab is not a second
        arrival), then the hello, the chat history and what was held meanwhile."""
        self.connection_id = hub.presence.new_connection_id()
        me = self._presence_info(ready=True)
        await hub.presence.join(self.room.pk, self.connection_id, me)
        hello, history = greeting.hello(self._reading, self._member), self._reading.history
        self._reading = self._member = None  # the socket keeps neither
        self._roster = await hub.roster(self.room.pk)
        # Who is online, into the hello; from then on the roster tells this socket what changes.
        await self.send(text_data=self._roster.greet(self, hello, me))
        for chat in history:
            await self.send_json_event(chat)
        await self._replay_pending(
            last_chat=history[-1]["id"] if history else 0, version=hello["playback"]["version"]
        )

    async def _replay_pending(self, *, last_chat: int, version: int) -> None:
        """The events held while connecting, in order, acted on; sent unless the hello or the
        history already hold them."""
        while self._pending and not self._closing:
            event = self._pending.pop(0)
            if not self._act_on(event):  # a kick, a ban, a permission change: acted on here
                continue
            kind = event.get("type")
            if (kind == "chat" and event.get("id", 0) <= last_chat) or (
                kind == "playback" and event.get("version", 0) <= version
            ):
                continue
            await self.send_json_event(event)
        self._pending = None

    def _load_room_and_actor(self) -> tuple[Room, RoomActor]:
        """The room, read again, and this socket's actor in it: 2 queries (the membership row
        comes with this socket's user and the room attached)."""
        room = selectors.room_get(self.room_id)
        return room, selectors.room_actor(user=self.user, room=room, auth=self.claims)

    def _presence_info(self, *, ready: bool) -> dict:
        user = self.user
        return {
            "user_id": user.pk,
            "username": user.public_name,
            "guest": user.is_guest,
            "role": greeting.actor_role(self.actor),
            "ready": ready,
        }

    async def _unsubscribe(self) -> None:
        channels, self._channels = self._channels, ()
        for channel in channels:
            await hub.unsubscribe(channel, self)

    async def disconnect(self, code) -> None:
        self._opened = log_socket_closed(self.room_id, self.user_id, self._opened, code)
        self._give_back_slot()
        for task in list(self._tasks or ()):
            task.cancel()
        if self._roster is not None:
            self._roster.forget(self)
        await self._unsubscribe()
        if self.room is None or self.user is None:
            return
        if self.connection_id:  # presence tells the room if it was this user's last socket
            await hub.presence.leave(self.room.pk, self.connection_id, self.user.pk)

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
        except ClientDisconnected:
            return  # the client left while its answer was on its way (a moved socket, a closed tab)
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
        if not ratelimit.local_buckets.bucket("ws_chat", self.user.pk).take():
            return await self.send_error("rate_limited", "You are sending messages too fast.", message.ref)
        row = await database_sync_to_async(services.chat_send)(
            actor=self.actor, room=self.room, text=message.text, origin=self.origin, announce=False
        )
        # Published here, on the event loop, not by the service from the database thread
        # (services.chat_send says why).
        await hub.publish(realtime.room_channel(self.room.pk), services.chat_event(row))

    async def on_emoji(self, message: messages.Emoji) -> None:
        services.require(self.actor, Perm.SEND_EMOJI)
        if not ratelimit.local_buckets.bucket("ws_emoji", self.user.pk).take():
            return await self.send_error("rate_limited", "You are sending emoji too fast.", message.ref)
        await hub.publish(
            realtime.room_channel(self.room.pk),
            events.emoji(user=user_ref(self.user), emoji=escape(message.emoji)),
        )

    async def on_playback(self, message: messages.Playback) -> None:
        # Validated when parsed (messages.Playback is a PlaybackChange, PUT playback's rules).
        await database_sync_to_async(services.playback_update)(
            actor=self.actor, room=self.room, origin=self.origin, **message.changes()
        )  # the service announces the new state to the room after commit

    async def on_members(self, message: messages.Members) -> None:
        """The next page of who is online (VIEW_MEMBER_LIST, as REST ``members``)."""
        services.require(self.actor, Perm.VIEW_MEMBER_LIST)
        try:
            members, after = self._roster.page_json(message.after, message.limit)
        except roster.BadCursor:
            return await self.send_error("invalid", "after: not a cursor this server gave.", message.ref)
        page = events.members_page(members=[], next=after, count=len(self._roster.members), ref=message.ref)
        await self.send(text_data=realtime.encode_with(page, "members", members))

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
        bucket = ratelimit.local_buckets.bucket("ws_ready", f"{self.user.pk}:{self.room.pk}")
        if not bucket.take():
            self._ready_later = self._spawn(self._announce_ready_later(bucket.wait()))
            return
        ready = self._ready = self._ready_wanted
        await hub.presence.set_info(self.room.pk, self.connection_id, self._presence_info(ready=ready))
        await hub.publish(
            realtime.room_channel(self.room.pk),
            events.member_ready(user=user_ref(self.user), ready=ready),
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
            self._spawn(self._recheck_token(revoked=True))
        return False

    def on_slow(self) -> None:
        self._spawn(self._close_to_come_back())

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
        if self._tasks is None:
            self._tasks = set()
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
        """VIEW_MEMBER_LIST was just granted: who is online now, so the socket's list is right
        without a reconnect; from here on the roster's batches reach it (``Roster.catch_up``)."""
        if self._roster is not None:
            for frame in self._roster.catch_up(self, self.user.pk, self.protocol):
                await self.send_json_event(frame)

    async def _recheck_token(self, *, revoked: bool = False) -> None:
        """Is the session still good? If the database cannot tell, a socket whose user was just
        told of a revocation (``revoked``) is closed (1013: its next connect checks); else kept."""
        token = self._token()
        try:
            await database_sync_to_async(authenticate_access_token)(token)
        except ServiceDegraded:
            if revoked:
                await self._close_to_come_back()
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

    async def _close_to_come_back(self) -> None:
        """1013 (try again later): the client reconnects, and its connect is checked afresh."""
        if not self._closing:
            self._closing = True
            await self.close(code=CLOSE_TRY_AGAIN_LATER)
