"""RoomHub.send_many against uvicorn's real websockets-sansio protocol objects (in-process, a
recording transport instead of a socket): the direct path writes exactly the bytes uvicorn's own
``send`` writes, keeps each socket's order with its other sends, and hands every socket that
does not qualify at that moment (paused, closing, deflated, another server) to the ASGI send,
where the slow-socket drop applies as before. The real-process side is tests/test_ws_frames.py.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

from apps.rooms import hub as hub_module
from apps.rooms.hub import RoomHub, direct_protocol

HANDSHAKE = (
    b"GET /ws/rooms/r/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)
DEFLATE_OFFER = b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"


class RecordingTransport:
    def __init__(self) -> None:
        self.data = bytearray()
        self.closing = False

    def write(self, data: bytes) -> None:
        self.data += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name, default=None):
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def frames(self) -> list[tuple[int, bytes]]:
        """(opcode, payload) of every server frame written after the handshake response."""
        data = after_handshake(self)
        out = []
        while data:
            opcode, length, head = data[0] & 0x0F, data[1] & 0x7F, 2
            assert not data[1] & 0x80, "a server frame must not be masked"
            if length == 126:
                length, head = int.from_bytes(data[2:4], "big"), 4
            elif length == 127:
                length, head = int.from_bytes(data[2:10], "big"), 10
            out.append((opcode, data[head : head + length]))
            data = data[head + length :]
        return out

    def texts(self) -> list[str]:
        return [payload.decode() for opcode, payload in self.frames() if opcode == 0x1]


class Socket:
    """A hub subscriber on a real uvicorn protocol: what RoomConsumer gives the hub."""

    def __init__(self, proto: WebSocketsSansIOProtocol, send, transport: RecordingTransport) -> None:
        self.proto, self.base_send, self.transport = proto, send, transport
        self.connection_id = f"c{id(self)}"
        self.direct = direct_protocol(send)
        self.slow = 0

    def on_event(self, channel, event) -> bool:
        return True

    def on_slow(self) -> None:
        self.slow += 1


async def open_socket(*, deflate: bool = False) -> Socket:
    """A uvicorn websockets-sansio connection as the Procfile's options make it (deflate off unless
    asked), handshake done and accepted by a trivial ASGI app that then waits."""
    accepted: asyncio.Future = asyncio.get_running_loop().create_future()

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        accepted.set_result(send)
        while (await receive())["type"] != "websocket.disconnect":
            pass

    config = Config(
        app=app, ws="websockets-sansio", ws_per_message_deflate=deflate, lifespan="off", log_level="error"
    )
    config.load()
    proto = WebSocketsSansIOProtocol(config, ServerState(), {}, _loop=asyncio.get_running_loop())
    transport = RecordingTransport()
    proto.connection_made(transport)
    proto.data_received(HANDSHAKE + (DEFLATE_OFFER if deflate else b"") + b"\r\n")
    send = await asyncio.wait_for(accepted, 2)
    assert b" 101 " in bytes(transport.data)
    OPENED.append(proto)
    return Socket(proto, send, transport)


def after_handshake(transport: RecordingTransport) -> bytes:
    return bytes(transport.data[transport.data.index(b"\r\n\r\n") + 4 :])


def event(n: int, text: str = "") -> dict:
    return {"type": "websocket.send", "text": json.dumps({"type": "chat", "id": n, "text": text})}


OPENED: list[WebSocketsSansIOProtocol] = []


def run(coro):
    async def bounded():
        try:
            return await asyncio.wait_for(coro, 10)
        finally:  # let each app see its disconnect and return
            while OPENED:
                OPENED.pop().connection_lost(None)
            await asyncio.sleep(0.01)

    return asyncio.run(bounded())


def test_direct_writes_are_the_bytes_uvicorn_writes_in_order_with_the_sockets_own_sends():
    async def scenario():
        hub, a, b, ref = RoomHub(), await open_socket(), await open_socket(), await open_socket()
        assert a.direct is a.proto and b.direct is b.proto
        long = "é✓" * 100  # > 125 bytes: the 16-bit length form
        await hub.send_many([a, b], event(1))
        await a.base_send({"type": "websocket.send", "text": "own reply"})  # e.g. a pong
        await hub.send_many([a, b], event(2, long))
        for n, text in ((1, ""), (2, long)):  # what uvicorn's own send writes for the same events
            await ref.base_send(event(n, text))
        assert after_handshake(b.transport) == after_handshake(ref.transport)
        assert a.transport.texts() == [event(1)["text"], "own reply", event(2, long)["text"]]
        assert hub.stats["delivered"] == hub.stats["delivered_direct"] == 4

    run(scenario())


def test_sockets_that_do_not_qualify_take_the_asgi_send_and_a_stuck_one_is_dropped(monkeypatch):
    monkeypatch.setattr(hub_module, "SLOW_SEND_SECONDS", 0.05)

    async def scenario():
        hub = RoomHub()
        fine, stuck, deflated, closed = (
            await open_socket(),
            await open_socket(),
            await open_socket(deflate=True),
            await open_socket(),
        )
        assert deflated.direct is None and deflated.proto.conn.extensions  # negotiated: never direct
        stuck.proto.pause_writing()  # its client stopped reading: the buffer is over the high mark
        await closed.base_send({"type": "websocket.close", "code": 1000})
        before = {s: len(s.transport.data) for s in (stuck, closed)}

        await hub.send_many([stuck, fine, deflated, closed], event(7, "x" * 300))

        assert fine.transport.texts() == [event(7, "x" * 300)["text"]]
        assert stuck.slow == 1 and len(stuck.transport.data) == before[stuck]  # dropped, not written
        assert len(closed.transport.data) == before[closed]  # nothing after its close frame
        assert (
            deflated.transport.frames() and deflated.transport.frames()[0][0] == 0x1
        )  # compressed, via ASGI
        assert deflated.transport.frames()[0][1] != event(7, "x" * 300)["text"].encode()
        assert hub.stats == {"delivered": 2, "delivered_direct": 1, "dropped_slow": 1, "redis_reconnects": 0}

        stuck.proto.resume_writing()  # a socket that drains again is direct again
        await hub.send_many([stuck], event(8))
        assert stuck.transport.texts()[-1] == event(8)["text"] and hub.stats["delivered_direct"] == 2

    run(scenario())


def test_text_that_cannot_be_framed_fails_per_socket_not_the_hub():
    async def scenario():
        hub, a = RoomHub(), await open_socket()
        size = len(a.transport.data)
        await hub.send_many([a], {"type": "websocket.send", "text": '"\ud800"'})  # a lone surrogate
        assert len(a.transport.data) == size and hub.stats["delivered"] == 0
        await hub.send_many([a], event(9))
        assert a.transport.texts() == [event(9)["text"]]

    run(scenario())


@pytest.mark.parametrize("send", [None, print, lambda message: None])
def test_only_uvicorns_sansio_send_qualifies(send):
    assert direct_protocol(send) is None
