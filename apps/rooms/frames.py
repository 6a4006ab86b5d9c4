"""Writing a WebSocket frame once, straight to uvicorn's transports.

The room hub (apps.rooms.hub) fans an event out to many local sockets. Under uvicorn's
websockets-sansio protocol (the Procfile's, with per-message deflate off) the frame of an event
is the same bytes for every socket, so it is built once (``text_frame``) and written to each
socket's transport (``write_direct``), skipping one ``conn.send_text`` + ``transport.write`` per
socket through the ASGI ``send``.

Invariants:
- Only a socket whose ``send`` is exactly uvicorn's ``WebSocketsSansIOProtocol.send`` and that
  negotiated no extension qualifies (``direct_protocol``): the bytes written are then exactly
  what that ``send`` would have written.
- A frame is written directly only when ``writable_now`` says ``send`` would write it at once
  with nothing of the connection's own still queued, so no frame is ever reordered with the
  socket's other sends. Every socket that does not qualify at that moment goes back to the hub's
  ASGI path, where the slow-socket drop applies.
- With another ASGI server (the imports below fail) ``DIRECT_WRITES`` is False and every frame
  goes through the ASGI ``send``.

Everything here runs per event or per socket per event on the fan-out path measured by bench/ws:
no per-socket work beyond the checks ``send`` itself makes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from apps.core import metrics

try:
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    from websockets.frames import Frame, Opcode
    from websockets.protocol import OPEN
except ImportError:  # another ASGI server: every frame goes through the ASGI send
    WebSocketsSansIOProtocol = None

logger = logging.getLogger(__name__)

DIRECT_WRITES = WebSocketsSansIOProtocol is not None


def direct_protocol(send: Callable) -> Any:
    """The uvicorn protocol behind an ASGI ``send`` if the hub may write frames to its transport
    itself, else None. Only uvicorn's websockets-sansio protocol qualifies (its ``send`` does
    exactly this: ``conn.send_text`` + ``transport.write``, nothing else), and only on a socket
    that negotiated no extension (per-message deflate compresses each message per socket). Call
    once the socket is accepted: extensions are settled then and never change."""
    proto = getattr(send, "__self__", None)
    if (
        WebSocketsSansIOProtocol is None
        or type(proto) is not WebSocketsSansIOProtocol
        or getattr(send, "__func__", None) is not WebSocketsSansIOProtocol.send
        or not proto.handshake_complete
        or proto.conn.extensions
    ):
        return None
    try:
        writable_now(proto)  # every attribute it reads exists in this uvicorn/websockets
    except AttributeError:
        logger.warning("uvicorn's websockets-sansio protocol changed: frames go through ASGI send")
        return None
    return proto


def release_handshake(send: Callable, scope: dict) -> None:
    """Once a socket is accepted, uvicorn's websockets-sansio protocol still holds the handshake's
    request and response, each with its headers, and the scope's list of headers (one more copy,
    as bytes): ~6 KiB a socket with the bearer token in three of them (tracemalloc at 2,000 idle
    sockets). Nothing reads them again: uvicorn's ``send`` uses the response only until
    ``handshake_complete``, its logs read the path, the consumer read the origin and the user
    agent during the connect and keeps the token in ``scope["subprotocols"]``. Drop them. Any
    other server's protocol and scope are left alone."""
    proto = getattr(send, "__self__", None)
    if WebSocketsSansIOProtocol is None or type(proto) is not WebSocketsSansIOProtocol:
        return
    if proto.handshake_complete and getattr(proto, "initial_response", None) is None:
        proto.request = None
        proto.response = None
        headers = scope.get("headers")
        if isinstance(headers, list) and headers is proto.scope.get("headers"):
            headers.clear()  # the same list in uvicorn's scope and every copy channels made


def text_frame(text: str) -> bytes:
    """What ``proto.conn.send_text(text)`` would queue: an unmasked (server side) final TEXT
    frame, no extension (``direct_protocol`` refused sockets that negotiated one). Only when
    ``DIRECT_WRITES``. Raises ValueError for text that cannot be encoded (a lone surrogate)."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False, extensions=[])


def write_direct(subscribers: list, frame: bytes) -> tuple[list, int]:
    """Write ``frame`` to the transport of every subscriber that takes it right now; return the
    subscribers left for the ASGI send and how many were written. A transport that fails
    meanwhile is skipped (its socket is closing); it is neither written nor handed back."""
    rest, direct = [], 0
    for sub in subscribers:
        proto = getattr(sub, "direct", None)
        if proto is None or not writable_now(proto):
            rest.append(sub)
            continue
        try:
            proto.transport.write(frame)
        except Exception:  # noqa: S112 - the transport failed meanwhile; the rest still get it
            continue
        direct += 1
    return rest, direct


def writable_now(proto) -> bool:
    """Would ``proto.send`` write a text frame right now, without waiting? The same conditions
    it checks (writable, not disconnected, no close sent, an accepted socket), plus nothing of the
    connection's own still queued and no fragmented message open, so no frame can be reordered.
    A socket that is not writable (its client stopped reading) takes the ASGI path, where the
    slow-socket timer applies to it as before."""
    conn = proto.conn
    return (
        proto.writable.is_set()
        and not proto.disconnected
        and not proto.close_sent
        and proto.initial_response is None
        and conn.state is OPEN
        and not conn.writes
        and not conn.expect_continuation_frame
        and not proto.transport.is_closing()
    )


def event_type(text: str) -> str:
    """The ``type`` of an event as ``realtime.encode`` writes it (first, so no parse is needed),
    for /metrics; ``other`` for anything else."""
    if text.startswith('{"type":"'):
        end = text.find('"', 9, 48)
        if end > 9:
            return text[9:end]
    return "other"


def count_sent(text: str, sockets: int = 1) -> None:
    metrics.sent(event_type(text)).inc(sockets)


class CountedSends:
    """A consumer's own text frames (its hello, replies, errors) counted in /metrics by type; the
    hub counts what it writes to many sockets at once (``RoomHub.send_many``)."""

    async def send(self, text_data=None, bytes_data=None, close=False):
        if text_data is not None:
            count_sent(text_data)
        await super().send(text_data, bytes_data, close)  # type: ignore[misc]
