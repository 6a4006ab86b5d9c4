"""OpenAPI shapes of the rooms answers that are not one serializer (apps/rooms/api.py builds
them by hand): pages, the playlist, the guest's token, one movie or several, a movie or null;
and the playback change, a pydantic model shared with the socket."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import inline_serializer
from rest_framework import serializers

from apps.core.openapi import nullable, one_or_many, paginated
from apps.rooms.messages import PlaybackChange
from apps.rooms.serializers import (
    MAX_BATCH,
    AuditEventSerializer,
    MemberSerializer,
    MovieInSerializer,
    MovieSerializer,
    RoomSerializer,
)

ROOM_PAGE = paginated(RoomSerializer, name="PaginatedRoomList")
MEMBER_PAGE = paginated(MemberSerializer, name="PaginatedMemberList")
AUDIT_PAGE = paginated(AuditEventSerializer, name="PaginatedAuditEventList")


def _playlist_fields(**extra) -> dict:
    # Page-shaped so clients read it like the other lists, but always the whole playlist.
    return {
        "count": serializers.IntegerField(),
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
        **extra,
        "results": MovieSerializer(many=True),
    }


PLAYLIST = inline_serializer(
    name="Playlist", fields=_playlist_fields(playlist_version=serializers.IntegerField())
)
PLAYLIST_ORDER = inline_serializer(name="PlaylistOrder", fields=_playlist_fields())
GUEST_JOIN = inline_serializer(
    name="GuestJoin", fields={"access": serializers.CharField(), "member": MemberSerializer()}
)
MOVIES_IN = one_or_many(MovieInSerializer, name="MovieInOrList", max_items=MAX_BATCH)
MOVIES_OUT = one_or_many(MovieSerializer, name="MovieOrList", max_items=MAX_BATCH)
CURRENT_MOVIE = nullable(MovieSerializer, name="MovieOrNull")


def _openapi_3_0(node: Any) -> Any:
    """JSON Schema as pydantic writes it, in OpenAPI 3.0's words: ``X | None`` (an anyOf with
    a "null" type, which 3.0 does not have) becomes X, nullable; titles and null defaults go."""
    if isinstance(node, list):
        return [_openapi_3_0(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {
        key: _openapi_3_0(value)
        for key, value in node.items()
        if not (key == "title" and isinstance(value, str)) and not (key == "default" and value is None)
    }
    options = node.get("anyOf", [])
    if {"type": "null"} in options and len(options) == 2:
        (kept,) = (option for option in options if option != {"type": "null"})
        node = {**kept, **{k: v for k, v in node.items() if k != "anyOf"}, "nullable": True}
    return node


class PlaybackChangeExtension(OpenApiSerializerExtension):
    """PUT playback's body is messages.PlaybackChange (the socket's playback message too), under
    the component name it has always had (PlaybackInRequest)."""

    target_class = PlaybackChange
    priority = 1  # before drf-spectacular's own pydantic extension, which writes JSON Schema

    def get_name(self, auto_schema, direction):
        return "PlaybackIn"

    def map_serializer(self, auto_schema, direction):
        return _openapi_3_0(PlaybackChange.model_json_schema())
