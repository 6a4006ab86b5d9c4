"""Test media for the browser tests: a video made with ffmpeg and a small HTTP server for it.

The video is 60 s of ffmpeg's ``testsrc`` (320x240, 25 fps) with its own time burnt in and a
440 Hz tone, H.264 + AAC in MP4 with a key frame every second (Debian's chromium plays H.264),
plus the same as HLS (2 s segments) for the hls.js path. The server answers Range requests
(browsers seek with them) and sends ``Access-Control-Allow-Origin: *`` (hls.js fetches
playlists and segments from the page's origin).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from contextlib import contextmanager
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.procs import QuietRequests

FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
DURATION = 60


def make_test_media(folder: Path) -> dict[str, Path]:
    """Create test.mp4 and hls/index.m3u8 under ``folder`` (once; reused if present)."""
    folder.mkdir(parents=True, exist_ok=True)
    mp4 = folder / "test.mp4"
    hls = folder / "hls" / "index.m3u8"
    if not mp4.exists():
        subprocess.run(
            [
                FFMPEG, "-hide_banner", "-loglevel", "error", "-y",
                "-f", "lavfi", "-i", f"testsrc=size=320x240:rate=25:duration={DURATION}",
                "-f", "lavfi", "-i", f"sine=frequency=440:duration={DURATION}",
                "-vf", "drawtext=text='%{pts\\:hms}':fontsize=28:fontcolor=white:box=1:boxcolor=black@0.6:x=10:y=10",
                "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p",
                "-c:a", "aac", "-b:a", "64k", "-movflags", "+faststart", str(mp4),
            ],
            check=True,
            timeout=120,
        )  # fmt: skip
    if not hls.exists():
        hls.parent.mkdir(exist_ok=True)
        subprocess.run(
            [
                FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-i", str(mp4), "-t", "20",
                "-c", "copy", "-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod",
                "-hls_segment_filename", str(hls.parent / "seg%03d.ts"), str(hls),
            ],
            check=True,
            timeout=120,
        )  # fmt: skip
    return {"mp4": mp4, "hls": hls}


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeHandler(QuietRequests, SimpleHTTPRequestHandler):
    """Static files with single-range requests (206) and open CORS."""

    protocol_version = "HTTP/1.1"

    def end_headers(self):
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Expose-Headers", "Content-Length, Content-Range, Accept-Ranges")
        self.send_header("Accept-Ranges", "bytes")
        super().end_headers()

    def do_OPTIONS(self):
        self.send_response(HTTPStatus.NO_CONTENT)
        self.send_header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", "Range")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        header = self.headers.get("Range")
        path = self.translate_path(self.path)
        match = _RANGE.match(header or "")
        if not match or not os.path.isfile(path):
            return super().do_GET()
        size = os.path.getsize(path)
        first, last = match.groups()
        if first == "":
            start, end = max(0, size - int(last or 0)), size - 1
        else:
            start, end = int(first), min(size - 1, int(last) if last else size - 1)
        if start >= size or start > end:
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        self.send_response(HTTPStatus.PARTIAL_CONTENT)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        with open(path, "rb") as fh:
            fh.seek(start)
            remaining = end - start + 1
            try:
                while remaining > 0:
                    chunk = fh.read(min(256 * 1024, remaining))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    remaining -= len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the browser cancels ranges it no longer needs
        return None


RangeHandler.extensions_map = {
    **SimpleHTTPRequestHandler.extensions_map,
    ".mp4": "video/mp4",
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
}


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # Browsers drop media connections they no longer need; that is not an error here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextmanager
def media_server(folder: Path):
    """Serve ``folder`` on 127.0.0.1 (a free port); yields the base URL."""
    server = QuietServer(("127.0.0.1", 0), partial(RangeHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, name="media-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
