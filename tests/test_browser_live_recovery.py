"""The room page's live player recovers on its own (docs/streaming.md, static/js/room/live.js):
when the streamer stops it says "Waiting for the streamer…" and plays again once they are back;
when its signed HLS URL expired during an outage (no renewal possible) it reads the stream's
status again and goes on playing. Neither by reloading the page.

The app, the `rtmp` process and ffmpeg come from tests/test_rtmp_e2e.py (its module-scoped `live`
fixture: this module gets its own app and `rtmp` process); Chromium from tests/conftest.py. Skips
without the tools unless CI is set: then it fails.
"""

from __future__ import annotations

import json
import time

import pytest

from tests import browser_support as bs
from tests.procs import publish_test_pattern
from tests.test_browser_live import WAITING, _video
from tests.test_rtmp_e2e import _create_stream, _status, _wait, live  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("browser_tools")]

SHORT_TTL = 15
STATUS_READS = "**/api/v1/rooms/*/streams/*"
# A marker set once the page has loaded: a reload or a navigation would lose it.
MARK = (
    "() => { window.__recoveryMark = 'same page'; return performance.getEntriesByType('navigation').length; }"
)
SAME_PAGE = """() => [window.__recoveryMark, performance.getEntriesByType('navigation').length,
                      performance.getEntriesByType('navigation')[0].type]"""
ADVANCING = "(t) => document.querySelector('[data-testid=player]').currentTime > t"
STALLED = "() => document.querySelector('[data-testid=player]').readyState < 3"
# Observation only (evidence when a test fails): hls.js's error events, fatal or not, as the page's
# Player gets them, by wrapping Hls.prototype.trigger when the vendored script sets window.Hls.
HLS_ERRORS = """(() => {
  let hls;
  window.__hlsErrors = [];
  Object.defineProperty(window, 'Hls', { configurable: true, get: () => hls, set: (value) => {
    hls = value;
    const trigger = value.prototype.trigger;
    value.prototype.trigger = function (event, data) {
      if (event === value.Events.ERROR && data) {
        window.__hlsErrors.push({ at: Math.round(performance.now()), details: data.details,
                                  fatal: data.fatal, code: data.response ? data.response.code : null });
      }
      return trigger.apply(this, arguments);
    };
  } });
})();"""


def _watch(live, name: str, movie_id: str):  # noqa: F811
    """A member of the room, which plays ``movie_id``."""
    room_id = live.room["id"]
    member = live.api.register(name)
    live.api.join(member, room_id)
    live.api.set_playback(live.owner, room_id, movie_id=movie_id, playing=True)
    return member


def _stop(publisher) -> None:
    if publisher is not None and publisher.poll() is None:
        publisher.kill()
        publisher.wait()


def _plays_on(page, seconds: float, timeout: float) -> float:
    """The player plays and its position moves on by ``seconds``; returns where it got."""
    bs.wait_playing(page, timeout=timeout)
    start = _video(page)["time"]
    page.wait_for_function(ADVANCING, arg=start + seconds, timeout=timeout)
    state = _video(page)
    assert not state["paused"] and state["ready"] >= 3 and state["src"].startswith("blob:"), state
    return state["time"]


def _recovered(page, watcher, *, waited_up_to: float, plays_for: float) -> None:
    """The page left "waiting" within ``waited_up_to`` ms, plays on by ``plays_for`` s, was
    never reloaded and logged no problem."""
    page.wait_for_selector(WAITING, state="hidden", timeout=waited_up_to)
    _plays_on(page, plays_for, timeout=45_000)
    assert page.locator(WAITING).is_hidden()
    assert page.evaluate(SAME_PAGE) == ["same page", 1, "navigate"]  # never reloaded
    assert not watcher.problems, watcher.problems


def _timeline(page, t0: float) -> list[str]:
    """The page's HLS and status traffic, seconds since ``t0``: printed when a test fails."""
    lines: list[str] = []

    def add(what: str) -> None:
        lines.append(f"{time.monotonic() - t0:6.1f} {what}")

    page.on("response", lambda r: ("/hls/" in r.url or "/streams/" in r.url) and add(f"{r.status} {r.url}"))
    page.on("requestfailed", lambda r: "/streams/" in r.url and add(f"failed {r.url}"))
    return lines


def _evidence(name: str, watcher, server, timeline: list[str]) -> None:
    try:
        errors = watcher.page.evaluate("window.__hlsErrors")
    except Exception as exc:  # a closed page is evidence too
        errors = f"unreadable: {exc}"
    print("\n".join(timeline[-80:]), f"\nhls.js errors: {errors}")
    print(bs.save_evidence(name, [watcher], server))


def test_streamer_stops_then_comes_back_without_a_reload(live, browser, tmp_path):  # noqa: F811
    created = _create_stream(live, "Comes and goes")
    stream_id, room_id = created["id"], live.room["id"]
    member = _watch(live, "returner", created["movie_id"])
    watcher = bs.open_page(browser, "returner", account=member)
    publisher = publish_test_pattern(created["publish_url"], tmp_path / "first.log", seconds=120)
    page, t0 = watcher.page, time.monotonic()
    timeline = _timeline(page, t0)
    changes: list[dict] = []

    def on_socket(ws) -> None:
        def on_frame(payload) -> None:
            if isinstance(payload, str) and '"publisher_changed"' in payload:
                changes.append(json.loads(payload))
                timeline.append(f"{time.monotonic() - t0:6.1f} ws {payload}")

        ws.on("framereceived", on_frame)

    try:
        page.add_init_script(HLS_ERRORS)
        page.on("websocket", on_socket)
        _wait(lambda: _status(live, stream_id)["live"], 10, "live", live)
        page.goto(f"{live.server.base}/rooms/{room_id}/")
        bs.wait_connected(page)
        _plays_on(page, 2, timeout=45_000)
        assert page.locator(WAITING).is_hidden()
        assert page.evaluate(MARK) == 1

        timeline.append(f"{time.monotonic() - t0:6.1f} publisher killed")
        _stop(publisher)
        # Bound 8 s: killing ffmpeg closes its RTMP connection at once, nginx calls
        # on_publish_done, and Django (the same process as the sockets) sends `publisher_changed`
        # with node "" (about 0.1 s after the kill here); the page then reads the status ("not
        # live") at once. 8 s also covers one lost message plus live.js's own retry and poll
        # (RETRY_MS 2 s + POLL_MS 3 s), but not a page that only notices when nginx finally drops
        # the stale playlist (hls_cleanup: tens of seconds).
        page.wait_for_selector(WAITING, state="visible", timeout=8_000)
        assert page.locator(WAITING).text_content() == "Waiting for the streamer…"
        assert not _status(live, stream_id)["live"]
        assert {"stream_id": stream_id, "node": ""}.items() <= changes[-1].items(), changes

        publisher = publish_test_pattern(created["publish_url"], tmp_path / "again.log", seconds=120)
        _wait(lambda: _status(live, stream_id)["live"], 10, "live again", live)
        # The page polls every POLL_MS while waiting; the stream's first segment takes a few s.
        _recovered(page, watcher, waited_up_to=30_000, plays_for=2)
    except Exception:
        _evidence("test_browser_live_recovery_comeback", watcher, live.server, timeline)
        raise
    finally:
        _stop(publisher)
        watcher.close()


@pytest.fixture
def short_ttl(live):  # noqa: F811
    """The app restarted with signed URLs valid SHORT_TTL seconds, and restarted with the
    module's setting again afterwards: the tests of this module do not depend on their order.
    (The `live` fixture is this module's own, so no other module sees either restart.)"""
    previous = live.server.env.get("HLS_URL_TTL")
    live.server.env["HLS_URL_TTL"] = str(SHORT_TTL)
    live.server.restart()
    yield SHORT_TTL
    if previous is None:
        live.server.env.pop("HLS_URL_TTL", None)
    else:
        live.server.env["HLS_URL_TTL"] = previous
    live.server.restart()


def test_expired_signed_url_is_recovered_after_an_outage(live, browser, tmp_path, short_ttl):  # noqa: F811
    created = _create_stream(live, "Outage")
    stream_id, room_id = created["id"], live.room["id"]
    member = _watch(live, "outaged", created["movie_id"])
    watcher = bs.open_page(browser, "outaged", account=member)
    publisher = publish_test_pattern(created["publish_url"], tmp_path / "ffmpeg.log", seconds=180)
    page, t0 = watcher.page, time.monotonic()
    timeline = _timeline(page, t0)
    refused: list[str] = []
    blocked: list[float] = []

    def on_response(response) -> None:
        if response.status == 403 and "/hls/" in response.url:
            refused.append(response.url)

    def abort(route) -> None:
        blocked.append(time.monotonic())
        route.abort()

    try:
        page.add_init_script(HLS_ERRORS)
        page.on("response", on_response)
        _wait(lambda: _status(live, stream_id)["live"], 10, "live", live)
        page.goto(f"{live.server.base}/rooms/{room_id}/")
        bs.wait_connected(page)
        _plays_on(page, 2, timeout=45_000)
        assert page.evaluate(MARK) == 1
        assert not refused, refused

        # The outage, at the browser's network boundary: every status read fails, so the page
        # cannot renew its signed URL (due 10 s into SHORT_TTL) and the one it has expires.
        outage = time.monotonic()
        timeline.append(f"{outage - t0:6.1f} outage begins")
        page.route(STATUS_READS, abort)
        # nginx refuses the expired URL (the playlist refresh hls.js makes every second)...
        page.wait_for_event(
            "response", predicate=lambda r: r.status == 403 and "/hls/" in r.url, timeout=2 * short_ttl * 1000
        )
        # ... the player runs dry (nothing more can be fetched) ...
        page.wait_for_function(STALLED, timeout=30_000)
        # ... and the outage lasts longer than the TTL: until a status read fails more than
        # SHORT_TTL s after it began (live.js retries a failed read every RETRY_MS, 2 s).
        page.wait_for_event(
            "requestfailed",
            predicate=lambda r: "/streams/" in r.url and time.monotonic() - outage > short_ttl,
            timeout=(short_ttl + 15) * 1000,
        )
        page.unroute(STATUS_READS)
        timeline.append(f"{time.monotonic() - t0:6.1f} outage ends")
        assert blocked and blocked[-1] - outage > short_ttl, blocked
        assert refused, "no HLS request was refused"

        _recovered(page, watcher, waited_up_to=10_000, plays_for=3)
    except Exception:
        _evidence("test_browser_live_recovery_expired", watcher, live.server, timeline)
        raise
    finally:
        _stop(publisher)
        watcher.close()
