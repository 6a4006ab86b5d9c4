"""The production front (deploy/nginx/synctv.conf.template) in front of real nodes: REST goes to
the `web` node, `/ws/` to the `ws` nodes with the upgrade, the app sees the client's address from
the front's ``X-Forwarded-For`` (``TRUSTED_PROXY_COUNT=1``), and when the `ws` node holding a
socket is stopped (SIGTERM) it drains: the socket stays open while new sockets through the same
front address land on the other node (the stopping one answers 503, nginx tries the next); and
when it comes back, the other node asks half its sockets to move and they land on it
(apps/rooms/balance.py, ``least_conn`` at the front).

Without nginx the module fails (scripts/install-system-packages installs it)."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import ssl
import time
import warnings
from pathlib import Path

import httpx
import pytest
import redis as redis_lib

from tests.procs import NGINX, free_port, holds_a_socket, procfile_command, start_front, wait_http
from tests.wsclient import (
    PASSWORD,
    Api,
    Cluster,
    PrivateRedis,
    close_all,
    db_scalar,
    dial,
    run,
    scratch_database,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

# A long drain (the first test moves sockets while the node drains) and a balance round a second.
NODE_ENV = {"WS_DRAIN_SECONDS": "30", "WS_BALANCE_SECONDS": "1"}


@pytest.fixture(scope="module")
def front(tmp_path_factory):
    if not Path(NGINX).exists():
        pytest.fail("nginx not found: scripts/install-system-packages installs it")
    tmp = tmp_path_factory.mktemp("front")
    redis = PrivateRedis()
    redis.start()
    try:
        with scratch_database() as dsn:
            cluster = Cluster(tmp, database_url=dsn, redis=redis)
            cluster.env["TRUSTED_PROXY_COUNT"] = "1"
            try:
                cluster.release()
                web = cluster.start("web", command=procfile_command("web"), WEB_CONCURRENCY="1")
                ws = cluster.start("ws1", "ws2", **NODE_ENV)
                tls_port = free_port()
                port, nginx = start_front(tmp, [n.port for n in web], [n.port for n in ws], tls_port=tls_port)
                with nginx as proc:
                    base = f"http://127.0.0.1:{port}"
                    assert (
                        wait_http(f"{base}/healthz", proc=proc, log=tmp / "nginx.log", timeout=20).status_code
                        == 200
                    )
                    yield base, ws, dsn, cluster, tls_port
            finally:
                cluster.close()
    finally:
        redis.kill()


def test_rest_and_websocket_go_through_the_front_and_a_stopped_ws_node_drains(front):
    base, (ws1, ws2), dsn, _, _ = front
    api = Api(base)
    owner = api.register("frontowner")
    room = api.create_room(owner, "behind the front")
    ws_url = f"ws://{base.removeprefix('http://')}/ws/rooms/{room['id']}/"

    # The app takes the client's address from the entry the front appends to X-Forwarded-For,
    # not from one the client wrote: the session opened here records the front's client, loopback.
    r = httpx.post(
        f"{base}/api/v1/auth/register",
        json={"username": "spoofer", "password": "Corr3ct-horse-battery"},
        headers={"X-Forwarded-For": "203.0.113.9"},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    ip = db_scalar(dsn, "SELECT ip FROM accounts_authsession WHERE user_id = %s", r.json()["user"]["id"])
    assert str(ip) == "127.0.0.1", ip

    async def scenario():
        sock = await dial(ws_url, token=owner.access, label="front")
        hello = await sock.next(10)
        assert hello["type"] == "hello", hello
        # Which node holds it? Stop that one: it drains (the socket stays open), and every new
        # socket through the same front address lands on the other node: the stopping one answers
        # the handshake 503, which nginx takes as "next node" (proxy_next_upstream http_503).
        holder, other = (ws1, ws2) if holds_a_socket(ws1.port) else (ws2, ws1)
        holder.signal(signal.SIGTERM)
        notice = await sock.expect("server_shutdown", 10)
        assert notice["drain_ms"] > 0, notice
        moved = [await dial(ws_url, token=owner.access, label=f"front-again{i}") for i in range(4)]
        for again in moved:
            hello = await again.next(15)
            assert hello["type"] == "hello", hello
            assert hello["playback"]["version"] >= 0
        await sock.ping()  # the old socket still answers
        await sock.close()
        assert await asyncio.to_thread(holder.wait_exit, 15) in (0, -signal.SIGTERM), holder.log_tail()
        assert other.proc.poll() is None
        await close_all(*moved)

    run(scenario(), timeout=60)


def test_a_client_cannot_write_its_address_or_request_id_through_the_front(front):
    """nginx sets X-Forwarded-For and X-Request-ID on REST and on /ws/ alike: a client's own are
    replaced (a location with headers of its own inherits none of the server's, so /ws/ once
    passed the client's X-Forwarded-For through and uvicorn took its address from it)."""
    base, _, dsn, cluster, _ = front
    api = Api(base)
    owner = api.register("addrowner")
    room = api.create_room(owner, "addresses")
    spoofed = {"X-Forwarded-For": "203.0.113.9", "X-Request-ID": "client-chosen-id-1234"}

    answer = httpx.get(f"{base}/healthz", headers=spoofed, timeout=10)
    request_id = answer.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id), request_id  # nginx's $request_id

    async def scenario():
        # From 127.0.0.2, which uvicorn does not trust (--forwarded-allow-ips 127.0.0.1), so the
        # address it believes is the one nginx appended.
        sock = await dial(
            f"ws://{base.removeprefix('http://')}/ws/rooms/{room['id']}/?token={owner.access}",
            label="spoofer",
            subprotocols=[],
            additional_headers=spoofed,
            local_addr=("127.0.0.2", 0),
        )
        assert (await sock.next(10))["type"] == "hello"
        await sock.send({"type": "playback", "playing": True})
        await sock.expect("playback", 10)
        await sock.close()

    run(scenario(), timeout=30)
    ip = db_scalar(
        dsn, "SELECT ip FROM audit_auditevent WHERE action = 'playback.update' AND room_id = %s", room["id"]
    )
    assert str(ip) == "127.0.0.2", ip
    # REST alike. The login's audited address comes from the same ``client_ip`` as the rate
    # limits' key (``ratelimit.ip_key``), so the spoofed header cannot choose that key either.
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=10) as client:
        login = {"username": owner.username, "password": PASSWORD}
        assert client.post(f"{base}/api/v1/auth/login", json=login, headers=spoofed).status_code == 200
    ip = db_scalar(
        dsn,
        "SELECT ip FROM audit_auditevent WHERE action = 'auth.login' AND user_id = %s ORDER BY seq DESC LIMIT 1",
        owner.id,
    )
    assert str(ip) == "127.0.0.2", ip
    # nginx's access log names the request by the same id, and writes no query string.
    log = (cluster.tmp / "nginx" / "logs" / "access.log").read_text()
    assert f" {request_id}" in log
    assert owner.access not in log and "token=" not in log


def tls_context(cert: Path, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cert))
    if version is not None:
        context.minimum_version = context.maximum_version = version
    return context


def test_tls_12_and_13_through_the_front_with_hsts_and_websockets_and_nothing_older(front):
    base, _, _, cluster, tls_port = front
    cert = cluster.tmp / "nginx" / "tls" / "cert.pem"
    tls_base = f"https://localhost:{tls_port}"

    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        with socket.create_connection(("127.0.0.1", tls_port), timeout=5) as raw:
            with tls_context(cert, version).wrap_socket(raw, server_hostname="localhost") as tls:
                assert tls.version() == version.name.replace("_", "."), tls.version()

    # TLS 1.1 (the client allowed to offer it at all): nginx answers with a protocol_version alert.
    with warnings.catch_warnings():  # Python deprecates TLS 1.1 too: here it is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        old = tls_context(cert, ssl.TLSVersion.TLSv1_1)
    old.set_ciphers("DEFAULT@SECLEVEL=0")
    with socket.create_connection(("127.0.0.1", tls_port), timeout=5) as raw:
        with pytest.raises(ssl.SSLError) as refused:
            old.wrap_socket(raw, server_hostname="localhost")
    assert refused.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION", refused.value

    # The app believes the front's X-Forwarded-Proto: over TLS it sends its own HSTS (with
    # preload, which nginx's fallback lacks); over the plain server, none.
    answer = httpx.get(f"{tls_base}/api/v1/users/me", verify=tls_context(cert), timeout=10)
    assert answer.status_code == 401
    assert "preload" in answer.headers["strict-transport-security"], answer.headers
    assert "strict-transport-security" not in httpx.get(f"{base}/api/v1/users/me", timeout=10).headers

    owner = Api(base).register("tlsowner")
    room = Api(base).create_room(owner, "over tls")

    async def scenario():
        sock = await dial(
            f"wss://localhost:{tls_port}/ws/rooms/{room['id']}/",
            token=owner.access,
            label="tls",
            ssl=tls_context(cert),
        )
        assert (await sock.next(10))["type"] == "hello"
        await sock.ping()
        await sock.close()

    run(scenario(), timeout=30)


def test_a_node_started_again_gets_its_share_of_the_sockets_back(front):
    base, nodes, _, cluster, _ = front
    # One node holds every socket: the other is stopped (the test above may have stopped it).
    if all(n.proc.poll() is None for n in nodes):
        nodes[0].signal(signal.SIGTERM)
        nodes[0].wait_exit(15)
    stopped, alive = nodes if nodes[0].proc.poll() is not None else nodes[::-1]
    _, members, room = Api(base).room_with_members("bal", 15)
    ws_url = f"ws://{base.removeprefix('http://')}/ws/rooms/{room['id']}/"
    counts = redis_lib.Redis.from_url(cluster.redis.url(0), decode_responses=True)

    def reported() -> dict[str, int]:
        return {n.name: int(counts.get(f"cluster:sockets:{n.name}-{n.port}") or 0) for n in (alive, stopped)}

    async def scenario():
        sockets = {}
        for i, who in enumerate(members * 4):
            sockets[await dial(ws_url, token=who.access, label=f"bal{i}")] = who
        for sock in sockets:
            assert (await sock.next(15))["type"] == "hello"
        assert not holds_a_socket(stopped.port)
        cluster.start(stopped.name, port=stopped.port, **NODE_ENV)

        # The clients move as the page does: a new socket through the front, the old one closed
        # once the new one's hello came.
        notices, moved = [], []
        deadline = time.monotonic() + 30
        while reported() != {alive.name: 30, stopped.name: 30} and time.monotonic() < deadline:
            for sock, notice in [(s, asked_to_move(s)) for s in list(sockets)]:
                if notice is None:
                    continue
                notices.append(notice)
                again = await dial(ws_url, token=sockets.pop(sock).access, label=f"{sock.label}-moved")
                assert (await again.next(15))["type"] == "hello"
                await sock.close()
                moved.append(again)
            await asyncio.sleep(0.05)
        assert reported() == {alive.name: 30, stopped.name: 30}, (reported(), len(notices))
        assert len(notices) == 30 and {n["reason"] for n in notices} == {"rebalance"}
        assert all(n["drain_ms"] > 0 for n in notices)
        assert all(s.close_code is None for s in sockets)  # the node closed none it asked nothing of
        await asyncio.sleep(2.5)  # even now: nobody else is asked
        assert not any(asked_to_move(s) for s in [*sockets, *moved])
        await close_all(*sockets, *moved)

    run(scenario(), timeout=90)


def asked_to_move(sock) -> dict | None:
    return next((f for f in sock.frames if f["type"] == "server_shutdown"), None)
