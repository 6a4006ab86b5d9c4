"""Stream reads (docs/streaming.md)."""

from __future__ import annotations

from apps.core.errors import NotFound
from apps.core.ids import plausible_id
from apps.rooms.models import Room
from apps.streaming.models import Stream


def stream_get(*, room: Room, stream_id: object) -> Stream:
    """The room's stream ``stream_id`` (with its room): NotFound for no such stream in this room."""
    if not plausible_id(stream_id):
        raise NotFound("No such stream.")
    stream = Stream.objects.select_related("room").filter(room=room, pk=stream_id).first()
    if stream is None:
        raise NotFound("No such stream.")
    return stream
