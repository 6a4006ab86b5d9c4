"""Live streams end to end: the app (uvicorn, embedded default) and the Procfile's `rtmp` process
(scripts/rtmp: nginx with Debian's RTMP module) on free ports, ffmpeg publishing a generated test
pattern, viewers fetching HLS through signed URLs (docs/streaming.md).

Skips without nginx, its RTMP module or ffmpeg unless CI is set: then it fails.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urljoin

import httpx
import pytest

from apps.streaming import hls
from tests.browser_support import Api, Server
from tests.procs import publish_test_pattern, wait_until

pytestmark = [pytest.mark.slow]

MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"
LIVE_WITHIN = 10.0


HLS_SECRET = secrets.token_urlsafe(32)


def _require_tools() -> None:
    missing = [
        tool
        for tool in ("nginx", "ffmpeg")
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists()
    ]
    if not Path(MODULE).exists():
        missing.append("libnginx-mod-rtmp")
    if missing:
        message = f"the RTMP end-to-end test needs {', '.join(missing)} (scripts/install-system-packages)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[SimpleNamespace]:
    """The app and the `rtmp` process sharing one var/ and one environment (so one secret key,
    and the secrets derived from it); the HLS signing secret is set, so the test can sign URLs."""
    _require_tools()
    tmp = tmp_path_factory.mktemp("rtmp-e2e")
    server = Server(tmp)
    server.add_rtmp_settings()
    server.env.update(HLS_SIGNING_SECRET=HLS_SECRET, LOG_LEVEL="INFO")
    server.migrate()
    server.start()
    rtmp_log = tmp / "rtmp.log"
    with ExitStack() as stack:
        stack.callback(server.stop)
        proc = server.start_rtmp(stack, rtmp_log)
        api = Api(server.base)
        owner = api.register("streamer")
        room = api.create_room(owner, "Live room")
        yield SimpleNamespace(
            server=server, api=api, owner=owner, room=room, rtmp=proc, rtmp_log=rtmp_log, var=tmp / "var"
        )


def _create_stream(live, name: str) -> dict:
    created = live.api.call(
        "POST", f"rooms/{live.room['id']}/streams", live.owner, {"name": name}, expect=201
    )
    assert created["publish_url"] == f"{live.server.env['RTMP_URL']}/{created['stream_key']}"
    return created


def _status(live, stream_id: str, who=None, expect=200) -> dict:
    return live.api.call(
        "GET", f"rooms/{live.room['id']}/streams/{stream_id}", who or live.owner, expect=expect
    )


def _wait(predicate, timeout: float, what: str, live):
    """``wait_until`` every 0.2 s; a failure shows the server's and nginx-rtmp's logs."""

    def logs() -> str:
        return f"{live.server.log_tail()}\n{live.rtmp_log.read_text()[-3000:]}"

    return wait_until(predicate, timeout, 0.2, what, context=logs)


def _playlist_with_segment(url: str) -> str | None:
    response = httpx.get(url, timeout=5)
    return response.text if response.status_code == 200 and ".ts" in response.text else None


def test_wrong_key_is_refused_by_on_publish(live, tmp_path):
    _require_tools()
    created = _create_stream(live, "Refused")
    wrong = created["publish_url"][:-4] + ("AAAA" if not created["publish_url"].endswith("AAAA") else "BBBB")
    publisher = publish_test_pattern(wrong, tmp_path / "ffmpeg.log", seconds=5)
    assert publisher.wait(timeout=30) != 0
    assert "Connection refused" not in (tmp_path / "ffmpeg.log").read_text()  # refused by Django
    assert _status(live, created["id"])["live"] is False
    assert not (live.var / "rtmp" / "hls" / created["id"]).exists()


def _refused_urls(live, good: str, stream_id: str) -> dict[str, str]:
    head, sig, expires, name, file = good.rsplit("/", 4)
    secret = HLS_SECRET
    past = int(time.time()) - 5
    return {
        "unsigned": f"{live.server.env['HLS_PUBLIC_URL']}/hls/{stream_id}/index.m3u8",
        "altered": "/".join([head, ("A" if sig[0] != "A" else "B") + sig[1:], expires, name, file]),
        "expired": "/".join([head, hls.signature(stream_id, past, secret), str(past), name, file]),
        "prolonged": "/".join([head, sig, str(int(expires) + 600), name, file]),
        "another stream's": "/".join([head, sig, expires, "x" + name[1:], file]),
    }


def test_publish_goes_live_and_members_watch_through_signed_urls(live, tmp_path):
    created = _create_stream(live, "Pattern")
    stream_id, key = created["id"], created["stream_key"]
    member, outsider = live.api.register("member"), live.api.register("outsider")
    live.api.join(member, live.room["id"])
    publisher = publish_test_pattern(created["publish_url"], tmp_path / "ffmpeg.log", seconds=60)
    try:
        _wait(lambda: _status(live, stream_id)["live"], LIVE_WITHIN, "live", live)
        status = _status(live, stream_id, member)
        assert status["ingest_running"] is True and status["publisher_node"]
        url = status["playback_url"]
        assert key not in url and f"/{stream_id}/index.m3u8" in url
        _wait(lambda: _playlist_with_segment(url), 20, "a playlist with a segment", live)
        segment_name = next(line for line in _playlist_with_segment(url).splitlines() if line.endswith(".ts"))
        segment = httpx.get(urljoin(url, segment_name), timeout=5)
        assert segment.status_code == 200 and segment.content[:1] == b"G"  # MPEG-TS sync byte
        for what, refused in _refused_urls(live, url, stream_id).items():
            assert httpx.get(refused, timeout=5).status_code == 403, what
        _status(live, stream_id, outsider, expect=(403, 404))
        anonymous = live.api.client.get(f"rooms/{live.room['id']}/streams/{stream_id}")
        assert anonymous.status_code in (401, 403)
        assert os.listdir(live.var / "rtmp" / "hls") and all(
            key not in n for n in os.listdir(live.var / "rtmp" / "hls")
        )
    finally:
        publisher.kill()
        publisher.wait()
    _wait(lambda: not _status(live, stream_id)["live"], 15, "not live after the publisher left", live)
    for log in (live.server.log, live.rtmp_log):
        assert key not in log.read_text(errors="replace"), log


def test_rotated_key_cuts_the_publisher_and_is_refused(live, tmp_path):
    created = _create_stream(live, "Rotated")
    stream_id, old_url = created["id"], created["publish_url"]
    publisher = publish_test_pattern(old_url, tmp_path / "first.log", seconds=60)
    try:
        _wait(lambda: _status(live, stream_id)["live"], LIVE_WITHIN, "live", live)
        path = f"rooms/{live.room['id']}/streams/{stream_id}/rotate-key"
        rotated = live.api.call("POST", path, live.owner, expect=200)
        assert rotated["publish_url"] != old_url
        assert publisher.wait(timeout=15) != 0  # cut through the control port
        assert _status(live, stream_id)["live"] is False
    finally:
        if publisher.poll() is None:
            publisher.kill()
            publisher.wait()
    again = publish_test_pattern(old_url, tmp_path / "again.log", seconds=5)
    assert again.wait(timeout=30) != 0
    assert _status(live, stream_id)["live"] is False
