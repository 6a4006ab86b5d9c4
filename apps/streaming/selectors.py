"""Stream reads (docs/streaming.md)."""

from __future__ import annotations

from apps.core.errors import NotFound
from apps.rooms.models import Room
from apps.streaming.models import Stream


def _plausible_id(value: object) -> bool:
    # Ids are short strings; PostgreSQL refuses a NUL byte in a query with an error (a 500).
    return isinstance(value, str) and 0 < len(value) <= 32 and "\x00" not in value


def stream_get(*, room: Room, stream_id: object) -> Stream:
    """The room's stream ``stream_id`` (with its room): NotFound for no such stream in this room."""
    if not _plausible_id(stream_id):
        raise NotFound("No such stream.")
    stream = Stream.objects.select_related("room").filter(room=room, pk=stream_id).first()
    if stream is None:
        raise NotFound("No such stream.")
    return stream
