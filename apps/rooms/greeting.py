"""What a socket is told when it joins a room: the ``hello`` and the chat history.

The room's part (the room with its member count, the playback state, the chat history) is read
once per node and shared by the sockets joining in the same moment (``RoomReadings``); each socket
adds its own membership (1 query). ``members_online`` comes from the node's roster afterwards
(docs/realtime.md, "Joining a room").
"""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError

from apps.accounts.models import User
from apps.core import copies, dbfaults, events, realtime
from apps.permissions.rules import RoomActor
from apps.rooms import selectors, services
from apps.rooms.dbthreads import database_sync_to_async
from apps.rooms.models import PlaybackState, Room
from apps.rooms.serializers import RoomSerializer, member_view, user_ref

CHAT_HISTORY = 50  # lines of chat a joining socket gets


def actor_role(actor: RoomActor) -> str:
    """The role members see for this actor: a site admin who is not a member shows as such."""
    return actor.member.role if actor.member is not None else "site_admin"


def member_payload(actor: RoomActor, user: User) -> dict[str, Any]:
    """The hello's ``member``: the membership row, or what stands for it for a site admin."""
    if actor.member is not None:
        return member_view(actor.member)
    return {
        "user": user_ref(user),
        "role": "site_admin",
        "status": "active",
        "effective_permissions": actor.permissions,
    }


SHARED_SECONDS = 1.0  # how long one reading of a room serves the sockets that join
# Events that change nothing a hello holds: a reading outlives them.
NOT_IN_THE_HELLO = frozenset({"_presence", "member_ready", "emoji", "members_changed", "publisher_changed"})


@dataclass
class RoomReading:
    """The room's part of a hello, as read at ``read_at`` (monotonic); ``stale``: from the copy in
    Redis, the database being down (``read_room``)."""

    room: Room
    room_payload: dict[str, Any]
    playback: PlaybackState
    history: list[events.Chat]
    read_at: float
    stale: bool = False


def read_room(room_id: str) -> RoomReading:
    """The room with its member count, its playback row and its last chat lines: 3 queries. Each
    reading leaves a copy in Redis; while the database cannot be reached, the copy answers
    (apps.core.copies; NotFound is the database's answer only)."""
    try:
        room = selectors.room_get(room_id, with_counts=True)
        rows = selectors.chat_history(room=room, limit=CHAT_HISTORY)
        reading = RoomReading(
            room=room,
            room_payload=dict(RoomSerializer(room).data),
            playback=selectors.playback_get(room=room),
            history=[services.chat_event(row, history=True) for row in rows],
            read_at=time.monotonic(),
        )
    except DatabaseError as exc:
        copied = copied_room(exc, room_id)
        return RoomReading(
            room=copied.room,
            room_payload=copied.payload,
            playback=copied.playback,
            history=copied.history,
            read_at=time.monotonic(),
            stale=True,
        )
    copies.keep(
        f"room:{room_id}",
        {
            "room": copies.row(room, omit=ROOM_SECRETS),
            "payload": reading.room_payload,
            "playback": copies.row(reading.playback),
            "history": reading.history,
        },
    )
    return reading


ROOM_SECRETS = frozenset({"password"})


@dataclass
class CopiedRoom:
    """A room as its copies in Redis have it (``copied_room``)."""

    room: Room
    payload: dict[str, Any]
    playback: PlaybackState
    history: list[events.Chat]


def copied_room(exc: DatabaseError, room_id: str) -> CopiedRoom:
    """While the database cannot be reached (``exc`` says so): the room as its last reading left
    it in Redis, with the playback of the latest change when that is newer (services.playback
    keeps one after each change). Else, or without a copy, ``exc`` stands."""
    if not dbfaults.lost_connection(exc) or (copy := copies.recall(f"room:{room_id}")) is None:
        raise exc
    playback = copy["playback"]
    latest = copies.recall(f"playback:{playback['room_id']}")
    if latest is not None and latest.get("version", -1) > playback.get("version", -1):
        playback = latest
    return CopiedRoom(
        room=copies.instance(Room, copy["room"]),
        payload=copy["payload"],
        playback=copies.instance(PlaybackState, playback),
        history=copy["history"],
    )


class RoomReadings:
    """Per node: one reading of a room shared by the sockets that join while it is fresh.

    Safe because every joiner subscribed to the room's channel before asking, and a reading
    serves only until the hub hears an event about the room that a hello holds (``invalidate``),
    or for SHARED_SECONDS at most: a change committed after the reading began arrives after it,
    and either drops the reading before a later joiner takes it or is held by a joiner that
    subscribed earlier and replayed after its hello (RoomConsumer._replay_pending)."""

    def __init__(self) -> None:
        self._by_room: dict[str, asyncio.Future[RoomReading]] = {}

    async def get(self, room_id: str) -> RoomReading:
        """A fresh reading of the room (NotFound if there is none). The Room in it is shared:
        is shared by the sockets (``shared_room``)."""
        key = realtime.room_channel(room_id)
        future = self._by_room.get(key)
        if future is not None and future.done():
            if future.exception() is None and time.monotonic() - future.result().read_at <= SHARED_SECONDS:
                return future.result()
            future = None
        if future is None:
            future = asyncio.ensure_future(database_sync_to_async(read_room)(room_id))
            self._by_room[key] = future
            future.add_done_callback(functools.partial(self._forget_failure, key))
        reading: RoomReading = await asyncio.shield(future)
        return reading

    def _forget_failure(self, key: str, future: asyncio.Future[RoomReading]) -> None:
        if not future.cancelled() and future.exception() is not None and self._by_room.get(key) is future:
            del self._by_room[key]

    def invalidate(self, channel: str, kind: str | None = None) -> None:
        """The hub heard an event of ``kind`` on the room's ``channel`` (None: it stops listening
        to the room, or may have missed events)."""
        if kind not in NOT_IN_THE_HELLO:
            self._by_room.pop(channel, None)

    def clear(self) -> None:
        self._by_room.clear()


readings = RoomReadings()


def shared_room(reading: RoomReading) -> Room:
    """The reading's room, for every socket that joins with it: nothing on the WebSocket path
    writes to the room it is given (the services that change a room, REST's, read their own), and
    a copy per idle socket was ~1 KiB. A socket reads the room again when the room changes
    (``RoomConsumer._reload_actor``)."""
    return reading.room


def hello(reading: RoomReading, member: dict[str, Any]) -> events.Hello:
    """The hello from a reading and the socket's member payload (``members_online`` empty, for
    the caller to fill); the playback position is where it is now."""
    greeting = events.hello(
        member=member,
        room=reading.room_payload,
        playback=events.playback_state(selectors.playback_view(reading.playback)),
        members_online=[],
    )
    if reading.stale:
        greeting["stale"] = True
    return greeting


def current_playback_event(room_id: str) -> events.Playback | None:
    """The room's playback state as a ``playback`` event (``by`` none), or None (no room): what
    the hub tells a room's sockets when Redis comes back, since a change made meanwhile on another
    node never reached them (RoomHub._tell_current_playback)."""
    state = PlaybackState.objects.filter(room_id=room_id).first()
    if state is None:
        return None
    return events.playback(state=events.playback_state(selectors.playback_view(state)), by=None)
