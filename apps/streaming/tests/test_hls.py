"""Signed HLS URLs and the `rtmp` process's config, checked against the real nginx that serves
them (deploy/rtmp/nginx.conf.template, rendered by apps.streaming.ingest)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from apps.streaming import hls, ingest
from tests.procs import free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"
SECRET = "test-signing-secret-0123456789abcdef"
ORIGIN = "http://127.0.0.1:8000"
PLAYLIST = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.000,\n7.ts\n"
SEGMENT = b"G" + bytes(187)  # one MPEG-TS packet


def _require_nginx() -> None:
    if Path(NGINX).is_file() and Path(MODULE).is_file():
        return
    message = "nginx with the RTMP module is missing (scripts/install-system-packages)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _stream(stream_id: str = "aBc-123_xyz45678") -> SimpleNamespace:
    return SimpleNamespace(id=stream_id)


# --- the signature ----------------------------------------------------------------------------


@override_settings(HLS_SIGNING_SECRET=SECRET, HLS_PUBLIC_URL="https://hls.example", HLS_URL_TTL=600)
def test_playlist_url_carries_signature_expiry_and_id_in_its_path():
    now = 1_800_000_000
    url = hls.signed_playlist_url(_stream(), object(), now=now)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.query) == ("https", "hls.example", "")
    _, prefix, sig, expires, name, file = parts.path.split("/")
    assert (prefix, expires, name, file) == ("hls", str(now + 600), "aBc-123_xyz45678", "index.m3u8")
    assert sig == hls.signature("aBc-123_xyz45678", now + 600)
    assert len(sig) == 22 and "=" not in sig


@override_settings(HLS_SIGNING_SECRET=SECRET)
def test_signature_depends_on_stream_expiry_and_secret():
    base = hls.signature("s1", 100)
    assert base == hls.signature("s1", 100)
    assert (
        len({base, hls.signature("s2", 100), hls.signature("s1", 101), hls.signature("s1", 100, "x" * 20)})
        == 4
    )


@override_settings(HLS_URL_TTL=600)
def test_playlist_url_expires_within_ten_minutes():
    before = time.time()
    expires = int(hls.signed_playlist_url(_stream(), None).split("/")[-3])
    assert before < expires <= time.time() + 600


# --- the config -------------------------------------------------------------------------------


def test_render_refuses_a_placeholder_without_value():
    assert ingest.render("a ${ONE} b", {"ONE": "1"}) == "a 1 b"
    assert ingest.render("keep $nginx_var and ${lower}", {}) == "keep $nginx_var and ${lower}"
    with pytest.raises(ImproperlyConfigured, match="TWO"):
        ingest.render("${ONE} ${TWO}", {"ONE": "1"})


@pytest.mark.parametrize(
    "secret", ["short", 'has"quote-0123456789', "dollar$var-0123456789", "semi;colon-0123456789"]
)
def test_config_refuses_a_signing_secret_nginx_cannot_hold(tmp_path, secret):
    _require_nginx()
    with (
        override_settings(HLS_SIGNING_SECRET=secret),
        pytest.raises(ImproperlyConfigured, match="HLS_SIGNING"),
    ):
        ingest.config_values(tmp_path)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1:8000",
        "http://127.0.0.1:8000/prefix",
        "http://127.0.0.1:8000/?a=b",
        "127.0.0.1:8000",
    ],
)
def test_config_refuses_a_callback_url_nginx_rtmp_cannot_call(tmp_path, url):
    _require_nginx()
    with (
        override_settings(RTMP_CALLBACK_URL=url),
        pytest.raises(ImproperlyConfigured, match="RTMP_CALLBACK_URL"),
    ):
        ingest.config_values(tmp_path)


def test_config_refuses_a_missing_module(tmp_path):
    with override_settings(RTMP_NGINX_MODULE=str(tmp_path / "none.so")), pytest.raises(ImproperlyConfigured):
        ingest.config_values(tmp_path)


def test_rendered_config_is_private_complete_and_valid_for_nginx(tmp_path):
    _require_nginx()
    callback_secret = "a/b+c=d&e"
    with override_settings(RTMP_CALLBACK_SECRET=callback_secret, HLS_SIGNING_SECRET=SECRET):
        path = ingest.write_config(tmp_path / "rtmp")
    text = path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600
    assert "${" not in text
    assert "?secret=a%2Fb%2Bc%3Dd%26e;" in text and callback_secret not in text
    checked = subprocess.run(
        [NGINX, "-t", "-p", str(path.parent), "-e", "stderr", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stderr


# --- no ingest process ------------------------------------------------------------------------


def test_without_ingest_nothing_is_cut_and_it_says_so(caplog):
    with override_settings(RTMP_CONTROL_PORT=free_port()), caplog.at_level(logging.WARNING):
        assert ingest.ingest_running() is False
        assert ingest.cut_publisher(_stream("s-not-running")) is False
    assert "ingest not running" in caplog.text and "s-not-running" in caplog.text


# --- the real nginx ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hls_server(tmp_path_factory):
    """The rendered config running in nginx, with a playlist and a segment of two streams."""
    _require_nginx()
    run_dir = tmp_path_factory.mktemp("rtmp")
    ports = {"RTMP_PORT": free_port(), "HLS_PORT": free_port(), "RTMP_CONTROL_PORT": free_port()}
    overrides = override_settings(
        **ports,
        HLS_SIGNING_SECRET=SECRET,
        HLS_PUBLIC_URL=f"http://127.0.0.1:{ports['HLS_PORT']}",
        CORS_ALLOWED_ORIGINS=[ORIGIN],
    )
    overrides.enable()
    conf = ingest.write_config(run_dir)
    for name in ("stream-one", "stream-two"):
        (run_dir / "hls" / name).mkdir()
        (run_dir / "hls" / name / "index.m3u8").write_text(PLAYLIST)
        (run_dir / "hls" / name / "7.ts").write_bytes(SEGMENT)
    proc = subprocess.Popen(
        [NGINX, "-p", str(run_dir), "-e", "stderr", "-c", str(conf), "-g", "daemon off;"],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while not ingest.ingest_running():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "nginx did not come up"
            time.sleep(0.1)
        yield SimpleNamespace(base=f"http://127.0.0.1:{ports['HLS_PORT']}", run_dir=run_dir)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        overrides.disable()


def _get(url: str, origin: str | None = ORIGIN) -> httpx.Response:
    return httpx.get(url, headers={"Origin": origin} if origin else {}, timeout=5)


def test_member_fetches_playlist_and_segment_through_the_signed_url(hls_server):
    playlist_url = hls.signed_playlist_url(_stream("stream-one"), object())
    playlist = _get(playlist_url)
    assert playlist.status_code == 200
    assert playlist.text == PLAYLIST
    assert playlist.headers["content-type"] == "application/vnd.apple.mpegurl"
    assert playlist.headers["access-control-allow-origin"] == ORIGIN
    segment = _get(urljoin(playlist_url, "7.ts"))  # what hls.js does with the playlist's entry
    assert segment.status_code == 200
    assert segment.content == SEGMENT
    assert segment.headers["content-type"] == "video/mp2t"


def test_other_origins_get_no_cors_header(hls_server):
    response = _get(hls.signed_playlist_url(_stream("stream-one"), None), origin="https://evil.example")
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


def _with(url: str, *, sig: str | None = None, expires: str | None = None, name: str | None = None) -> str:
    head, _, old_sig, old_expires, old_name, file = url.rsplit("/", 5)
    return "/".join([head, "hls", sig or old_sig, expires or old_expires, name or old_name, file])


def test_unsigned_altered_expired_or_borrowed_urls_are_refused(hls_server):
    good = hls.signed_playlist_url(_stream("stream-one"), None)
    sig = good.split("/")[-4]
    altered = ("A" if sig[0] != "A" else "B") + sig[1:]
    expired = hls.signed_playlist_url(_stream("stream-one"), None, now=time.time() - 601)
    other = hls.signed_playlist_url(_stream("stream-two"), None)
    refused = {
        "unsigned": f"{hls_server.base}/hls/stream-one/index.m3u8",
        "unsigned file": f"{hls_server.base}/stream-one/index.m3u8",
        "altered": _with(good, sig=altered),
        "later expiry": _with(good, expires=str(int(good.split("/")[-3]) + 60)),
        "expired": expired,
        "another stream's signature": _with(other, name="stream-one"),
        "another file": good.replace("index.m3u8", "../stream-two/index.m3u8"),
        "not hls": good.replace("index.m3u8", "nginx.conf"),
    }
    for what, url in refused.items():
        assert _get(url).status_code == 403, what
    # hls.js reads a refusal's status (to fetch a fresh URL) only if CORS lets it see the answer.
    refusal = _get(refused["expired"])
    assert refusal.headers["access-control-allow-origin"] == ORIGIN
    assert _get(good).status_code == 200
    assert _get(other).status_code == 200


def test_control_port_answers_and_nothing_to_cut(hls_server):
    assert ingest.ingest_running() is True
    assert ingest.cut_publisher(_stream("stream-one")) is False  # no publisher on it
