"""Failover time of a pulled live stream (docs/streaming.md, "Failover" and "Pulled streams"),
on the set-up tests/test_relay_e2e.py starts: a scratch PostgreSQL database, a private
redis-server, the app (uvicorn), the Procfile's `rtmp` process, a live HLS source (ffmpeg +
http.server on loopback) and three `manage.py relay` processes (relay-a/b/c).

1. Hand-over: SIGTERM to the relay publishing the stream (it leaves the cluster and hands the
   stream over before it stops). N runs (default 20).
2. Crash: SIGKILL to that relay's Python process alone (its ffmpeg goes on publishing), with the
   Procfile's `beat` (failover sweep every 1 s) and `worker` running: the stream moves once the
   relay's registry entry expires (TTL 15 s). N runs (default 10: each takes 15-20 s).

For each run, from the signal to
  (a) ``publisher_changed`` for the stream on the room's Redis channel
      (``apps.core.realtime.room_channel``, subscribed with redis-py), and
  (b) ``GET /api/v1/rooms/{room}/streams/{id}`` (as a member, every 100 ms) answering ``live``
      with the new ``publisher_node``.
After each run the stopped relay is started again (same node id) and the next run waits until
three relays are in the registry (``cluster:node:relay:*``).

Prints a Markdown report and writes bench/live/FAILOVER.md; logs and raw JSON go to
bench/live/out/failover/. Run through bench/live/run-failover.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from types import SimpleNamespace

import redis

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT), str(HERE)]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "synctv.settings")  # tests.wsclient.admin_dsn reads it

from livebench import log, machine, percentile  # noqa: E402

from apps.core.realtime import room_channel  # noqa: E402
from apps.streaming.ring import HashRing  # noqa: E402
from tests.browser_support import Api, Server  # noqa: E402
from tests.procs import procfile_command, running  # noqa: E402
from tests.test_relay_e2e import NODES, _hls_source, _Quiet  # noqa: E402
from tests.test_rtmp_e2e import MODULE  # noqa: E402
from tests.wsclient import PrivateRedis, scratch_database  # noqa: E402

OUT = HERE / "out" / "failover"
RESULTS = HERE / "FAILOVER.md"
REGISTRY = "cluster:node:relay:*"


# --- the set-up (as tests/test_relay_e2e.py's ``world`` fixture) ---------------------------------


def start(stack: ExitStack) -> SimpleNamespace:
    database_url = stack.enter_context(scratch_database())
    private = PrivateRedis()
    private.start()
    stack.callback(private.kill)
    server = Server(OUT)
    server.add_rtmp_settings()
    server.env.update(
        DATABASE_URL=database_url,
        REDIS_URL=private.url(0),
        CELERY_BROKER_URL=private.url(1),
        SYNCTV_NODE_ID="web-1",
        FETCH_ALLOW_PRIVATE_NETWORKS="true",  # the source is on loopback
        LOG_LEVEL="INFO",
    )
    log("migrating the scratch database")
    server.migrate()
    server.start()
    stack.callback(server.stop)
    rtmp_log = OUT / "rtmp.log"
    server.start_rtmp(stack, rtmp_log)

    source_dir = OUT / "source"
    source_dir.mkdir()
    stack.enter_context(_hls_source(source_dir, OUT / "source.log"))
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(source_dir))
    )
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    stack.callback(httpd.server_close)
    stack.callback(httpd.shutdown)
    api = Api(server.base)
    owner, member = api.register("puller"), api.register("viewer")
    room = api.create_room(owner, "Pulled room")
    api.join(member, room["id"])
    client = redis.Redis.from_url(server.env["REDIS_URL"])
    stack.callback(client.close)
    ctx = SimpleNamespace(
        stack=stack,
        server=server,
        api=api,
        owner=owner,
        member=member,
        room=room,
        redis=client,
        rtmp_pattern=f"127.0.0.1:{server.env['RTMP_PORT']}/live/rl-",
        source_url=f"http://127.0.0.1:{httpd.server_address[1]}/index.m3u8",
        relays={},
        starts=dict.fromkeys(NODES, 0),
        orphans=[],
    )
    stack.callback(kill_orphans, ctx)  # runs after the relays' own stop (LIFO)
    return ctx


def start_relay(ctx, node: str) -> None:
    ctx.starts[node] += 1
    env = {**ctx.server.env, "SYNCTV_NODE_ID": node}
    path = OUT / f"{node}.{ctx.starts[node]}.log"
    ctx.relays[node] = ctx.stack.enter_context(running("python manage.py relay", env=env, log=path))


def relays_registered(ctx) -> int:
    return len(list(ctx.redis.scan_iter(REGISTRY)))


def node_registered(ctx, node: str) -> bool:
    return any(key.decode().endswith(f":{node}") for key in ctx.redis.scan_iter(REGISTRY))


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(interval)
    raise AssertionError(f"{what} not within {timeout:g} s")


def status(ctx, stream_id: str) -> dict:
    return ctx.api.call("GET", f"rooms/{ctx.room['id']}/streams/{stream_id}", ctx.member, expect=200)


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def kill_orphans(ctx) -> int:
    """SIGTERM, by pid, to the ffmpeg processes of killed relays (recorded before each SIGKILL)
    that still run and still publish to this RTMP server."""
    killed = 0
    for pid in ctx.orphans:
        if ctx.rtmp_pattern in cmdline(pid):
            try:
                os.kill(pid, signal.SIGTERM)
                killed += 1
            except ProcessLookupError:
                pass
    ctx.orphans.clear()
    return killed


class Channel:
    """The room's Redis channel, read on a thread: every ``publisher_changed`` with the
    monotonic time it arrived."""

    def __init__(self, ctx) -> None:
        self.name = room_channel(ctx.room["id"])
        self.pubsub = ctx.redis.pubsub(ignore_subscribe_messages=False)
        self.pubsub.subscribe(self.name)
        wait_for(
            lambda: (m := self.pubsub.get_message(timeout=0.2)) and m["type"] == "subscribe", 5, "subscribe"
        )
        self.events: list[tuple[float, dict]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            message = self.pubsub.get_message(timeout=0.2)
            if message and message["type"] == "message":
                at = time.monotonic()
                event = json.loads(message["data"])
                if event.get("type") == "publisher_changed":
                    self.events.append((at, event))

    def since(self, t: float, stream_id: str) -> list[tuple[float, dict]]:
        return [(at, e) for at, e in self.events if at >= t and e.get("stream_id") == stream_id]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.pubsub.close()


# --- the runs ----------------------------------------------------------------------------------------


def one_run(ctx, channel: Channel, stream_id: str, kind: str, args) -> dict:
    before = status(ctx, stream_id)
    old = before["publisher_node"]
    assert before["live"] and old in NODES, before
    relay = ctx.relays[old]
    event_timeout, live_timeout = (10, 30) if kind == "handover" else (45, 60)
    record: dict = {"from": old}
    if kind == "crash":
        ctx.orphans += [pid for pid in children(relay.pid) if ctx.rtmp_pattern in cmdline(pid)]
        record["orphans"] = len(ctx.orphans)
    sent = time.monotonic()
    if kind == "handover":
        os.killpg(relay.pid, signal.SIGTERM)  # the relay's group; its ffmpeg has a session of its own
    else:
        os.kill(relay.pid, signal.SIGKILL)  # the Python process alone, as tests/test_relay_e2e.py
    deadline = sent + live_timeout
    new = None
    while time.monotonic() < deadline:
        now = time.monotonic()
        if "exited" not in record and relay.poll() is not None:
            record["exited"] = now - sent
        if "unregistered" not in record and not node_registered(ctx, old):
            record["unregistered"] = now - sent
        # The election names a node; an event with "" says a feed stopped (the dead relay's
        # ffmpeg, which pulled through that relay's fetch proxy), not where the stream went.
        changes = [(at, e) for at, e in channel.since(sent, stream_id) if e.get("node")]
        if changes and "event" not in record:
            record["event"] = changes[0][0] - sent
            new = record["to"] = changes[0][1]["node"]
        if "event" not in record and now - sent > event_timeout:
            break
        current = status(ctx, stream_id)
        if current["live"] and current["publisher_node"] not in (old, None, ""):
            if new is None or current["publisher_node"] == new:
                record["live"] = time.monotonic() - sent
                record["to"] = current["publisher_node"]
                break
        time.sleep(args.poll)
    record["events"] = len(channel.since(sent, stream_id))
    if "event" not in record:
        record["error"] = f"no publisher_changed within {event_timeout} s"
    elif "live" not in record:
        record["error"] = f"not live on {new} within {live_timeout} s"
    elif record["to"] == old:
        record["error"] = f"moved to the same node {old}"
    # Back to three relays: the stopped relay again, under the same node id.
    if kind == "handover":
        try:
            relay.wait(timeout=15)
            record.setdefault("exited", time.monotonic() - sent)
        except subprocess.TimeoutExpired:
            record["error"] = record.get("error") or "relay did not stop within 15 s"
            os.killpg(relay.pid, signal.SIGKILL)
            relay.wait()
    else:
        relay.wait(timeout=5)
        record["orphans_killed"] = kill_orphans(ctx)
    record.setdefault("exited", None)
    if kind == "crash" and "unregistered" not in record:
        wait_for(lambda: not node_registered(ctx, old), 30, f"{old}'s registry entry to expire")
    start_relay(ctx, old)
    wait_for(lambda: relays_registered(ctx) == 3, 30, "three relays in the registry")
    return record


def phase(ctx, channel: Channel, stream_id: str, kind: str, runs: int, args) -> list[dict]:
    results = []
    for i in range(1, runs + 1):
        try:
            record = one_run(ctx, channel, stream_id, kind, args)
        except AssertionError as exc:
            record = {"error": str(exc)}
        results.append(record)
        if "error" in record:
            log(f"{kind} {i}/{runs}: FAILED {record['error']}")
            try:  # let the stream settle somewhere before the next run
                wait_for(lambda: status(ctx, stream_id)["live"], 60, "the stream live again", 0.5)
            except AssertionError:
                log(f"{kind}: the stream is not live again; stopping this phase")
                break
        else:
            log(
                f"{kind} {i}/{runs}: {record['from']} -> {record['to']}: "
                f"publisher_changed {record['event']:.2f} s, live {record['live']:.2f} s"
            )
        # A random part, so the signal falls anywhere in the relays' 1 s tick: the relay that takes
        # the stream over was (re)started one run earlier, and a fixed pause would lock the signal
        # to a fixed phase of its tick (measured: always ~0.95 s before its next tick).
        time.sleep(args.settle + random.random())
    return results


# --- the report --------------------------------------------------------------------------------------


def fmt(value, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def stats(records: list[dict], key: str) -> tuple[float, float, float] | None:
    values = [r[key] for r in records if "error" not in r and r.get(key) is not None]
    if not values:
        return None
    return percentile(values, 50), max(values), min(values)


def report(info: dict, args, handover: list[dict], crash: list[dict]) -> str:
    ok = {k: sum("error" not in r for r in v) for k, v in (("handover", handover), ("crash", crash))}
    lines = [
        "# Pulled live streams: failover time (hand-over and crash)",
        "",
        "`bench/live/run-failover" + (f" {' '.join(sys.argv[1:])}" if sys.argv[1:] else "") + "`",
        "",
        f"{info['date']}; {info['nproc']} CPUs ({info['model']}), Linux {info['kernel']}; "
        f"{info['nginx']} with Debian's libnginx-mod-rtmp; {info['ffmpeg']}. Everything (PostgreSQL, "
        "redis-server, the app, nginx, three relays and their ffmpeg, beat + worker, the HLS "
        "source's ffmpeg) shares these cores.",
        "",
        "Set-up as tests/test_relay_e2e.py: one stream pulled from a live HLS source (320x240, "
        "25 fps, libx264 ultrafast, 1 s GOP, 1 s segments) on loopback; three `manage.py relay` "
        "processes (relay-a/b/c). Times from the signal to (a) `publisher_changed` for the stream on "
        "the room's Redis channel (`synctv:room:<id>`, redis-py subscriber) and (b) the stream's "
        f"status (`GET /api/v1/rooms/{{room}}/streams/{{id}}` as a member, every {args.poll:g} s) "
        "answering `live` with the new `publisher_node`. After each run the stopped relay is "
        "started again under the same node id and the next run waits for three relays in the "
        "registry.",
        "",
        f"Runs: {ok['handover']}/{len(handover)} hand-over and {ok['crash']}/{len(crash)} crash runs "
        f"succeeded (defaults: 20 and 10, `--handover N --crash N`; crash runs take 15–20 s each, so the "
        "defaults keep the whole run under ~8 minutes; ~4.5 minutes on this machine).",
        "",
        "| from the signal to | p50 | max | min |",
        "| --- | --- | --- | --- |",
    ]
    for label, records, key in (
        ("**hand-over** (SIGTERM): `publisher_changed` on the room channel", handover, "event"),
        ("**hand-over** (SIGTERM): status `live` on the new node", handover, "live"),
        ("**crash** (SIGKILL): `publisher_changed` on the room channel", crash, "event"),
        ("**crash** (SIGKILL): status `live` on the new node", crash, "live"),
    ):
        s = stats(records, key)
        lines.append(f"| {label} | " + (" | ".join(f"{v:.2f} s" for v in s) if s else "– | – | –") + " |")
    extra = []
    for label, records, key in (
        ("hand-over: the relay process exited", handover, "exited"),
        ("hand-over: its registry entry gone", handover, "unregistered"),
        ("crash: its registry entry expired", crash, "unregistered"),
    ):
        s = stats(records, key)
        if s:
            extra.append(f"| {label} | " + " | ".join(f"{v:.2f} s" for v in s) + " |")
    if extra:
        lines += [
            "",
            "For reference:",
            "",
            "| from the signal to | p50 | max | min |",
            "| --- | --- | --- | --- |",
        ]
        lines += extra
    orphans = sum(1 for r in crash if r.get("orphans"))
    orphans_left = sum(1 for r in crash if r.get("orphans_killed"))
    lines += [
        "",
        "What dominates:",
        "",
        "- **Hand-over, `publisher_changed`**: the relay's own hand-over only: on SIGTERM it leaves "
        "the cluster (NodeLeaving), elects the next node for each of its streams, records it and "
        "publishes the event after commit (`failover.hand_over` in apps/streaming/failover.py); no beat, no "
        "worker involved.",
        "- **Hand-over, live again**: that, plus the next relay noticing the stream at its next "
        "1 s tick (up to 1 s, ~0.5 s on average), ffmpeg's start (process start, fetching the HLS "
        "playlist and a segment through the relay's fetch proxy, the RTMP handshake) and the "
        "app's `on_publish`, which marks the stream live on the new node.",
        "- **Crash, `publisher_changed`**: the heartbeat TTL: the killed relay's registry entry "
        "lives on until it expires, 15 s (NODE_TTL_SECONDS) after its last heartbeat; heartbeats "
        "come every 5 s (HEARTBEAT_SECONDS), so that is 10–15 s after the kill depending on where "
        "in the heartbeat period the kill falls. Then the next failover sweep (beat every 1 s, "
        "run by the worker: up to ~1 s more) fails it over.",
        "- **Crash, live again**: that, plus the same tick + ffmpeg start + `on_publish` as the "
        "hand-over. The killed relay's ffmpeg is left running (recorded by pid before the kill; "
        f"still running after the failover, and then ended by the bench: {orphans_left} of "
        f"{orphans} runs). An HLS pull goes through the fetch proxy inside the relay process, so "
        "an orphan cannot fetch new segments once its relay is dead: the likely reason none "
        "outlived the failover here (not verified further).",
        "",
        "## Runs",
        "",
        "| kind | run | from → to | publisher_changed | live | relay exited / entry gone | events | error |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for kind, records in (("hand-over", handover), ("crash", crash)):
        for i, r in enumerate(records, 1):
            gone = r.get("exited") if kind == "hand-over" else r.get("unregistered")
            lines.append(
                f"| {kind} | {i} | {r.get('from', '?')} → {r.get('to', '?')} | {fmt(r.get('event'))} | "
                f"{fmt(r.get('live'))} | {fmt(gone)} | {r.get('events', '–')} | {r.get('error', '')} |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description="Pulled-stream failover benchmark (bench/live/run-failover)")
    parser.add_argument("--handover", type=int, default=20, help="hand-over (SIGTERM) runs (20)")
    parser.add_argument("--crash", type=int, default=10, help="crash (SIGKILL) runs (10; 15-20 s each)")
    parser.add_argument("--poll", type=float, default=0.1, help="status poll interval, s (0.1)")
    parser.add_argument(
        "--settle", type=float, default=1.0, help="pause between runs, s, plus a random 0-1 s (1)"
    )
    args = parser.parse_args()

    missing = [tool for tool in ("nginx", "ffmpeg", "redis-server", "lscpu") if not shutil.which(tool)]
    if not Path(MODULE).exists():
        missing.append("libnginx-mod-rtmp")
    if missing:
        log(f"missing: {', '.join(missing)} (scripts/install-system-packages)")
        return 2
    # SIGTERM unwinds like Ctrl-C, so every process started is stopped (ExitStack, finally).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    info = machine()
    handover: list[dict] = []
    crash: list[dict] = []
    with ExitStack() as stack:
        ctx = start(stack)
        for node in NODES:
            start_relay(ctx, node)
        # All three in the ring before the stream exists (else the first relay up takes it).
        wait_for(lambda: relays_registered(ctx) == 3, 30, "three relays")
        created = ctx.api.call(
            "POST",
            f"rooms/{ctx.room['id']}/streams",
            ctx.owner,
            {"name": "Relayed", "source_url": ctx.source_url},
            expect=201,
        )
        stream_id = created["id"]
        first = HashRing(NODES).node_for(stream_id)
        took = wait_for(
            lambda: (s := status(ctx, stream_id))["live"] and s["publisher_node"] == first, 30, "live"
        )
        log(f"stream {stream_id} live on {first} after {took:.1f} s")
        channel = Channel(ctx)
        stack.callback(channel.close)
        if args.handover:
            log(f"hand-over: {args.handover} runs")
            handover = phase(ctx, channel, stream_id, "handover", args.handover, args)
        if args.crash:
            env = {**ctx.server.env, "CELERY_CONCURRENCY": "1"}
            for name in ("worker", "beat"):
                stack.enter_context(running(procfile_command(name), env=env, log=OUT / f"{name}.log"))
            time.sleep(3)  # beat's first sweeps
            log(f"crash: {args.crash} runs (15-20 s each)")
            crash = phase(ctx, channel, stream_id, "crash", args.crash, args)
        log("stopping")
    (OUT / "results.json").write_text(
        json.dumps({"machine": info, "args": vars(args), "handover": handover, "crash": crash}, indent=2)
    )
    text = report(info, args, handover, crash)
    RESULTS.write_text(text)
    print(text)
    return 1 if any("error" in r for r in handover + crash) else 0


if __name__ == "__main__":
    sys.exit(main())
