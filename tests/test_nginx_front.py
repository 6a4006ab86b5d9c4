"""The production front (deploy/nginx/synctv.conf.template) in front of real nodes: REST goes to
the `web` node, `/ws/` to the `ws` nodes with the upgrade, the app sees the client's address from
the front's ``X-Forwarded-For`` (``TRUSTED_PROXY_COUNT=1``), and when the `ws` node holding a
socket is stopped (SIGTERM) it drains: the socket stays open while new sockets through the same
front address land on the other node (the stopping one answers 503, nginx tries the next).

Without nginx the module fails (scripts/install-system-packages installs it)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest

from tests.procs import NGINX, holds_a_socket, procfile_command, start_front, wait_http
from tests.wsclient import Api, Cluster, PrivateRedis, close_all, db_scalar, dial, run, scratch_database

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


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
                ws = cluster.start("ws1", "ws2", WS_DRAIN_SECONDS="30")
                port, nginx = start_front(tmp, [n.port for n in web], [n.port for n in ws])
                with nginx as proc:
                    base = f"http://127.0.0.1:{port}"
                    assert (
                        wait_http(f"{base}/healthz", proc=proc, log=tmp / "nginx.log", timeout=20).status_code
                        == 200
                    )
                    yield base, ws, dsn
            finally:
                cluster.close()
    finally:
        redis.kill()


def test_rest_and_websocket_go_through_the_front_and_a_stopped_ws_node_drains(front):
    base, (ws1, ws2), dsn = front
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
