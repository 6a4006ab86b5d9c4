from django.urls import path

from apps.streaming import api

urlpatterns = [
    path("rooms/<str:room_id>/streams", api.StreamListView.as_view(), name="room-streams"),
    path("rooms/<str:room_id>/streams/<str:stream_id>", api.StreamDetailView.as_view(), name="room-stream"),
    path(
        "rooms/<str:room_id>/streams/<str:stream_id>/rotate-key",
        api.StreamRotateKeyView.as_view(),
        name="room-stream-rotate-key",
    ),
]
