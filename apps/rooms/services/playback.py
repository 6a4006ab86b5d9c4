"""Playback: the one change REST (``PUT playback``) and the WebSocket (``playback`` frames) make,
and its announcement to the room."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.db import transaction
from django.utils import timezone
from rest_framework.fields import DateTimeField

from apps.accounts.models import User
from apps.audit.actions import AuditAction
from apps.core import copies, events, metrics, realtime, rows
from apps.core.context import Origin
from apps.core.errors import Conflict, InvalidInput
from apps.permissions.flags import Perm
from apps.permissions.rules import RoomActor
from apps.rooms.messages import UNSET, Unset
from apps.rooms.models import Movie, PlaybackState, Room
from apps.rooms.selectors import playback_view
from apps.rooms.serializers import user_ref
from apps.rooms.services._common import _audit, _invalid, _lock_room, _require_open, require

# The columns a playback change writes: all but the room.
PLAYBACK_COLUMNS = ("movie", "playing", "position", "rate", "updated_at", "version")


def _announce_playback(room: Room, state: PlaybackState, actor_user: User | AnonymousUser | None) -> None:
    """After commit, every member on every node gets the new state (position at server_time)."""
    by = user_ref(actor_user) if isinstance(actor_user, User) else None
    realtime.room_event(room.pk, events.playback(state=events.playback_state(playback_view(state)), by=by))
    # What a hello says while the database is down (apps.rooms.greeting.read_room).
    kept = copies.row(state)
    transaction.on_commit(lambda: copies.keep(f"playback:{room.pk}", kept))


def _announce_playback_reset(room: Room, actor_user: User | AnonymousUser | None) -> None:
    state = PlaybackState.objects.filter(room=room).first()
    if state is not None:
        _announce_playback(room, state, actor_user)


def _lock_state(room: Room) -> PlaybackState:
    """The room's playback row, locked."""
    # rows.lock: the same statement as select_for_update().get(), without building it on every
    # change (apps/core/rows.py says why).
    state = rows.lock(PlaybackState, room.pk)
    if state is None:  # rooms get theirs at creation; this is for rows made by other means
        _lock_room(room)  # or the room was deleted meanwhile: NotFound, not a failed insert
        state, _ = PlaybackState.objects.select_for_update().get_or_create(room=room)
    return state


def _change_movie(actor: RoomActor, room: Room, state: PlaybackState, movie_id: str | None) -> None:
    """Another movie (or none): CHANGE_CURRENT_MOVIE; it starts paused at 0."""
    require(actor, Perm.CHANGE_CURRENT_MOVIE)
    if movie_id is None:
        state.movie = None
    else:
        # NUL: PostgreSQL refuses it in a query (an id never holds one).
        movie = None if "\x00" in movie_id else Movie.objects.filter(room=room, pk=movie_id).first()
        if movie is None:
            raise _invalid("movie_id", "No such movie in this room.")
        state.movie = movie
    state.position = 0.0
    state.playing = False


def playback_update(
    *,
    actor: RoomActor,
    room: Room,
    movie_id: str | Unset | None = UNSET,
    playing: bool | Unset = UNSET,
    position: float | Unset = UNSET,
    rate: float | Unset = UNSET,
    expected_version: int | Unset = UNSET,
    origin: Origin,
) -> PlaybackState:
    """Change the room's playback; UNSET leaves a field as it is, ``movie_id=None`` is no movie.
    The arguments are a validated messages.PlaybackChange (``.changes()``: finite numbers, the
    position clamped, the rate in range), REST and WebSocket alike. PLAY_CONTROL always;
    CHANGE_CURRENT_MOVIE too when the movie changes. With ``expected_version``, a stale version
    is refused (409 carrying the current state), so of two writers that read the same state
    exactly one wins."""
    _require_open(room)
    require(actor, Perm.PLAY_CONTROL)
    if movie_id is UNSET and playing is UNSET and position is UNSET and rate is UNSET:
        raise InvalidInput("Nothing to change: give playing, position, rate or movie_id.")
    with transaction.atomic():
        state = _lock_state(room)
        if expected_version is not UNSET and expected_version != state.version:
            raise Conflict(
                "The playback changed since you read it.",
                details={"current": _json_state(playback_view(state))},
            )
        now = timezone.now()
        # Materialise where the room is now, then apply the change from there.
        state.position = state.position_at(now)
        kind = _change_kind(movie_id if movie_id != state.movie_id else UNSET, playing, position)
        if movie_id is not UNSET and movie_id != state.movie_id:
            _change_movie(actor, room, state, movie_id)
        if playing is not UNSET:
            state.playing = playing
        if position is not UNSET:
            state.position = position
        if rate is not UNSET:
            state.rate = rate
        state.updated_at = now
        state.version += 1
        rows.update(state, PLAYBACK_COLUMNS)  # save()'s statement, built once (apps/core/rows.py)
        _announce_playback(room, state, actor.user)
        _audit(
            AuditAction.PLAYBACK_UPDATE,
            actor_user=actor.user,
            origin=origin,
            room=room,
            resource_type="playback",
            resource_id=room.pk,
            movie_id=state.movie_id,
            playing=state.playing,
            position=round(state.position, 3),
            rate=state.rate,
            version=state.version,
        )
    metrics.PLAYBACK_CHANGES.labels(kind).inc()
    return state


def _change_kind(movie_id: Any, playing: bool | Unset, position: float | Unset) -> str:
    """One word for /metrics: movie, play, pause, seek or rate (the first that applies;
    ``movie_id`` UNSET when the movie stays)."""
    if movie_id is not UNSET:
        return "movie"
    if playing is not UNSET:
        return "play" if playing else "pause"
    return "rate" if position is UNSET else "seek"


def _json_state(view: dict[str, Any]) -> dict[str, Any]:
    as_api = DateTimeField().to_representation  # the same format as every other API time
    return {k: (as_api(v) if hasattr(v, "isoformat") else v) for k, v in view.items()}
