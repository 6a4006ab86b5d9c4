"""The production front (deploy/nginx/synctv.conf.template) in front of real nodes: REST goes to
the `web` node, `/ws/` to the `ws` nodes with the upgrade, the app sees the client's address from
the front's ``X-Forwarded-For`` (``TRUSTED_PROXY_COUNT=1``), and when the `ws` node holding a
socket is stopped (SIGTERM) the client's reconnect through the same front address lands on the
other node and gets its hello.

Without nginx the module fails (scripts/install-system-packages installs it)."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.procs import ROOT, free_port, procfile_command, render_template, running, wait_http
from tests.wsclient import Api, Cluster, Node, PrivateRedis, close_all, db_scalar, dial, run, scratch_database

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def start_front(stack_tmp: Path, web: list[Node], ws: list[Node]):
    """nginx from the template, unprivileged, in ``stack_tmp``; returns (port, context manager)."""
    prefix = stack_tmp / "nginx"
    for folder in ("logs", "temp"):
        (prefix / folder).mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = render_template(
        (ROOT / "deploy/nginx/synctv.conf.template").read_text(),
        {
            "LISTEN_PORT": f"127.0.0.1:{port}",
            "WEB_SERVERS": "\n".join(f"server 127.0.0.1:{n.port} max_fails=1 fail_timeout=2s;" for n in web),
            "WS_SERVERS": "\n".join(f"server 127.0.0.1:{n.port} max_fails=0;" for n in ws),
            "NGINX_PREFIX": str(prefix),
            "WORKER_PROCESSES": "1",
        },
    )
    (prefix / "nginx.conf").write_text(conf)
    check = subprocess.run(
        [NGINX, "-t", "-p", str(prefix), "-c", str(prefix / "nginx.conf")], capture_output=True
    )
    assert check.returncode == 0, check.stderr.decode()
    command = f"{NGINX} -p {prefix} -c {prefix}/nginx.conf -g 'daemon off;'"
    return port, running(command, env={"PATH": "/usr/sbin:/usr/bin:/bin"}, log=stack_tmp / "nginx.log")


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
                ws = cluster.start("ws1", "ws2")
                port, nginx = start_front(tmp, web, ws)
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


def test_rest_and_websocket_go_through_the_front_and_a_stopped_ws_node_hands_over(front):
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
        # Which node holds it? Stop that one: its notice, its close, and a reconnect through the
        # same front address lands on the other node.
        holder, other = (ws1, ws2) if _holds(ws1) else (ws2, ws1)
        holder.signal(signal.SIGTERM)
        notice = await sock.expect("server_shutdown", 10)
        assert await sock.wait_closed(10) == 1012
        await asyncio.sleep(notice["reconnect_after_ms"] / 1000)
        again = await dial(ws_url, token=owner.access, label="front-again")
        hello = await again.next(15)
        assert hello["type"] == "hello", hello
        assert hello["playback"]["version"] >= 0
        assert other.proc.poll() is None
        await close_all(again)

    run(scenario(), timeout=60)


def _holds(node: Node) -> bool:
    """Whether ``node`` has an established TCP connection on its port (the front's upstream side
    of the socket): read from /proc/net/tcp, no tool needed."""
    port = f":{node.port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(port) and fields[3] == "01":  # 01: ESTABLISHED
            return True
    return False
