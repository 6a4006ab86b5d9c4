"""A WebSocket path that matches no route is refused cleanly (issue 10, finding 12).

Through the whole ASGI application (synctv.asgi.application: origin check, router, consumer)
with an allowed Origin. channels' URLRouter raises ValueError("No route found") for an unknown
path, which the ASGI server turns into a 500 and a logged traceback; a path uvicorn decoded from
``/ws/rooms/..%2f..%2fx/`` is one of those.
"""

from __future__ import annotations

import json
import logging

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator

from apps.rooms import consumers

ORIGIN = (b"origin", b"http://localhost:8000")

UNKNOWN_PATHS = [
    "/ws/rooms/../../x/",  # what uvicorn puts in scope["path"] for /ws/rooms/..%2f..%2fx/
    "/ws/rooms/a/b/",
    "/ws/rooms//",
    "/ws/rooms/",
    "/ws/rooms/abc",  # no trailing slash
    "/ws/",
    "/ws/nothing/",
    "/",
    "/api/v1/rooms/",
]


def handshake(path: str, subprotocols: list[str]) -> list[dict]:
    from synctv.asgi import application

    async def run():
        scope = {
            "type": "websocket",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": [ORIGIN],
            "subprotocols": subprotocols,
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8000),
        }
        socket = ApplicationCommunicator(application, scope)
        await socket.send_input({"type": "websocket.connect"})
        out = []
        while True:
            message = await socket.receive_output(timeout=5)  # re-raises the application's error
            out.append(message)
            if message["type"] == "websocket.close":
                break
        await socket.send_input({"type": "websocket.disconnect", "code": message.get("code", 1000)})
        await socket.wait(timeout=5)
        return out

    return async_to_sync(run)()


@pytest.mark.parametrize("path", UNKNOWN_PATHS)
def test_an_unknown_websocket_path_is_closed_4404_without_a_traceback(path, caplog):
    caplog.set_level(logging.ERROR)
    out = handshake(path, ["synctv.v1", "bearer.not-even-a-token"])
    kinds = [m["type"] for m in out]
    assert kinds == ["websocket.accept", "websocket.send", "websocket.close"], out
    assert out[0].get("subprotocol") == "synctv.v1"  # a browser that offered it accepts the handshake
    error = json.loads(out[1]["text"])
    assert error["type"] == "error" and error["code"] == "connection_refused", error
    assert out[-1]["code"] == consumers.CLOSE_NOT_FOUND
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def test_an_unknown_path_without_our_subprotocol_is_still_closed_4404():
    out = handshake("/ws/rooms/../../x/", [])
    assert [m["type"] for m in out][-1] == "websocket.close"
    assert out[0].get("subprotocol") is None
    assert out[-1]["code"] == consumers.CLOSE_NOT_FOUND
