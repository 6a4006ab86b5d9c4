"""Room reads: lookups, lists (constant query counts), the acting member and access to a room,
playback state, chat history."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from apps.accounts.models import User
from apps.audit.models import AuditEvent
from apps.core import copies, dbfaults, rows
from apps.core.errors import NotFound, NotInRoom
from apps.core.ids import plausible_id
from apps.permissions.rules import RoomActor, build_actor
from apps.rooms.models import ChatMessage, MemberStatus, Movie, PlaybackState, Room, RoomMember

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser
    from rest_framework_simplejwt.tokens import Token


def _with_counts(qs: QuerySet[Room]) -> QuerySet[Room]:
    return qs.select_related("creator").annotate(
        member_count=Count("members", filter=Q(members__status=MemberStatus.ACTIVE), distinct=True)
    )


def room_get(room_id: object, *, with_counts: bool = False) -> Room:
    if not plausible_id(room_id):
        raise NotFound("No such room.")
    qs = _with_counts(Room.objects.all()) if with_counts else Room.objects.select_related("creator")
    room = qs.filter(pk=room_id).first()
    if room is None:
        raise NotFound("No such room.")
    return room


def room_list_public(*, search: str = "") -> QuerySet[Room]:
    """Rooms anyone may find: not hidden, not closed; ``search`` matches name or description."""
    qs = Room.objects.filter(hidden=False, closed_at__isnull=True)
    search = search.replace("\x00", "").strip()[:100]  # NUL: PostgreSQL refuses it in a query
    if search:
        qs = qs.filter(Q(name__icontains=search) | Q(description__icontains=search))
    return _with_counts(qs).order_by("-created_at", "id")


def membership(*, user: User | AnonymousUser | None, room: Room) -> RoomMember | None:
    """The user's row in ``room`` (any status), with ``user`` and ``room`` attached: they are the
    objects already in hand, so following ``member.user`` / ``member.room`` (MemberSerializer,
    effective permissions) queries nothing more."""
    if not isinstance(user, User):  # None or AnonymousUser: no membership anywhere
        return None
    # One row at most (one_membership_per_room); read without the ORM's query building, which
    # cost more than the statement on every WebSocket connect (apps/core/rows.py). Each row read
    # leaves a copy in Redis that answers while the database cannot (apps.core.copies).
    name = f"member:{room.pk}:{user.pk}"
    try:
        member = rows.find(RoomMember, room_id=room.pk, user_id=user.pk)
    except DatabaseError as exc:
        if not dbfaults.lost_connection(exc) or (copy := copies.recall(name)) is None:
            raise
        member = copies.instance(RoomMember, copy)
    else:
        if member is not None:
            copies.keep(name, copies.row(member, omit=MEMBER_SECRETS))
    if member is not None:
        member.user, member.room = user, room
    return member


MEMBER_SECRETS = frozenset({"ban_address"})


def room_actor(
    *, user: User | AnonymousUser | None, room: Room, auth: Token | Mapping[str, Any] | None = None
) -> RoomActor:
    """The acting member for a request. A guest token opens only the room named in it (``auth``:
    the token, or at least its ``token_type`` and ``rid`` claims)."""
    if auth is not None and auth.get("token_type") == "guest" and auth.get("rid") != room.pk:
        return build_actor(user=user, room=room, member=None)
    return build_actor(user=user, room=room, member=membership(user=user, room=room))


def require_member(actor: RoomActor) -> None:
    """NotInRoom unless ``actor`` is an active member of its room (or a site admin)."""
    if not actor.is_member:
        raise NotInRoom()


def room_access(
    *,
    user: User | AnonymousUser | None,
    room_id: object,
    auth: Token | None = None,
    member: bool = True,
    with_counts: bool = False,
) -> tuple[Room, RoomActor]:
    """The room a request names and the caller's actor there, or the API's answer: NotFound for
    no such room; with ``member``, NotInRoom unless the caller is an active member (outsiders,
    pending and banned members, guests whose token is for another room are not; site admins
    are, in every room). Hidden rooms are unlisted, not secret: found by id like any other, the
    way an invite link reaches one. ``member=False`` where the service decides who may (DELETE
    answers permission_denied to anyone but the creator or a site admin) or where the body is
    checked before membership (400 before 403)."""
    room = room_get(room_id, with_counts=with_counts)
    actor = room_actor(user=user, room=room, auth=auth)
    if member:
        require_member(actor)
    return room, actor


def member_list(*, room: Room, status: str | None = MemberStatus.ACTIVE) -> QuerySet[RoomMember]:
    qs = RoomMember.objects.filter(room=room).select_related("user", "room")
    if status is not None:
        qs = qs.filter(status=status)
    return qs.order_by("joined_at", "id")


def member_get(*, room: Room, user_id: object) -> RoomMember:
    if not plausible_id(user_id):
        raise NotFound("No such member.")
    member = RoomMember.objects.select_related("user", "room").filter(room=room, user_id=user_id).first()
    if member is None:
        raise NotFound("No such member.")
    return member


def movie_list(*, room: Room) -> QuerySet[Movie]:
    return Movie.objects.filter(room=room).select_related("added_by").order_by("position", "created_at", "id")


def movie_get(*, room: Room, movie_id: object) -> Movie:
    if not plausible_id(movie_id):
        raise NotFound("No such movie.")
    movie = Movie.objects.select_related("added_by").filter(room=room, pk=movie_id).first()
    if movie is None:
        raise NotFound("No such movie.")
    return movie


def playback_get(*, room: Room) -> PlaybackState:
    state = PlaybackState.objects.filter(room=room).first()
    return state or PlaybackState(room=room, updated_at=room.created_at)


def playback_view(state: PlaybackState, *, now: datetime | None = None) -> dict[str, Any]:
    """The state as clients see it: ``position`` extrapolated to ``server_time``."""
    now = now or timezone.now()
    return {
        "movie_id": state.movie_id,
        "playing": state.playing,
        "position": round(state.position_at(now), 3),
        "rate": state.rate,
        "updated_at": state.updated_at,
        "version": state.version,
        "server_time": now,
        "server_time_ms": int(now.timestamp() * 1000),
    }


def chat_history(*, room: Room, limit: int) -> list[ChatMessage]:
    """The room's last ``limit`` chat messages, oldest first, with their authors: one query."""
    latest = ChatMessage.objects.filter(room=room).select_related("user").order_by("-id")[:limit]
    return list(latest)[::-1]


def room_audit_log(*, room: Room) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(room_id=room.pk).select_related("user").order_by("-seq")
