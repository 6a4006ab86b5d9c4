"""Security of the web pages in a real browser (Debian's headless Chromium through Playwright,
a real uvicorn server on the embedded default; tests/browser_support.py):

- after logging in, ``/login/?next=`` sends the browser only to a page of this site: hostile
  forms (a tab that the URL parser drops, ``//host``, a backslash, another origin,
  ``javascript:``, dot segments that collapse to ``//host``) end on this site, never elsewhere;
  a good ``next`` is followed with its query and fragment;
- ``/api/docs/`` (Swagger UI) loads only files from this site and renders under the site's
  strict Content-Security-Policy with no violation;
- ``PORT=<another port> scripts/run``, nothing else set: the room page's WebSocket passes the
  Origin check (the default allow-list follows PORT), so the page reaches ``connected`` on
  ``127.0.0.1`` and ``localhost``.

Without Chromium the module skips, unless CI is set: then it fails.
"""

from __future__ import annotations

import time
from urllib.parse import quote, urlsplit

import pytest

from tests import browser_support as bs
from tests.procs import VENV_BIN, base_env, free_port, running, wait_http

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("browser_tools")]

# Raw query values, as an attacker writes them in a link (so %09 reaches the page as a tab).
HOSTILE_NEXT = [
    "/%09/evil.example/phish",
    "/%0A/evil.example",
    "//evil.example",
    "/\\evil.example",
    "https://evil.example",
    "javascript:alert(1)",
    "%2F%2Fevil.example",
    "/.//evil.example",
    "/%2e//evil.example",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with bs.serving(tmp_path_factory.mktemp("browser-security-server")) as srv:
        yield srv


@pytest.fixture(scope="module")
def account(server):
    return bs.Api(server.base).register("redirected")


class Visit:
    """A fresh page that may not leave the server's origin: every request elsewhere is
    recorded and aborted (no network for evil.example), and so is every dialog."""

    def __init__(self, browser, server, name: str) -> None:
        self.watcher = bs.open_page(browser, name)
        self.page = self.watcher.page
        self.left: list[str] = []
        self.dialogs: list[str] = []
        origin = server.base

        def guard(route) -> None:
            self.left.append(route.request.url)
            route.abort()

        self.watcher.context.route(lambda url: not url.startswith(origin + "/"), guard)
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))

    def close(self) -> None:
        self.watcher.close()


def _log_in_with_next(browser, server, raw_next: str, name: str) -> Visit:
    visit = Visit(browser, server, name)
    page = visit.page
    page.goto(f"{server.base}/login/?next={raw_next}")
    page.fill("input[name=username]", "redirected")
    page.fill("input[name=password]", bs.PASSWORD)
    page.get_by_test_id("auth-submit").click()
    # Wait until the page went somewhere: off the log-in page, or an attempt elsewhere.
    # (page.wait_for_timeout, not time.sleep: Playwright's events are delivered while it waits.)
    deadline = time.monotonic() + 10
    while not (visit.left or visit.dialogs or urlsplit(page.url).path != "/login/"):
        assert time.monotonic() < deadline, f"no navigation after logging in with next={raw_next!r}"
        page.wait_for_timeout(50)
    page.wait_for_timeout(300)  # a second hop (if any) would show here
    return visit


@pytest.mark.parametrize("raw_next", HOSTILE_NEXT)
def test_login_never_redirects_off_the_site(raw_next, server, browser, account):
    visit = _log_in_with_next(browser, server, raw_next, "redirect")
    try:
        assert not visit.left, f"next={raw_next!r} sent the browser to {visit.left}"
        assert not visit.dialogs, f"next={raw_next!r} ran script: {visit.dialogs}"
        url = visit.page.url
        assert url.startswith(server.base + "/"), f"next={raw_next!r} ended on {url}"
        assert url == f"{server.base}/", f"next={raw_next!r} ended on {url}, expected the room list"
        assert not visit.watcher.problems, visit.watcher.problems
    finally:
        visit.close()


def test_login_follows_a_path_on_the_site(server, browser, account):
    wanted = "/rooms/abc/?x=1#y"
    visit = _log_in_with_next(browser, server, quote(wanted, safe=""), "good-next")
    try:
        visit.page.wait_for_url(f"{server.base}{wanted}")
        assert not visit.left, visit.left
    finally:
        visit.close()


def test_api_docs_render_from_this_site_under_the_csp(server, browser):
    visit = Visit(browser, server, "api-docs")
    try:
        response = visit.page.goto(f"{server.base}/api/docs/")
        assert response.status == 200
        assert "script-src 'self'" in (response.headers.get("content-security-policy") or "")
        # Swagger UI ran and read the schema: the operations are listed.
        visit.page.locator(".opblock-summary-path", has_text="/api/v1/auth/login").first.wait_for()
        assert not visit.left, f"/api/docs/ fetched from other hosts: {visit.left}"
        assert not visit.watcher.problems, visit.watcher.problems
    finally:
        visit.close()


def test_room_page_connects_on_a_server_started_on_another_port(browser, tmp_path):
    """The README's `scripts/run` with only PORT changed: no origin, host or URL configured."""
    port = free_port()
    env = base_env(PORT=str(port), SYNCTV_VAR_DIR=str(tmp_path / "var"), SYNCTV_VENV=str(VENV_BIN.parent))
    for name in ("CORS_ALLOWED_ORIGINS", "PUBLIC_URL", "WS_PUBLIC_URL", "ALLOWED_HOSTS", "HOST"):
        env.pop(name, None)
    log = tmp_path / "run.log"
    watchers: list[bs.Watcher] = []
    with running("scripts/run", env=env, log=log) as proc:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc=proc, log=log, timeout=180)
        api = bs.Api(f"http://127.0.0.1:{port}")
        owner = api.register("porter")
        room = api.create_room(owner, "Another port")["id"]
        try:
            for host in ("127.0.0.1", "localhost"):
                watcher = bs.open_page(browser, f"port-{host}", account=owner)
                watchers.append(watcher)
                watcher.page.goto(f"http://{host}:{port}/rooms/{room}/")
                bs.wait_connected(watcher.page)
                assert not watcher.problems, watcher.problems
        except Exception as exc:
            evidence = bs.save_evidence("room_page_on_another_port", watchers, None)
            raise AssertionError(f"{exc}\n{evidence}\nserver:\n{log.read_text()[-3000:]}") from exc
        finally:
            for watcher in watchers:
                watcher.close()
