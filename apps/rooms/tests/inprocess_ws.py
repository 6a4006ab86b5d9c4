"""In-process WebSocket helpers for the consumer tests: the project's ASGI application driven by
asgiref's ApplicationCommunicator (the ``local_hub`` fixture in conftest.py gives the test a hub
of its own that delivers in this process, no Redis between publish and socket)."""

from __future__ import annotations

ORIGIN = (b"origin", b"http://localhost:8000")


def ws_scope(room_id: str, token: str, versions: tuple[str, ...] = ("synctv.v1",)) -> dict:
    """The scope of a browser's socket to ``room_id`` with ``token`` as its bearer subprotocol,
    offering the protocol ``versions``."""
    return {
        "type": "websocket",
        "path": f"/ws/rooms/{room_id}/",
        "query_string": b"",
        "headers": [ORIGIN],
        "subprotocols": [*versions, f"bearer.{token}"],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
