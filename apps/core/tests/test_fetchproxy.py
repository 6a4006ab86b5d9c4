"""The fetch-guard proxy (apps/core/fetchproxy.py) with real sockets: a loopback HTTP server and
a loopback TCP echo server stand for "a private address", which the guard refuses unless
FETCH_ALLOW_PRIVATE_NETWORKS is on."""

from __future__ import annotations

import http.server
import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from apps.core.fetchproxy import MAX_HEAD, FetchProxy
from tests.procs import QuietRequests


class _Recording(QuietRequests, http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, str]] = []

    def do_GET(self) -> None:
        type(self).seen.append((self.path, self.headers.get("Connection", "")))
        body = b"hello from the origin"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data = self.request.recv(1024)
        self.request.sendall(b"echo:" + data)


@pytest.fixture
def origin() -> Iterator[int]:
    _Recording.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recording)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def echo() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy() -> Iterator[tuple[str, int]]:
    running = FetchProxy().start()
    port = int(running.url.rsplit(":", 1)[1])
    yield ("127.0.0.1", port)
    running.stop()


def _exchange(proxy: tuple[str, int], data: bytes, *, then: bytes = b"") -> bytes:
    with socket.create_connection(proxy, timeout=5) as conn:
        conn.sendall(data)
        if then:
            first = conn.recv(4096)
            conn.sendall(then)
            return first + b"\n--\n" + _read_all(conn)
        return _read_all(conn)


def _read_all(conn: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = conn.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_private_target_is_refused_and_never_contacted(proxy, origin, settings):
    settings.FETCH_ALLOW_PRIVATE_NETWORKS = False
    answer = _exchange(proxy, f"GET http://127.0.0.1:{origin}/a.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 403 ") and b"loopback" in answer
    assert _Recording.seen == []


def test_an_allowed_target_is_fetched_in_origin_form_with_connection_close(proxy, origin, settings):
    settings.FETCH_ALLOW_PRIVATE_NETWORKS = True
    request = f"GET http://127.0.0.1:{origin}/live/a.m3u8?t=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    answer = _exchange(proxy, (request + "Connection: keep-alive\r\n\r\n").encode())
    assert answer.startswith(b"HTTP/1.0 200") or answer.startswith(b"HTTP/1.1 200"), answer
    assert answer.endswith(b"hello from the origin")
    assert _Recording.seen == [("/live/a.m3u8?t=1", "close")]


def test_a_second_request_on_one_connection_goes_nowhere(proxy, origin, settings):
    """One request per client connection: a request after the first must not ride the tunnel
    checked for the first (the connection is closed once the response ends)."""
    settings.FETCH_ALLOW_PRIVATE_NETWORKS = True
    first = f"GET http://127.0.0.1:{origin}/one HTTP/1.1\r\nHost: a\r\n\r\n".encode()
    second = b"GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nHost: b\r\n\r\n"
    with socket.create_connection(proxy, timeout=5) as conn:
        conn.sendall(first + second)
        answer = _read_all(conn)
    assert answer.count(b"HTTP/1.") == 1
    assert [path for path, _ in _Recording.seen] == ["/one"]


def test_connect_tunnels_only_to_an_allowed_address(proxy, echo, settings):
    settings.FETCH_ALLOW_PRIVATE_NETWORKS = False
    refused = _exchange(proxy, f"CONNECT 127.0.0.1:{echo} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert refused.startswith(b"HTTP/1.1 403 ")
    settings.FETCH_ALLOW_PRIVATE_NETWORKS = True
    tunnel = _exchange(proxy, f"CONNECT 127.0.0.1:{echo} HTTP/1.1\r\n\r\n".encode(), then=b"ping")
    assert tunnel.startswith(b"HTTP/1.1 200 Connection established\r\n\r\n")
    assert tunnel.endswith(b"echo:ping")


def test_cloud_metadata_stays_refused_even_with_private_networks_allowed(proxy, settings):
    settings.FETCH_ALLOW_PRIVATE_NETWORKS = True
    answer = _exchange(proxy, b"CONNECT 169.254.169.254:80 HTTP/1.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 403 ")


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /relative HTTP/1.1\r\nHost: x\r\n\r\n", b"400"),
        (b"GET ftp://example.com/ HTTP/1.1\r\n\r\n", b"400"),
        (b"CONNECT example.com HTTP/1.1\r\n\r\n", b"400"),
        (b"CONNECT example.com:99999 HTTP/1.1\r\n\r\n", b"400"),
        (b"GET http://127.0.0.1:notaport/ HTTP/1.1\r\n\r\n", b"400"),
        (b"NONSENSE\r\n\r\n", b"400"),
        (b"CONNECT :80 HTTP/1.1\r\n\r\n", b"403"),  # no host
        (b"CONNECT \x01bad:80 HTTP/1.1\r\n\r\n", b"403"),  # resolves to nothing
        (b"GET http://x/ HTTP/1.1\r\n" + b"X: " + b"a" * MAX_HEAD + b"\r\n\r\n", b"431"),
    ],
)
def test_malformed_requests_get_a_clear_refusal(proxy, request_bytes, status):
    answer = _exchange(proxy, request_bytes)
    assert answer.startswith(b"HTTP/1.1 " + status + b" "), answer[:80]


def test_a_client_that_hangs_up_early_does_not_stop_the_proxy(proxy, origin, settings):
    settings.FETCH_ALLOW_PRIVATE_NETWORKS = True
    with socket.create_connection(proxy, timeout=5) as conn:
        conn.sendall(b"GET http://127.0.0.1")
    answer = _exchange(proxy, f"GET http://127.0.0.1:{origin}/after HTTP/1.1\r\n\r\n".encode())
    assert answer.endswith(b"hello from the origin")
