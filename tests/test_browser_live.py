"""The room page plays a live stream (docs/streaming.md, docs/web.md): a member's page shows
"Waiting for the streamer…" while nobody publishes, and plays the stream through hls.js once
ffmpeg publishes a test pattern to the `rtmp` process.

The app, the `rtmp` process and ffmpeg come from tests/test_rtmp_e2e.py (its `live` fixture and
helpers); Chromium from tests/conftest.py. Skips without the tools unless CI is set: then it fails.
"""

from __future__ import annotations

import time

import pytest

from tests import browser_support as bs
from tests.procs import publish_test_pattern
from tests.test_rtmp_e2e import _create_stream, _status, _wait, live  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("browser_tools")]

WAITING = "[data-testid=live-waiting]"
SHORT_TTL = 15


def _video(page) -> dict:
    return page.evaluate(
        """() => { const v = document.querySelector('[data-testid=player]');
             return {time: v.currentTime, paused: v.paused, ready: v.readyState, src: v.src}; }"""
    )


def test_member_page_waits_for_the_streamer_then_plays_live(live, browser, tmp_path):  # noqa: F811
    created = _create_stream(live, "Browser pattern")
    stream_id, room_id = created["id"], live.room["id"]
    member = live.api.register("viewer")
    live.api.join(member, room_id)
    live.api.set_playback(live.owner, room_id, movie_id=created["movie_id"], playing=True)

    watcher = bs.open_page(browser, "viewer", account=member)
    publisher = None
    try:
        page = watcher.page
        page.goto(f"{live.server.base}/rooms/{room_id}/")
        bs.wait_connected(page)
        page.wait_for_selector(WAITING, state="visible", timeout=15_000)
        assert page.locator(WAITING).text_content() == "Waiting for the streamer…"

        publisher = publish_test_pattern(created["publish_url"], tmp_path / "ffmpeg.log", seconds=120)
        _wait(lambda: _status(live, stream_id)["live"], 10, "live", live)
        # The page notices within its poll, plays through hls.js (a blob: source), and moves on.
        page.wait_for_selector(WAITING, state="hidden", timeout=30_000)
        page.wait_for_function(
            "() => document.querySelector('[data-testid=player]').src.startsWith('blob:')", timeout=30_000
        )
        bs.wait_playing(page, timeout=45_000)
        first = _video(page)["time"]
        page.wait_for_function(
            "(t) => document.querySelector('[data-testid=player]').currentTime > t + 2",
            arg=first,
            timeout=20_000,
        )
        state = _video(page)
        assert not state["paused"] and state["ready"] >= 3, state
        assert page.locator(WAITING).is_hidden()
        assert page.locator("[data-time]").text_content() == "● LIVE"
        assert not watcher.problems, watcher.problems
    except Exception:
        print(bs.save_evidence("test_browser_live", [watcher], live.server))
        raise
    finally:
        if publisher is not None and publisher.poll() is None:
            publisher.kill()
            publisher.wait()
        watcher.close()


def test_signed_url_is_renewed_without_a_gap(live, browser, tmp_path):  # noqa: F811
    """Signed URLs valid SHORT_TTL seconds: the page renews them before they expire and hls.js
    goes on with the new signature (the same hls.js, no reload): no 403, and it keeps playing."""
    live.server.env["HLS_URL_TTL"] = str(SHORT_TTL)
    live.server.restart()
    created = _create_stream(live, "Short-lived URLs")
    room_id = live.room["id"]
    member = live.api.register("renewer")
    live.api.join(member, room_id)
    live.api.set_playback(live.owner, room_id, movie_id=created["movie_id"], playing=True)
    publisher = publish_test_pattern(created["publish_url"], tmp_path / "ffmpeg.log", seconds=120)
    watcher = bs.open_page(browser, "renewer", account=member)
    try:
        page = watcher.page
        signatures: set[str] = set()
        page.on("request", lambda r: "/hls/" in r.url and signatures.add(r.url.rsplit("/", 2)[0]))
        page.goto(f"{live.server.base}/rooms/{room_id}/")
        bs.wait_connected(page)
        bs.wait_playing(page, timeout=45_000)
        source = _video(page)["src"]
        start, wall = _video(page)["time"], time.monotonic()
        samples = []
        # Until the URL was renewed twice and playback went well past the first one's expiry
        # (what is asserted below), 3 x SHORT_TTL at most.
        while time.monotonic() - wall < 3 * SHORT_TTL and not (
            len(signatures) >= 3 and _video(page)["time"] - start > 1.5 * SHORT_TTL + 3
        ):
            samples.append(
                (
                    round(time.monotonic() - wall, 1),
                    page.evaluate(
                        """() => { const v = document.querySelector('[data-testid=player]'); const b = v.buffered;
                  return [v.currentTime.toFixed(1), b.length ? b.end(b.length - 1).toFixed(1) : null, v.readyState, v.paused]; }"""
                    ),
                )
            )
            time.sleep(1)
        played, elapsed = _video(page)["time"] - start, time.monotonic() - wall
        # Well past the first URL's expiry. Not `elapsed`: the test pattern's HLS itself stalls
        # for a few seconds about every 10 s here, reloaded or not (see the report/docs).
        assert played > 1.5 * SHORT_TTL, (played, elapsed, samples)
        assert not _video(page)["paused"]
        assert _video(page)["src"] == source  # one MediaSource throughout: never reloaded
        assert len(signatures) >= 3, signatures  # renewed twice, and hls.js used the new ones
        refused = [line for line in watcher.recent if " http 403 " in line]
        assert not refused, refused
        assert page.locator(WAITING).is_hidden()
        assert not watcher.problems, watcher.problems
    except Exception:
        print(bs.save_evidence("test_browser_live_renewal", [watcher], live.server))
        raise
    finally:
        if publisher.poll() is None:
            publisher.kill()
            publisher.wait()
        watcher.close()
