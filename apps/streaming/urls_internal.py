"""``/internal/rtmp/...``: the RTMP server's callbacks (apps/streaming/callbacks.py). Not part of
the public API (no OpenAPI entry): only the RTMP server, with its secret, from its network."""

from django.urls import path

from apps.streaming import callbacks

urlpatterns = [
    path("on_publish", callbacks.on_publish, name="rtmp-on-publish"),
    path("on_publish_done", callbacks.on_publish_done, name="rtmp-on-publish-done"),
    path("on_update", callbacks.on_update, name="rtmp-on-update"),
    path("on_play", callbacks.on_play, name="rtmp-on-play"),
]
