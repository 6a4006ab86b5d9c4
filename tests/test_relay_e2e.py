"""Pulled streams end to end (docs/streaming.md, "Pulled streams"): a live HLS source (ffmpeg
writing a test pattern, served over HTTP on loopback), the app (uvicorn) on PostgreSQL and a
Redis of its own, the Procfile's `rtmp` process (nginx + RTMP module) and three `relay`
processes with three node ids.

- The stream goes live on the node the ring elects; a member watches it through the signed URL.
- SIGTERM to that relay: it leaves (NodeLeaving), hands the stream over, and the room's socket
  hears `publisher_changed` naming the next node within 2 s; the stream is live there again.
- SIGKILL to the next one's relay (its ffmpeg stays: as if the node's control plane died): the
  Procfile's beat and worker fail it over once its heartbeat entry expires, within 45 s, and
  the last node brings the stream back.

Skips without nginx, its RTMP module, ffmpeg or redis-server unless CI is set: then it fails.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urljoin

import httpx
import pytest
import redis
from websockets.sync.client import connect

from apps.streaming.ring import HashRing
from tests.browser_support import Api, Server
from tests.procs import QuietRequests, procfile_command, publish_test_pattern, running, wait_until
from tests.test_rtmp_e2e import _require_tools
from tests.wsclient import PrivateRedis, scratch_database

pytestmark = [pytest.mark.slow]

NODES = ("relay-a", "relay-b", "relay-c")
LIVE_WITHIN = 25.0
HANDOVER_WITHIN = 2.0
FAILOVER_WITHIN = 45.0


class _Quiet(QuietRequests, http.server.SimpleHTTPRequestHandler):
    pass


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[SimpleNamespace]:
    _require_tools()
    tmp = tmp_path_factory.mktemp("relay-e2e")
    with ExitStack() as stack:
        database_url = stack.enter_context(scratch_database())
        redis = PrivateRedis()
        redis.start()
        stack.callback(redis.kill)
        server = Server(tmp)
        server.add_rtmp_settings()
        server.env.update(
            DATABASE_URL=database_url,
            REDIS_URL=redis.url(0),
            CELERY_BROKER_URL=redis.url(1),
            SYNCTV_NODE_ID="web-1",
            FETCH_ALLOW_PRIVATE_NETWORKS="true",  # the source is on loopback
            LOG_LEVEL="INFO",
        )
        server.migrate()
        server.start()
        stack.callback(server.stop)
        rtmp_log = tmp / "rtmp.log"
        rtmp = server.start_rtmp(stack, rtmp_log)

        source_dir = tmp / "source"
        source_dir.mkdir()
        source = stack.enter_context(_hls_source(source_dir, tmp / "source.log"))
        httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(source_dir))
        )
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        stack.callback(httpd.server_close)
        stack.callback(httpd.shutdown)
        # A relay's ffmpeg runs in a session of its own; one left behind by the SIGKILL below
        # is dropped by the RTMP server, and in any case ended here.
        stack.callback(
            subprocess.run, ["pkill", "-f", f"127.0.0.1:{server.env['RTMP_PORT']}/live/rl-"], check=False
        )
        api = Api(server.base)
        owner, member = api.register("puller"), api.register("viewer")
        room = api.create_room(owner, "Pulled room")
        api.join(member, room["id"])
        yield SimpleNamespace(
            tmp=tmp,
            server=server,
            api=api,
            owner=owner,
            member=member,
            room=room,
            rtmp_log=rtmp_log,
            rtmp=rtmp,
            source=source,
            source_url=f"http://127.0.0.1:{httpd.server_address[1]}/index.m3u8",
            stack=stack,
        )


def _hls_source(folder: Path, log: Path):
    command = (
        "ffmpeg -hide_banner -loglevel error -re -f lavfi -i testsrc=size=320x240:rate=25 "
        "-f lavfi -i sine -c:v libx264 -preset ultrafast -g 25 -c:a aac "
        "-f hls -hls_time 1 -hls_list_size 6 -hls_flags delete_segments+omit_endlist "
        f"{folder}/index.m3u8"
    )
    return running(command, env=dict(os.environ), log=log)


def _relay(world, node: str) -> subprocess.Popen:
    env = {**world.server.env, "SYNCTV_NODE_ID": node}
    log = world.tmp / f"{node}.log"
    return world.stack.enter_context(running("python manage.py relay", env=env, log=log))


def _status(world, stream_id: str) -> dict:
    return world.api.call("GET", f"rooms/{world.room['id']}/streams/{stream_id}", world.member, expect=200)


def _logs(world) -> str:
    parts = [world.server.log_tail(), world.rtmp_log.read_text(errors="replace")[-2000:]]
    for node in NODES:
        path = world.tmp / f"{node}.log"
        if path.exists():
            parts.append(f"--- {node}\n" + path.read_text(errors="replace")[-2000:])
    for name in ("worker", "beat"):
        path = world.tmp / f"{name}.log"
        if path.exists():
            parts.append(f"--- {name}\n" + path.read_text(errors="replace")[-2000:])
    return "\n".join(parts)


def _wait(predicate, timeout: float, what: str, world):
    """``wait_until`` every 0.2 s; a failure shows every process's log."""
    return wait_until(predicate, timeout, 0.2, what, context=lambda: _logs(world))


def _live_on(world, stream_id: str, node: str) -> bool:
    status = _status(world, stream_id)
    return bool(status["live"] and status["publisher_node"] == node)


def _segment_plays(url: str) -> bool:
    playlist = httpx.get(url, timeout=5)
    if playlist.status_code != 200:
        return False
    names = [line for line in playlist.text.splitlines() if line.endswith(".ts")]
    if not names:
        return False
    segment = httpx.get(urljoin(url, names[-1]), timeout=5)
    return segment.status_code == 200 and segment.content[:1] == b"G"


class _RoomSocket:
    """The member's WebSocket to the room, opened and read on a thread; every frame kept with
    the time it arrived."""

    def __init__(self, world) -> None:
        self.url = world.server.base.replace("http", "ws") + f"/ws/rooms/{world.room['id']}/"
        self.origin = world.server.base
        self.token = world.member.access
        self.frames: list[tuple[float, dict]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        protocols = ["synctv.v1", f"bearer.{self.token}"]
        with connect(self.url, subprotocols=protocols, origin=self.origin, open_timeout=10) as conn:  # type: ignore[arg-type]
            while not self._stop.is_set():
                try:
                    message = conn.recv(timeout=0.2)
                except TimeoutError:
                    continue
                self.frames.append((time.monotonic(), json.loads(message)))

    def changes(self, since: float) -> list[tuple[float, dict]]:
        return [(t, f) for t, f in self.frames if t >= since and f.get("type") == "publisher_changed"]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def test_a_pulled_stream_moves_when_its_relay_leaves_or_dies(world):
    relays = {node: _relay(world, node) for node in NODES}
    registry = redis.Redis.from_url(world.server.env["REDIS_URL"])
    # All three in the ring before the stream exists (else the first relay up takes it).
    _wait(lambda: len(list(registry.scan_iter("cluster:node:relay:*"))) == 3, 30, "three relays", world)
    registry.close()
    created = world.api.call(
        "POST",
        f"rooms/{world.room['id']}/streams",
        world.owner,
        {"name": "Relayed", "source_url": world.source_url},
        expect=201,
    )
    stream_id = created["id"]
    first = HashRing(NODES).node_for(stream_id)
    _wait(lambda: _live_on(world, stream_id, first), LIVE_WITHIN, f"live on {first}", world)
    url = _status(world, stream_id)["playback_url"]
    _wait(lambda: _segment_plays(url), 20, "a playable segment", world)

    socket = _RoomSocket(world)
    try:
        _wait(lambda: any(f.get("type") == "hello" for _, f in socket.frames), 10, "hello", world)
        # 1. SIGTERM: the relay hands over before it stops.
        second = HashRing([n for n in NODES if n != first]).node_for(stream_id)
        sent = time.monotonic()
        os.killpg(relays[first].pid, signal.SIGTERM)
        _wait(lambda: socket.changes(sent), HANDOVER_WITHIN + 3, "publisher_changed", world)
        # First the hand-over's; then the new node's relay going live announces itself too.
        heard_at, change = socket.changes(sent)[0]
        assert change["stream_id"] == stream_id and change["node"] == second
        assert heard_at - sent <= HANDOVER_WITHIN, heard_at - sent
        print(f"hand-over: publisher_changed {heard_at - sent:.2f} s after SIGTERM")
        assert relays[first].wait(timeout=15) == 0
        _wait(lambda: _live_on(world, stream_id, second), LIVE_WITHIN, f"live again on {second}", world)
        url = _status(world, stream_id)["playback_url"]
        _wait(lambda: _segment_plays(url), 20, "a playable segment after the hand-over", world)

        # 2. SIGKILL to the relay process alone (its ffmpeg goes on publishing, as when a node's
        # control plane dies): its heartbeat entry expires (15 s) and beat + worker fail over.
        [third] = [n for n in NODES if n not in (first, second)]
        env = {**world.server.env, "CELERY_CONCURRENCY": "1"}
        for name in ("worker", "beat"):
            command = procfile_command(name)
            world.stack.enter_context(running(command, env=env, log=world.tmp / f"{name}.log"))
        killed = time.monotonic()
        os.kill(relays[second].pid, signal.SIGKILL)

        def elected() -> list[tuple[float, dict]]:
            return [(t, f) for t, f in socket.changes(killed) if f["node"]]

        _wait(elected, FAILOVER_WITHIN, "publisher_changed naming a node after the kill", world)
        _wait(lambda: _live_on(world, stream_id, third), FAILOVER_WITHIN, f"live again on {third}", world)
        elapsed = time.monotonic() - killed
        assert elapsed <= FAILOVER_WITHIN, elapsed
        changes = [(f["stream_id"], f["node"]) for _, f in socket.changes(killed)]
        # Only the node the failover elected is ever named (its election, then its relay going
        # live); "" when a feed stopped: the dead relay's ffmpeg, which pulled through that
        # relay's fetch proxy, or a try the RTMP server refused while the old name was held.
        assert set(changes) <= {(stream_id, third), (stream_id, "")}, changes
        print(f"failover: publisher_changed {elected()[0][0] - killed:.1f} s, live {elapsed:.1f} s")
        url = _status(world, stream_id)["playback_url"]
        _wait(lambda: _segment_plays(url), 20, "a playable segment after the failover", world)
    except Exception:
        print(_logs(world))
        raise
    finally:
        socket.close()
    log_text = "".join((world.tmp / f"{n}.log").read_text(errors="replace") for n in NODES)
    assert world.source_url not in log_text  # the source may carry credentials: never logged


def test_a_stopping_rtmp_process_gives_up_its_pushed_streams_at_once(world):
    """SIGTERM to the `rtmp` process (the app's web on the same node still runs): it leaves the
    cluster and fails over the streams published on its node before it stops nginx, so the room
    hears the pushed stream wait for its streamer within 2 s, not after the 30 s silence."""
    created = world.api.call(
        "POST", f"rooms/{world.room['id']}/streams", world.owner, {"name": "Pushed"}, expect=201
    )
    stream_id = created["id"]
    publisher = publish_test_pattern(created["publish_url"], world.tmp / "pushed.log", seconds=120)
    socket = None
    try:
        node = world.server.env["SYNCTV_NODE_ID"]
        _wait(lambda: _live_on(world, stream_id, node), LIVE_WITHIN, "the pushed stream live", world)
        socket = _RoomSocket(world)
        _wait(lambda: any(f.get("type") == "hello" for _, f in socket.frames), 10, "hello", world)
        sent = time.monotonic()
        os.killpg(world.rtmp.pid, signal.SIGTERM)
        _wait(lambda: socket.changes(sent), HANDOVER_WITHIN + 3, "publisher_changed", world)
        heard_at, change = next((t, f) for t, f in socket.changes(sent) if f["stream_id"] == stream_id)
        assert change["node"] == "" and heard_at - sent <= HANDOVER_WITHIN, (change, heard_at - sent)
        print(f"rtmp leaving: publisher_changed {heard_at - sent:.2f} s after SIGTERM")
        assert world.rtmp.wait(timeout=30) == 0, world.rtmp_log.read_text()[-3000:]
        status = _status(world, stream_id)
        assert status["live"] is False and status["publisher_node"] == ""
        assert status["ingest_running"] is False
    except Exception:
        print(_logs(world))
        raise
    finally:
        if socket is not None:
            socket.close()
        publisher.kill()
        publisher.wait()
