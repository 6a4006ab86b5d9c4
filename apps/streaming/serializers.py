"""Shapes of the streams API (docs/api.md, "Live streams"). Form only; rules in services."""

from __future__ import annotations

from rest_framework import serializers

from apps.accounts.serializers import RefuseUnknownFields, StrictCharField
from apps.core.netguard import MAX_URL_LENGTH


class StreamCreateSerializer(RefuseUnknownFields, serializers.Serializer):
    name = StrictCharField(min_length=1, max_length=200)
    source_url = StrictCharField(
        max_length=MAX_URL_LENGTH + 1,  # longer is refused by the URL rules with a clear message
        required=False,
        allow_blank=True,
        help_text="A pulled stream (rtmp://, rtmps:// or http(s) HLS) that a node relays; "
        "omit it for a stream that a streamer pushes with the key.",
    )


class StreamKeySerializer(serializers.Serializer):
    stream_key = serializers.CharField(help_text="Shown only here: it is stored hashed.")
    publish_url = serializers.CharField(help_text="{RTMP_URL}/{stream_key}")


class StreamCreatedSerializer(StreamKeySerializer):
    id = serializers.CharField()
    movie_id = serializers.CharField(help_text="The playlist entry (type live) the stream appears as.")


class StreamStatusSerializer(serializers.Serializer):
    id = serializers.CharField()
    live = serializers.BooleanField()
    publisher_node = serializers.CharField(help_text="The node publishing it; empty while not live.")
    playback_url = serializers.CharField(
        help_text="Short-lived signed HLS playlist URL for the caller (read the stream again to renew).",
    )
    ingest_running = serializers.BooleanField(help_text="Whether this node's RTMP server answers.")
