"""Streams REST endpoints (docs/api.md, "Live streams"). Thin: parse, find the actor, call a
service, shape the answer. Who may do what is the services' (apps.streaming.services)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response

from apps.core.context import Origin
from apps.permissions.rules import RoomActor
from apps.rooms.api import ERRORS, GuestAllowed, RoomView
from apps.streaming import hls, ingest, selectors, services
from apps.streaming.models import Stream
from apps.streaming.serializers import (
    StreamCreatedSerializer,
    StreamCreateSerializer,
    StreamKeySerializer,
    StreamStatusSerializer,
)


class StreamListView(RoomView):
    permission_classes = [GuestAllowed]  # a guest is answered permission_denied, not 401

    @extend_schema(
        request=StreamCreateSerializer,
        responses={201: StreamCreatedSerializer, **ERRORS},
        summary="Create a live stream (ADD_MOVIE); its key is shown only in this answer",
    )
    def post(self, request, room_id):
        room, actor, data = self.access_with_body(request, room_id, StreamCreateSerializer)
        created = services.stream_create(
            actor=actor,
            room=room,
            name=data["name"],
            source_url=data.get("source_url", ""),
            origin=Origin.of(request),
        )
        body = {
            "id": created.stream.pk,
            "movie_id": created.stream.movie_id,
            "stream_key": created.key,
            "publish_url": created.publish_url,
        }
        return Response(body, status=status.HTTP_201_CREATED)


class StreamDetailView(RoomView):
    permission_classes = [GuestAllowed]

    @extend_schema(
        responses={200: StreamStatusSerializer, **ERRORS},
        summary="A live stream's status and the caller's signed playback URL (members and guests)",
    )
    def get(self, request, room_id, stream_id):
        room, actor = self.access(request, room_id)
        stream = selectors.stream_get(room=room, stream_id=stream_id)
        return Response(status_body(stream, actor))

    @extend_schema(
        responses={204: None, **ERRORS},
        summary="Delete a live stream (its owner or a room admin); a live publisher is cut",
    )
    def delete(self, request, room_id, stream_id):
        room, actor = self.access(request, room_id)
        stream = selectors.stream_get(room=room, stream_id=stream_id)
        services.stream_delete(actor=actor, stream=stream, origin=Origin.of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class StreamRotateKeyView(RoomView):
    permission_classes = [GuestAllowed]

    @extend_schema(
        request=None,
        responses={200: StreamKeySerializer, **ERRORS},
        summary="A new key for a live stream (its owner or a room admin); the old one stops working",
    )
    def post(self, request, room_id, stream_id):
        room, actor = self.access(request, room_id)
        stream = selectors.stream_get(room=room, stream_id=stream_id)
        rotated = services.stream_rotate_key(actor=actor, stream=stream, origin=Origin.of(request))
        return Response({"stream_key": rotated.key, "publish_url": rotated.publish_url})


def status_body(stream: Stream, actor: RoomActor) -> dict[str, object]:
    return {
        "id": stream.pk,
        "live": stream.live,
        "publisher_node": stream.publisher_node,
        "playback_url": hls.signed_playlist_url(stream, actor),
        "ingest_running": ingest.ingest_running(),
    }
