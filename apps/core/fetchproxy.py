"""A loopback HTTP proxy that applies the server-side fetch guard to every connection a child
process makes (docs/streaming.md, "Pulled streams").

ffmpeg pulling an HLS source fetches the playlist, then whatever hosts the playlist names for its
segments and keys, and follows redirects: checking the source URL once would leave all of those
unchecked. So the relay starts ffmpeg with ``-http_proxy`` pointing here. Each client connection
carries exactly one request:

- ``CONNECT host:port`` (an ``https`` URL: ffmpeg tunnels TLS through the proxy): the host is
  checked with :func:`apps.core.netguard.check_server_host` and the tunnel goes to one of the
  addresses that check returned, never to a second resolution (so DNS rebinding gains nothing);
- ``GET http://host:port/path`` (a plain ``http`` URL): the same check; the request is sent on
  in origin form with ``Connection: close``, and the connection ends with the response, so a
  second request can never ride on a tunnel checked for another host.

A refused target gets ``403`` and nothing is connected. The proxy listens on 127.0.0.1 only.
"""

from __future__ import annotations

import logging
import select
import socket
import socketserver
import threading
from urllib.parse import urlsplit

from apps.core.netguard import UnsafeURL, check_server_host

logger = logging.getLogger(__name__)

MAX_HEAD = 16 * 1024
CONNECT_TIMEOUT = 10.0
IDLE_TIMEOUT = 60.0
_HOP_BY_HOP = {b"connection", b"proxy-connection", b"keep-alive", b"proxy-authorization", b"te", b"upgrade"}


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """The request head (up to the blank line) and whatever body bytes came with it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise _Refused(400, "connection closed before the request head")
        data += chunk
        if len(data) > MAX_HEAD:
            raise _Refused(431, "request head too large")
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _target(host: str, port: int) -> tuple[str, int]:
    """Check ``host`` as the fetch guard does and return an address it resolved to."""
    try:
        addresses = check_server_host(host, port)
    except UnsafeURL as exc:
        raise _Refused(403, exc.message) from exc
    return addresses[0], port


def _connect(address: tuple[str, int]) -> socket.socket:
    try:
        return socket.create_connection(address, timeout=CONNECT_TIMEOUT)
    except OSError as exc:
        raise _Refused(502, f"cannot connect: {exc.strerror or exc}") from exc


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy both ways until either side closes or stays idle for IDLE_TIMEOUT."""
    sockets = [a, b]
    for s in sockets:
        s.settimeout(None)
    while True:
        readable, _, _ = select.select(sockets, [], [], IDLE_TIMEOUT)
        if not readable:
            return
        for source in readable:
            try:
                chunk = source.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            (b if source is a else a).sendall(chunk)


class _Handler(socketserver.BaseRequestHandler):
    request: socket.socket

    def handle(self) -> None:
        upstream = None
        try:
            self.request.settimeout(CONNECT_TIMEOUT)
            head, rest = _read_head(self.request)
            upstream = self._open(head, rest)
            _pipe(self.request, upstream)
        except _Refused as refusal:
            logger.warning("fetch proxy refused a request: %s", refusal.reason)
            body = f"{refusal.reason}\n".encode()
            response = (
                f"HTTP/1.1 {refusal.status} Refused\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            try:
                self.request.sendall(response.encode() + body)
            except OSError:
                pass
        except OSError:
            pass
        finally:
            if upstream is not None:
                upstream.close()

    def _open(self, head: bytes, rest: bytes) -> socket.socket:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            raise _Refused(400, "malformed request line")
        method, target, version = parts
        if method == b"CONNECT":
            host, sep, port_text = target.decode("latin-1").rpartition(":")
            if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise _Refused(400, "CONNECT needs host:port")
            upstream = _connect(_target(host.strip("[]"), int(port_text)))
            self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if rest:
                upstream.sendall(rest)
            return upstream
        url = urlsplit(target.decode("latin-1"))
        if url.scheme != "http" or not url.hostname:
            raise _Refused(400, "only absolute http URLs and CONNECT are proxied")
        try:
            port = url.port or 80
        except ValueError as exc:
            raise _Refused(400, "bad port") from exc
        upstream = _connect(_target(url.hostname, port))
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        headers = [line for line in lines[1:] if line.split(b":", 1)[0].strip().lower() not in _HOP_BY_HOP]
        outgoing = b"\r\n".join([b" ".join([method, path.encode("latin-1"), version]), *headers])
        upstream.sendall(outgoing + b"\r\nConnection: close\r\n\r\n" + rest)
        return upstream


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class FetchProxy:
    """The proxy on 127.0.0.1:<port> (0: any free port), served by a daemon thread."""

    def __init__(self, port: int = 0) -> None:
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fetch-proxy", daemon=True)

    @property
    def url(self) -> str:
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    def start(self) -> FetchProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
