"""WebSocket routes."""

from django.urls import path, re_path

from apps.core import events, realtime
from apps.rooms.consumers import RoomConsumer
from apps.rooms.handshake import CLOSE_NOT_FOUND, SUBPROTOCOL


async def unknown_path(scope, receive, send) -> None:
    """Any path no route matches (``/ws/rooms/..%2f..%2fx/``, ``/ws/elsewhere/``): refused like a
    room that does not exist (close code 4404, docs/api.md). channels' URLRouter raises ValueError for such a
    path, which the ASGI server answers with a 500 and a logged traceback. Accepted first because
    a close code reaches the client only after the handshake (the room consumer refuses the same
    way). A plain ASGI function, not a consumer: nothing is read, no token checked, no database
    connection touched."""
    if (await receive())["type"] != "websocket.connect":
        return
    offered = scope.get("subprotocols") or ()
    await send({"type": "websocket.accept", "subprotocol": SUBPROTOCOL if SUBPROTOCOL in offered else None})
    refusal = events.error("connection_refused", "No such endpoint.")
    await send({"type": "websocket.send", "text": realtime.encode(refusal)})
    await send({"type": "websocket.close", "code": CLOSE_NOT_FOUND})


websocket_urlpatterns = [
    path("ws/rooms/<str:room_id>/", RoomConsumer.as_asgi()),
    re_path(r"", unknown_path),  # last: everything else
]
