"""Every real-time event: its type, its shape and the one function that builds it.

Two kinds, told apart by the name, as apps.core.realtime says:

- **public** (``playback``, ``chat``, ...): frames a client receives on the room WebSocket,
  handled by ``static/js`` (the ``case "type":`` of the page's message switch);
- **internal** (``_member_removed``, ``_room_closed``, ``_sessions_revoked``, ``_presence``):
  messages between the processes of the server, published on a room's or a user's channel; the
  room consumer (apps.rooms.consumers ``_act_on``) or the node's roster (apps.rooms.roster, for
  ``_presence``) acts on them and no client ever sees one.

Not here: ``node_leaving`` on ``cluster:events`` (apps.streaming.cluster), which no server
process reads; it is there for operators and the failover benchmark to watch.

Services, the consumer and the hub build events only here, so a frame's keys are written once.
apps/core/tests/test_events.py reads the code and the page's scripts to prove that every type is
both produced (some code calls its builder) and handled (by ``static/js`` or by the consumer),
so an event with no handler, or a handler with no event, fails the build. An event may be
**reserved** (``RESERVED``): the page handles it but nothing sends it yet (``publisher_changed``
was, until live streams sent it: apps.streaming.failover).

Why here and not in apps.rooms: accounts publishes ``_sessions_revoked`` on a user's channel, and
accounts sits below rooms (rooms imports accounts, never the reverse). So the builders take plain
values, never models: the rooms app turns its models into payloads (``apps.rooms.serializers``,
``apps.rooms.selectors.playback_view``) and hands them in.

The shapes are ``TypedDict``s: checked statically, plain dicts at run time. An event is built once
per change and encoded once (``realtime.encode``, which adds ``server_time`` where an event does
not carry its own), then the hub writes the same bytes to every socket; a validating model would
cost on every event and buy nothing, since nothing here comes from a client.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict, TypeVar

# --- the vocabulary ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    type: str
    builder: str  # the name of its builder in this module
    reserved: str = ""  # why nothing produces it yet (empty: it is produced)

    @property
    def internal(self) -> bool:
        return self.type.startswith("_")


VOCABULARY: dict[str, Kind] = {}
_F = TypeVar("_F", bound=Callable[..., Any])


def _builds(kind: str, *, reserved: str = "") -> Callable[[_F], _F]:
    """Register the decorated function as the builder of ``kind`` (costs nothing per call)."""

    def register(builder: _F) -> _F:
        if kind in VOCABULARY:
            raise ValueError(f"two builders for {kind!r}")
        VOCABULARY[kind] = Kind(type=kind, builder=builder.__name__, reserved=reserved)
        return builder

    return register


# --- payloads ----------------------------------------------------------------------------------


class UserRef(TypedDict):
    """A user as every room payload shows them (apps.rooms.serializers.user_ref)."""

    id: str | None
    username: str
    guest: bool


class PlaybackState(TypedDict):
    """The room's playback as clients see it: ``position`` is where it is at ``server_time``."""

    movie_id: str | None
    playing: bool
    position: float
    rate: float
    updated_at: int  # ms since the epoch, as server_time
    version: int
    server_time: int


def playback_state(view: Mapping[str, Any]) -> PlaybackState:
    """The wire form of apps.rooms.selectors.playback_view (times in ms since the epoch)."""
    return {
        "movie_id": view["movie_id"],
        "playing": view["playing"],
        "position": view["position"],
        "rate": view["rate"],
        "updated_at": int(view["updated_at"].timestamp() * 1000),
        "version": view["version"],
        "server_time": view["server_time_ms"],
    }


# --- server -> client ----------------------------------------------------------------------------
# Every one carries server_time (ms since the epoch) on the wire: realtime.encode adds it at
# publish time unless the event has its own (playback state, chat history).


class Hello(TypedDict):
    type: Literal["hello"]
    member: Mapping[str, Any]  # MemberSerializer, or a site admin's stand-in
    room: Mapping[str, Any]  # RoomSerializer
    playback: PlaybackState
    members_online: list[dict[str, Any]]  # presence entries (apps.rooms.presence), by username
    # synctv.v2 only: the list above is the first page; how many are online, and where the next
    # page starts (a ``members`` request), or None when the list is complete.
    members_count: NotRequired[int]
    members_next: NotRequired[str | None]
    # True only while the database is down: the room, playback and member came from the copies
    # kept in Redis (docs/security.md, "When PostgreSQL is down") and may be behind.
    stale: NotRequired[bool]


@_builds("hello")
def hello(
    *,
    member: Mapping[str, Any],
    room: Mapping[str, Any],
    playback: PlaybackState,
    members_online: list[dict[str, Any]],
) -> Hello:
    return {
        "type": "hello",
        "member": member,
        "room": room,
        "playback": playback,
        "members_online": members_online,
    }


class MembersChanged(TypedDict):
    """synctv.v2: who came and went since the last one (at most a few a second per room), as
    presence entries (the shape of ``hello.members_online``) and user ids; ``count`` is how many
    are online after it. A user is in at most one of the two lists."""

    type: Literal["members_changed"]
    joined: list[dict[str, Any]]
    left: list[str]
    count: int | None  # None for a member without VIEW_MEMBER_LIST (told only about themselves)


@_builds("members_changed")
def members_changed(*, joined: list[dict[str, Any]], left: list[str], count: int | None) -> MembersChanged:
    return {"type": "members_changed", "joined": joined, "left": left, "count": count}


class MembersPage(TypedDict):
    """The answer to a ``members`` request: the next page of who is online, by username."""

    type: Literal["members_page"]
    members: list[dict[str, Any]]
    next: str | None  # the ``after`` of the following page, None on the last one
    count: int
    ref: NotRequired[str | int | None]


@_builds("members_page")
def members_page(
    *, members: list[dict[str, Any]], next: str | None, count: int, ref: str | int | None = None
) -> MembersPage:
    page: MembersPage = {"type": "members_page", "members": members, "next": next, "count": count}
    if ref is not None:
        page["ref"] = ref
    return page


class Pong(TypedDict):
    type: Literal["pong"]
    t: float | None  # the client's own clock, echoed


@_builds("pong")
def pong(*, t: float | None) -> Pong:
    return {"type": "pong", "t": t}


class Chat(TypedDict):
    type: Literal["chat"]
    id: int
    user: UserRef
    text: str  # masked and escaped once, when stored (apps.rooms.moderation)
    history: NotRequired[Literal[True]]  # sent on connect, from the log
    server_time: NotRequired[int]  # history: when it was written


@_builds("chat")
def chat(*, id: int, user: UserRef, text: str, written_at_ms: int | None = None) -> Chat:
    """A new message; with ``written_at_ms``, one of the history a socket gets on connect."""
    if written_at_ms is None:
        return {"type": "chat", "id": id, "user": user, "text": text}
    return {
        "type": "chat",
        "id": id,
        "user": user,
        "text": text,
        "history": True,
        "server_time": written_at_ms,
    }


class Emoji(TypedDict):
    type: Literal["emoji"]
    user: UserRef
    emoji: str


@_builds("emoji")
def emoji(*, user: UserRef, emoji: str) -> Emoji:
    return {"type": "emoji", "user": user, "emoji": emoji}


class Playback(PlaybackState):
    type: Literal["playback"]
    by: UserRef | None  # who changed it (None: a reset, or an answer to ``sync``)
    sync: NotRequired[Literal[True]]  # the answer to this socket's ``sync``


@_builds("playback")
def playback(*, state: PlaybackState, by: UserRef | None, sync: bool = False) -> Playback:
    event: Playback = {"type": "playback", **state, "by": by}
    if sync:
        event["sync"] = True
    return event


class Playlist(TypedDict):
    type: Literal["playlist"]  # changed: refetch it


@_builds("playlist")
def playlist() -> Playlist:
    return {"type": "playlist"}


class MemberJoined(TypedDict):
    type: Literal["member_joined"]
    user: UserRef
    role: str | None
    ready: NotRequired[bool]  # absent on a fresh join: everyone starts ready


@_builds("member_joined")
def member_joined(*, user: UserRef, role: str | None, ready: bool | None = None) -> MemberJoined:
    if ready is None:
        return {"type": "member_joined", "user": user, "role": role}
    return {"type": "member_joined", "user": user, "role": role, "ready": ready}


class MemberLeft(TypedDict):
    type: Literal["member_left"]
    user: UserRef


@_builds("member_left")
def member_left(*, user: UserRef) -> MemberLeft:
    return {"type": "member_left", "user": user}


class MemberUpdated(TypedDict):
    type: Literal["member_updated"]
    member: dict[str, Any]  # MemberSerializer


@_builds("member_updated")
def member_updated(*, member: Mapping[str, Any]) -> MemberUpdated:
    return {"type": "member_updated", "member": dict(member)}


class MemberReady(TypedDict):
    type: Literal["member_ready"]
    user: UserRef
    ready: bool


@_builds("member_ready")
def member_ready(*, user: UserRef, ready: bool) -> MemberReady:
    return {"type": "member_ready", "user": user, "ready": ready}


class RoomUpdated(TypedDict):
    type: Literal["room_updated"]
    room: dict[str, Any]  # RoomSerializer


@_builds("room_updated")
def room_updated(*, room: Mapping[str, Any]) -> RoomUpdated:
    return {"type": "room_updated", "room": dict(room)}


class Kicked(TypedDict):
    type: Literal["kicked"]  # then the socket is closed
    reason: str


@_builds("kicked")
def kicked(*, reason: str) -> Kicked:
    return {"type": "kicked", "reason": reason}


class Error(TypedDict):
    type: Literal["error"]
    code: str  # apps.core.errors codes, plus invalid, rate_limited, connection_refused
    message: str
    ref: str | int | None  # the ref of the client message it answers
    details: NotRequired[dict[str, Any]]


@_builds("error")
def error(code: str, message: str, ref: str | int | None = None, **details: Any) -> Error:
    body: Error = {"type": "error", "code": code, "message": message, "ref": ref}
    if details:
        body["details"] = details
    return body


class ServerShutdown(TypedDict):
    type: Literal["server_shutdown"]  # then close 1012
    message: str
    reconnect_after_ms: int
    # Reconnect at a random moment within this many ms after reconnect_after_ms: the node sizes
    # it from the sockets it holds so that they do not all arrive at once (apps.rooms.lifecycle).
    reconnect_window_ms: int
    # How long this socket stays open and keeps delivering after the notice (0: it closes now).
    # A client opens its new socket at its moment of the window without waiting for the close,
    # and closes this one once the new one's hello has come: no gap (docs/realtime.md, "Shutdown").
    drain_ms: int
    # "restart": the node is stopping. "rebalance": the node holds more than its share and asks
    # this socket to move the same way; it closes nothing (docs/realtime.md, "Balance").
    reason: Literal["restart", "rebalance"]


@_builds("server_shutdown")
def server_shutdown(
    *,
    message: str,
    reconnect_after_ms: int,
    reconnect_window_ms: int,
    drain_ms: int = 0,
    reason: Literal["restart", "rebalance"] = "restart",
) -> ServerShutdown:
    return {
        "type": "server_shutdown",
        "message": message,
        "reconnect_after_ms": reconnect_after_ms,
        "reconnect_window_ms": reconnect_window_ms,
        "drain_ms": drain_ms,
        "reason": reason,
    }


class PublisherChanged(TypedDict):
    type: Literal["publisher_changed"]
    stream_id: str
    node: str


@_builds("publisher_changed")
def publisher_changed(*, stream_id: str, node: str) -> PublisherChanged:
    """A stream's publisher changed: it went live on ``node`` (on_publish), stopped (on_publish_done:
    ``node`` empty), or failed over (apps.streaming.failover: the node elected to restart a pulled
    stream, or empty when the stream waits for its streamer). The page reads the stream again
    and plays or shows "waiting"; on a failover the nodes hear the same event on the cluster
    channel."""
    return {"type": "publisher_changed", "stream_id": stream_id, "node": node}


# --- internal (between processes; the consumer acts on them) ---------------------------------------


class MemberRemoved(TypedDict):
    type: Literal["_member_removed"]
    user_id: str
    reason: str  # kicked, banned, left: the socket of that user is told this, then closed


@_builds("_member_removed")
def member_removed(*, user_id: str, reason: str) -> MemberRemoved:
    return {"type": "_member_removed", "user_id": user_id, "reason": reason}


class RoomClosed(TypedDict):
    type: Literal["_room_closed"]
    reason: str  # room_deleted, room_closed: every socket of the room is told, then closed


@_builds("_room_closed")
def room_closed(*, reason: str) -> RoomClosed:
    return {"type": "_room_closed", "reason": reason}


class SessionsRevoked(TypedDict):
    """On a user's channel: their sessions ended (logout everywhere, a password change, a site
    ban). Each of their sockets re-checks its token and closes if it is no longer good, with
    ``banned`` when the account is banned: that is how a site ban reaches open sockets."""

    type: Literal["_sessions_revoked"]


@_builds("_sessions_revoked")
def sessions_revoked() -> SessionsRevoked:
    return {"type": "_sessions_revoked"}


class PresenceChanged(TypedDict):
    """On a room's channel: users whose first connection arrived (``joined``, their presence
    entries) or whose last one left (``left``, user ids), numbered ``v`` in the order Redis
    applied them (None when announced by this process only: no Redis). Published by presence's
    Lua scripts in this exact shape (apps.rooms.presence); each node's roster applies it and
    tells its sockets in batches (apps.rooms.roster)."""

    type: Literal["_presence"]
    v: int | None
    joined: list[dict[str, Any]]
    left: list[str]


@_builds("_presence")
def presence_changed(
    *, version: int | None, joined: list[dict[str, Any]], left: list[str]
) -> PresenceChanged:
    return {"type": "_presence", "v": version, "joined": joined, "left": left}


PUBLIC = frozenset(k for k, v in VOCABULARY.items() if not v.internal and not v.reserved)
INTERNAL = frozenset(k for k, v in VOCABULARY.items() if v.internal)
RESERVED = {k: v.reserved for k, v in VOCABULARY.items() if v.reserved}
