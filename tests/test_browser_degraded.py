"""The room page while PostgreSQL is down (docs/security.md, "When PostgreSQL is down"), in a real
browser against a real server whose database sits behind a TCP proxy the test cuts and restores
(tests/tcpproxy.py): a chat sent during the outage brings up the "service degraded" banner, the
page stays connected, and once the database is back the banner goes by itself and chat works.

Without Chromium the module skips, unless CI is set: then it fails.
"""

from __future__ import annotations

import pytest

from tests import browser_support as bs
from tests.tcpproxy import TcpProxy
from tests.wsclient import scratch_database

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.usefixtures("browser_tools")]


def test_the_banner_shows_while_the_database_is_down_and_goes_when_it_is_back(browser, tmp_path):
    with scratch_database() as dsn:
        address, name = dsn.rsplit("/", 1)
        host, port = address.rsplit(":", 1)
        proxy = TcpProxy(int(port)).start()
        try:
            proxied = f"{host}:{proxy.port}/{name}"
            with bs.serving(tmp_path, DATABASE_URL=proxied, DB_BREAKER_RESET_SECONDS="1") as server:
                api = bs.Api(server.base)
                alice = api.register("alice")
                room = api.create_room(alice, "through an outage")
                watcher = bs.open_page(browser, "alice", account=alice)
                page = watcher.page
                try:
                    page.goto(f"{server.base}/rooms/{room['id']}/")
                    bs.wait_connected(page)
                    banner = page.get_by_test_id("degraded-banner")
                    assert banner.is_hidden()

                    proxy.cut()
                    page.get_by_test_id("chat-input").fill("while down")
                    page.get_by_test_id("chat-send").click()
                    banner.wait_for(state="visible", timeout=10_000)
                    assert page.get_by_test_id("connection-state").inner_text() == "connected"

                    proxy.restore()
                    banner.wait_for(state="hidden", timeout=10_000)  # /readyz every 3 s
                    page.get_by_test_id("chat-input").fill("back again")
                    page.get_by_test_id("chat-send").click()
                    messages = page.get_by_test_id("chat-message")
                    messages.filter(has_text="back again").wait_for(timeout=10_000)
                    assert "while down" not in page.get_by_test_id("chat-log").inner_text()
                finally:
                    watcher.close()
        finally:
            proxy.stop()
