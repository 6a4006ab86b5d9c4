"""The playlist: add, edit, delete, clear and reorder movies. Every change bumps the room's
playlist version and tells the room to refetch (the ``playlist`` event)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import F, Max
from django.utils import timezone

from apps.audit.actions import AuditAction
from apps.core import events, realtime
from apps.core.context import Origin
from apps.core.errors import InvalidInput
from apps.core.netguard import validate_media_url
from apps.permissions.flags import Perm
from apps.permissions.rules import RoomActor
from apps.rooms.models import Movie, MovieType, PlaybackState, Room
from apps.rooms.services._common import _audit, _invalid, _lock_room, _require_open, require
from apps.rooms.services.playback import _announce_playback_reset

MAX_MOVIES_PER_ROOM = 1000


def _bump_playlist(room: Room) -> None:
    Room.objects.filter(pk=room.pk).update(playlist_version=F("playlist_version") + 1)
    realtime.room_event(room.pk, events.playlist())


def _clean_movie(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "name" in data:
        out["name"] = data["name"]
    if "url" in data:
        out["url"] = validate_media_url(data["url"])
    if "type" in data:
        if data["type"] not in MovieType.values:
            raise _invalid("type", f"One of {', '.join(MovieType.values)}.")
        out["type"] = data["type"]
    if "subtitles" in data:
        # Viewers' browsers load subtitle files too: the same URL rules as the movie's.
        for subtitle in data["subtitles"]:
            validate_media_url(subtitle.get("url") if isinstance(subtitle, dict) else None, field="subtitles")
        out["subtitles"] = data["subtitles"]
    if "headers" in data:
        out["headers"] = data["headers"]
    return out


def movies_add(*, actor: RoomActor, room: Room, items: list[dict[str, Any]], origin: Origin) -> list[Movie]:
    """Append one or many movies to the playlist, in the order given."""
    _require_open(room)
    require(actor, Perm.ADD_MOVIE)
    cleaned = [_clean_movie(item) for item in items]
    with transaction.atomic():
        _lock_room(room)  # orders concurrent appends
        count = Movie.objects.filter(room=room).count()
        if count + len(cleaned) > MAX_MOVIES_PER_ROOM:
            raise InvalidInput(f"A playlist holds at most {MAX_MOVIES_PER_ROOM} movies.")
        last = Movie.objects.filter(room=room).aggregate(m=Max("position"))["m"]
        start = 0 if last is None else last + 1  # not `or -1`: a last position of 0 is falsy
        movies = [
            Movie(
                room=room,
                added_by=actor.user if actor.user and actor.user.pk else None,
                position=start + i,
                **c,
            )
            for i, c in enumerate(cleaned)
        ]
        for movie in movies:  # one save each, not bulk_create: django-auditlog hears post_save only
            movie.save(force_insert=True)
        _bump_playlist(room)
        _audit(
            AuditAction.PLAYLIST_ADD,
            actor_user=actor.user,
            origin=origin,
            room=room,
            resource_type="movie",
            resource_id=movies[0].pk if len(movies) == 1 else "",
            movies=[m.pk for m in movies],
        )
    return movies


def movie_edit(
    *, actor: RoomActor, room: Room, movie: Movie, changes: dict[str, Any], origin: Origin
) -> Movie:
    _require_open(room)
    require(actor, Perm.EDIT_MOVIE)
    cleaned = _clean_movie(changes)
    with transaction.atomic():
        _lock_room(room)  # NotFound if the room was deleted meanwhile
        for key, value in cleaned.items():
            setattr(movie, key, value)
        movie.save()
        _bump_playlist(room)
        _audit(
            AuditAction.PLAYLIST_EDIT,
            actor_user=actor.user,
            origin=origin,
            room=room,
            resource_type="movie",
            resource_id=movie.pk,
            fields=sorted(cleaned),
        )
    return movie


def movie_delete(*, actor: RoomActor, room: Room, movie: Movie, origin: Origin) -> None:
    """DELETE_MOVIE, or the movie's own adder (who may take back what they added)."""
    _require_open(room)
    own = actor.user is not None and movie.added_by_id == getattr(actor.user, "pk", None) and actor.is_member
    if not own:
        require(actor, Perm.DELETE_MOVIE)
    with transaction.atomic():
        _lock_room(room)  # NotFound if the room was deleted meanwhile
        reset = PlaybackState.objects.filter(room=room, movie=movie).update(
            movie=None, playing=False, position=0.0, updated_at=timezone.now(), version=F("version") + 1
        )
        if reset:
            _announce_playback_reset(room, actor.user)
        movie_id = movie.pk  # delete() sets movie.pk to None
        movie.delete()
        _bump_playlist(room)
        _audit(
            AuditAction.PLAYLIST_DELETE,
            actor_user=actor.user,
            origin=origin,
            room=room,
            resource_type="movie",
            resource_id=movie_id,
            name=movie.name,
        )


def playlist_clear(*, actor: RoomActor, room: Room, origin: Origin) -> int:
    _require_open(room)
    require(actor, Perm.DELETE_MOVIE)
    with transaction.atomic():
        _lock_room(room)  # NotFound if the room was deleted meanwhile
        reset = PlaybackState.objects.filter(room=room, movie__isnull=False).update(
            movie=None, playing=False, position=0.0, updated_at=timezone.now(), version=F("version") + 1
        )
        if reset:
            _announce_playback_reset(room, actor.user)
        count, _ = Movie.objects.filter(room=room).delete()
        _bump_playlist(room)
        _audit(
            AuditAction.PLAYLIST_CLEAR,
            actor_user=actor.user,
            origin=origin,
            room=room,
            resource_type="room",
            resource_id=room.pk,
            removed=count,
        )
    return count


def playlist_reorder(*, actor: RoomActor, room: Room, order: list[str], origin: Origin) -> None:
    """Set the whole order at once: ``order`` must name every movie of the room exactly once."""
    _require_open(room)
    require(actor, Perm.REORDER_PLAYLIST)
    with transaction.atomic():
        _lock_room(room)
        current = {m.pk: m for m in Movie.objects.filter(room=room)}
        if len(order) != len(set(order)) or set(order) != set(current):
            raise _invalid("order", "Give every movie of the playlist exactly once.")
        changed = []
        for index, movie_id in enumerate(order):
            movie = current[movie_id]
            if movie.position != index:
                movie.position = index
                changed.append(movie)
        Movie.objects.bulk_update(changed, ["position"])
        _bump_playlist(room)
        _audit(
            AuditAction.PLAYLIST_REORDER,
            actor_user=actor.user,
            origin=origin,
            room=room,
            resource_type="room",
            resource_id=room.pk,
            order=order,
        )
