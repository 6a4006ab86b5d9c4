"""Live streams (docs/streaming.md): a stream belongs to a room and appears in its playlist as a
``live`` movie. Its key is never stored: only an HMAC-SHA256 of it (apps.streaming.keys), found
by one indexed lookup when the RTMP server asks whether a publisher may start."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.core.ids import new_id
from apps.rooms.models import Movie, Room


class Stream(models.Model):
    id = models.CharField(primary_key=True, max_length=32, default=new_id, editable=False)
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="streams")
    # The playlist entry it appears as. Taking the movie out of the playlist ends the stream too:
    # its next on_update finds no stream and the RTMP server drops the publisher.
    movie = models.OneToOneField(Movie, on_delete=models.CASCADE, related_name="stream")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    name = models.CharField(max_length=200)
    source_url = models.CharField(
        max_length=2048, blank=True, default="", help_text="A pulled stream (rtmp:// or HLS); empty: pushed."
    )
    key_hash = models.CharField(max_length=64, unique=True, help_text="HMAC-SHA256 of the key, hex.")
    key_rotated_at = models.DateTimeField(default=timezone.now)
    live = models.BooleanField(default=False)
    publisher_node = models.CharField(max_length=200, blank=True, default="")
    live_since = models.DateTimeField(null=True, blank=True)
    # The RTMP server's connection id of the publisher on record (its ``clientid``): a callback
    # about any other connection (a duplicate refused by the RTMP server, one already cut) must
    # not end or extend this one's turn.
    publisher_client = models.CharField(max_length=32, blank=True, default="")
    publisher_seen_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["room", "created_at", "id"]

    def __str__(self) -> str:
        return self.name
