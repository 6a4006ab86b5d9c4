"""A room page whose `ws` node stops moves to the other node without a break (docs/realtime.md,
"Shutdown"): two servers on one PostgreSQL and one Redis behind the production nginx front, a real
Chromium. The node that holds the page's socket gets SIGTERM: the page opens its new socket
through the front beside the old one, closes the old one once the new hello came, never shows
"reconnecting", and the stopped node exits as soon as the page has left it, long before its drain
would end. The room works afterwards through the new socket.

Without Chromium or nginx the module skips, unless CI is set: then it fails.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests import browser_support as bs
from tests.procs import NGINX, free_port, holds_a_socket, start_front, wait_http
from tests.wsclient import PrivateRedis, report, scratch_database

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.usefixtures("browser_tools"),
]

DRAIN_SECONDS = 30


@pytest.fixture
def two_nodes_behind_the_front(tmp_path):
    if not Path(NGINX).exists():
        pytest.fail("nginx not found: scripts/install-system-packages installs it")
    redis = PrivateRedis()
    redis.start()
    try:
        with scratch_database() as dsn:
            port = free_port()
            front = f"http://127.0.0.1:{port}"
            servers = []
            for name in ("a", "b"):
                (tmp_path / name).mkdir()
                server = bs.Server(tmp_path / name)
                server.env.update(
                    DATABASE_URL=dsn,
                    REDIS_URL=redis.url(0),
                    CELERY_BROKER_URL=redis.url(1),
                    SYNCTV_VAR_DIR=str(tmp_path / "var"),  # one signing key for both
                    SYNCTV_NODE_ID=f"node-{name}",
                    PUBLIC_URL=front,
                    CORS_ALLOWED_ORIGINS=front,
                    TRUSTED_PROXY_COUNT="1",
                    WS_DRAIN_SECONDS=str(DRAIN_SECONDS),
                )
                servers.append(server)
            servers[0].migrate()
            for server in servers:
                server.start()
            ports = [s.port for s in servers]
            _, nginx = start_front(tmp_path, ports, ports, port=port)
            with nginx as proc:
                wait_http(f"{front}/healthz", proc=proc, log=tmp_path / "nginx.log", timeout=20)
                yield front, servers
            for server in servers:
                server.stop()
    finally:
        redis.kill()


def test_a_page_moves_to_the_other_node_without_a_break(browser, two_nodes_behind_the_front):
    front, servers = two_nodes_behind_the_front
    api = bs.Api(front)
    alice = api.register("alice")
    room = api.create_room(alice, "through a drain")
    watcher = bs.open_page(browser, "alice", account=alice)
    page = watcher.page
    try:
        page.goto(f"{front}/rooms/{room['id']}/")
        bs.wait_connected(page)
        time.sleep(0.5)  # the page's REST calls are over: the one connection left is its socket
        holder, other = servers if holds_a_socket(servers[0].port) else reversed(servers)
        assert holds_a_socket(holder.port) and not holds_a_socket(other.port)
        page.evaluate(
            """() => { window.__states = [];
                new MutationObserver(() => window.__states.push(
                  document.querySelector('[data-testid=connection-state]').textContent))
                .observe(document.querySelector('[data-testid=connection-state]'), {childList: true}); }"""
        )

        stopped_at = time.monotonic()
        os.killpg(holder.proc.pid, signal.SIGTERM)
        assert holder.proc.wait(timeout=DRAIN_SECONDS) in (0, -signal.SIGTERM), holder.log_tail()
        exited_after = time.monotonic() - stopped_at
        # Exited because the page left, not because the drain ran out.
        assert exited_after < DRAIN_SECONDS / 2, exited_after
        states = page.evaluate("window.__states")  # the new hello says "connected" again
        assert set(states) <= {"connected"}, states
        assert page.get_by_test_id("connection-state").inner_text() == "connected"
        assert holds_a_socket(other.port)

        # The room goes on through the new socket.
        page.get_by_test_id("chat-input").fill("after the move")
        page.get_by_test_id("chat-send").click()
        page.get_by_test_id("chat-message").filter(has_text="after the move").wait_for(timeout=10_000)
        assert not watcher.problems, watcher.problems
        report("drain: page moved, node exited after SIGTERM", f"{exited_after:.1f} s")
    finally:
        watcher.close()
