"""OpenAPI shapes of the rooms answers that are not one serializer (apps/rooms/api.py builds
them by hand): pages, the playlist, the guest's token, one movie or several, a movie or null."""

from __future__ import annotations

from drf_spectacular.utils import inline_serializer
from rest_framework import serializers

from apps.core.openapi import nullable, one_or_many, paginated
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
