"""Live-stream benchmark (docs/streaming.md): the real app and the Procfile's `rtmp` process
(scripts/rtmp: nginx with Debian's RTMP module) on free ports, started as tests/test_rtmp_e2e.py
starts them (tests/browser_support.Server on the embedded default, tests/procs.running).

1. First published frame -> first playable segment: ffmpeg publishes the e2e test's generated
   pattern to a new stream's key; from ffmpeg's start a member polls
   ``GET /api/v1/rooms/{room}/streams/{id}`` every 100 ms, fetches ``playback_url`` and, once it
   lists a segment, that segment, through the signed URL. N runs, p50 / max.
2. nginx CPU per live stream and per HLS viewer: CPU seconds of the `rtmp` process tree over a
   fixed window with 0/1/4/8 publishers (``ffmpeg -re -stream_loop -1 -i <pre-encoded file> -c copy``),
   then one stream and 0/10/50 viewers (bench/live/viewers.py). Slopes by least squares.

Prints a Markdown report and writes bench/live/RESULTS.md; logs and raw JSON go to bench/live/out/.
Run through bench/live/run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urljoin

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT), str(HERE)]

import procstat  # noqa: E402

from tests.browser_support import Api, Server  # noqa: E402
from tests.procs import publish_test_pattern, wait_until  # noqa: E402
from tests.test_rtmp_e2e import MODULE  # noqa: E402

OUT = HERE / "out"
RESULTS = HERE / "RESULTS.md"
TEMPLATE = ROOT / "deploy" / "rtmp" / "nginx.conf.template"
PUBLISHED_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO \S+ rtmp publish of stream (\S+) started"
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def seconds(value: str) -> float:
    """An nginx duration as the template writes it: 1s, 500ms, 10s, 1m."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", value)
    if not match:
        raise ValueError(value)
    number, unit = float(match[1]), match[2] or "s"
    return number / 1000 if unit == "ms" else number * 60 if unit == "m" else number


def hls_config() -> dict[str, float]:
    text = TEMPLATE.read_text()
    found = {}
    for name in ("hls_fragment", "hls_playlist_length"):
        match = re.search(rf"^\s*{name}\s+(\S+);", text, re.MULTILINE)
        found[name] = seconds(match[1]) if match else None
    return found


def machine() -> dict[str, str]:
    model = "unknown"
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    for line in lscpu.splitlines():
        if line.startswith("Model name:"):
            model = line.split(":", 1)[1].strip()
            break
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    ffmpeg = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.splitlines()[0]
    return {
        "nproc": subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(),
        "model": model,
        "kernel": platform.release(),
        "nginx": nginx.replace("nginx version: ", ""),
        "ffmpeg": " ".join(ffmpeg.split()[:3]),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    low = int(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of y on x."""
    if len({x for x, _ in points}) < 2:
        return None
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)


def kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


# --- the setup -------------------------------------------------------------------------------------


def start(stack: ExitStack) -> SimpleNamespace:
    """The app (uvicorn, embedded default, its var/ under bench/live/out) and the `rtmp` process,
    as the e2e test's ``live`` fixture starts them; an owner with a room and a member in it."""
    server = Server(OUT)
    server.add_rtmp_settings()
    server.env.update(
        HLS_SIGNING_SECRET=secrets.token_urlsafe(32),
        LOG_LEVEL="INFO",  # on_publish logs "rtmp publish of stream <id> started" at INFO
        PYTHONDONTWRITEBYTECODE="1",
    )
    log("migrating the embedded database")
    server.migrate()
    stack.callback(server.stop)
    server.start()
    rtmp_log = OUT / "rtmp.log"
    rtmp = server.start_rtmp(stack, rtmp_log)
    api = Api(server.base)
    owner, member = api.register("streamer"), api.register("viewer")
    room = api.create_room(owner, "Live bench")
    api.join(member, room["id"])
    log(
        f"app on {server.base}, rtmp on :{server.env['RTMP_PORT']} (pid {rtmp.pid}), HLS on :{server.env['HLS_PORT']}"
    )
    return SimpleNamespace(
        server=server, rtmp=rtmp, rtmp_log=rtmp_log, api=api, owner=owner, member=member, room=room,
        hls_dir=OUT / "var" / "rtmp" / "hls",
    )  # fmt: skip


def create_stream(ctx, name: str) -> dict:
    return ctx.api.call("POST", f"rooms/{ctx.room['id']}/streams", ctx.owner, {"name": name}, expect=201)


def status(ctx, stream_id: str, who=None) -> dict:
    return ctx.api.call("GET", f"rooms/{ctx.room['id']}/streams/{stream_id}", who or ctx.member, expect=200)


def on_publish_times(ctx) -> dict[str, float]:
    """Stream id -> unix time of the app's "publish ... started" log line (asctime, UTC: TIME_ZONE)."""
    found = {}
    for line in ctx.server.log.read_text(errors="replace").splitlines():
        match = PUBLISHED_LINE.match(line)
        if match:
            when = dt.datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=dt.UTC)
            found[match[2]] = when.timestamp()
    return found


# --- 1. first published frame -> first playable segment -------------------------------------------


def first_segment_run(ctx, index: int, poll: float, timeout: float) -> dict:
    created = create_stream(ctx, f"First frame {index}")
    stream_id = created["id"]
    result: dict = {"run": index, "stream": stream_id}
    hls = httpx.Client(timeout=5)
    busy_before, bench_before = procstat.machine_busy()[0], procstat.tree_cpu(os.getpid())
    started_wall, started = time.time(), time.monotonic()
    publisher = publish_test_pattern(created["publish_url"], OUT / f"first-{index}.ffmpeg.log", seconds=60)
    try:
        while True:
            tick = time.monotonic()
            if tick - started > timeout:
                result["error"] = f"no playable segment within {timeout:.0f}s"
                break
            if publisher.poll() is not None:
                result["error"] = f"ffmpeg exited with {publisher.returncode}"
                break
            body = status(ctx, stream_id)
            if body["live"] and "live" not in result:
                result["live"] = time.monotonic() - started
            url = body["playback_url"]
            playlist = hls.get(url)
            names = [line for line in playlist.text.splitlines() if line.endswith(".ts")]
            if playlist.status_code == 200 and names:
                result.setdefault("playlist", time.monotonic() - started)
                segment = hls.get(urljoin(url, names[0]))
                if segment.status_code == 200 and segment.content[:1] == b"G":  # MPEG-TS sync byte
                    result["playable"] = time.monotonic() - started
                    durations = re.findall(r"#EXTINF:([0-9.]+)", playlist.text)
                    result["first_extinf"] = float(durations[0]) if durations else None
                    result["segment_bytes"] = len(segment.content)
                    try:  # its last write: when nginx closed it, finer than the 100 ms polls
                        closed = (ctx.hls_dir / stream_id / names[0]).stat().st_mtime
                        result["segment_closed"] = closed - started_wall
                    except OSError:
                        pass
                    break
            time.sleep(max(0.0, poll - (time.monotonic() - tick)))
    finally:
        elapsed = time.monotonic() - started
        # Sampled before ffmpeg is reaped (then its CPU would move into our cutime, uncounted here).
        busy_after, bench_after = procstat.machine_busy()[0], procstat.tree_cpu(os.getpid())
        publisher.kill()
        publisher.wait()
        hls.close()
    other = busy_after - busy_before - (bench_after - bench_before)
    result["other_pct"] = round(max(0.0, other) / elapsed * 100, 1)
    published = on_publish_times(ctx).get(stream_id)
    if published is not None:
        result["on_publish"] = published - started_wall
    # The next run starts once this publisher is gone (on_publish_done): runs do not overlap.
    try:
        wait_until(lambda: not status(ctx, stream_id)["live"], 15, 0.2, "not live after ffmpeg stopped")
    except RuntimeError as exc:
        result["note"] = str(exc)
    return result


def first_segment(ctx, runs: int, poll: float) -> list[dict]:
    results = []
    for index in range(1, runs + 1):
        result = first_segment_run(ctx, index, poll, timeout=30)
        results.append(result)
        shown = {k: round(v, 2) if isinstance(v, float) else v for k, v in result.items() if k != "stream"}
        log(f"first frame run {index}/{runs}: {shown}")
        time.sleep(0.5)
    return results


# --- 2. CPU per stream and per viewer --------------------------------------------------------------


def encode(path: Path, size: str, bitrate: str, length: int) -> dict:
    """A short H.264/AAC file (1 s GOP, constant bitrate with filler) to publish with -c copy."""
    command = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-t", str(length), "-pix_fmt", "yuv420p",
        "-c:v", "libx264", "-preset", "veryfast", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0",
        "-b:v", bitrate, "-minrate", bitrate, "-maxrate", bitrate, "-bufsize", bitrate,
        "-x264-params", "nal-hrd=cbr",
        "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", str(path),
    ]  # fmt: skip
    subprocess.run(command, check=True, stdin=subprocess.DEVNULL, timeout=300)
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=bit_rate,duration", "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    fmt = json.loads(probe.stdout)["format"]
    return {"size": size, "kbps": round(int(fmt["bit_rate"]) / 1000), "seconds": float(fmt["duration"])}


def publish(url: str, source: Path, log_path: Path) -> subprocess.Popen:
    command = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(source),
        "-c", "copy", "-f", "flv", url,
    ]  # fmt: skip
    return subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log_path.open("wb"),
        start_new_session=True,
    )  # fmt: skip


def playlist_ready(ctx, stream_id: str) -> bool:
    playlist = ctx.hls_dir / stream_id / "index.m3u8"
    try:
        return ".ts" in playlist.read_text()
    except OSError:
        return False


def measure(ctx, window: float, *, publishers: list, viewers: subprocess.Popen | None = None) -> dict:
    """CPU of each party over ``window`` seconds, as % of one core. The viewers' counters restart
    with the window (SIGUSR1)."""
    me = os.getpid()

    def sample() -> dict[str, float]:
        busy, steal = procstat.machine_busy()
        return {
            "t": time.monotonic(),
            "nginx": procstat.tree_cpu(ctx.rtmp.pid),
            "app": procstat.tree_cpu(ctx.server.proc.pid),
            "publishers_cpu": sum(procstat.tree_cpu(p.pid) for p in publishers if p.poll() is None),
            "viewers_cpu": procstat.tree_cpu(viewers.pid) if viewers is not None else 0.0,
            "bench": procstat.tree_cpu(me),  # this process and everything it started
            "busy": busy,
            "steal": steal,
        }

    before = sample()
    if viewers is not None:
        viewers.send_signal(signal.SIGUSR1)
    time.sleep(window)
    after = sample()
    elapsed = after["t"] - before["t"]
    pct = {k: round((after[k] - before[k]) / elapsed * 100, 2) for k in before if k != "t"}
    pct["other"] = round(pct.pop("busy") - pct["bench"], 2)  # work on the machine that is not ours
    pct["seconds"] = round(elapsed, 2)
    pct["nginx_rss_mib"] = round(procstat.tree_rss_kib(ctx.rtmp.pid) / 1024, 1)
    return pct


def check_streams(ctx, streams: list[dict], publishers: list) -> list[str]:
    """Problems seen after a window: a publisher gone, a stream not live, HLS not being written."""
    problems = []
    for stream, proc in zip(streams, publishers, strict=True):
        if proc.poll() is not None:
            problems.append(f"publisher of {stream['id']} exited ({proc.returncode})")
        playlist = ctx.hls_dir / stream["id"] / "index.m3u8"
        try:
            age = time.time() - playlist.stat().st_mtime
        except OSError:
            age = None
        if age is None or age > 5:
            problems.append(
                f"{stream['id']}: playlist not updated for {age if age is None else round(age, 1)} s"
            )
    return problems


def cpu(ctx, args, fragment: float) -> dict:
    source = OUT / "pattern.mp4"
    log(f"pre-encoding {args.size} at {args.bitrate} ({args.length} s)")
    media = encode(source, args.size, args.bitrate, args.length)
    log(f"pattern: {media}")
    levels = sorted(set(args.publishers))
    streams = [create_stream(ctx, f"CPU {i}") for i in range(max(levels))]
    publishers: list[subprocess.Popen] = []
    results: dict = {"media": media, "streams": [], "viewers": []}
    try:
        log(f"idle: 0 publishers, {args.idle_window:.0f} s")
        results["streams"].append(
            {"publishers": 0, **measure(ctx, args.idle_window, publishers=[]), "problems": []}
        )
        for level in levels:
            new = streams[len(publishers) : level]
            for i, stream in enumerate(new, start=len(publishers)):
                publishers.append(publish(stream["publish_url"], source, OUT / f"publisher-{i}.log"))
            for stream in new:
                wait_until(
                    lambda s=stream: playlist_ready(ctx, s["id"]), 20, 0.2, f"HLS of stream {stream['id']}"
                )
            time.sleep(args.warmup)
            log(f"{level} publisher(s): measuring {args.window:.0f} s")
            row = measure(ctx, args.window, publishers=publishers)
            row.update(publishers=level, problems=check_streams(ctx, streams[:level], publishers))
            results["streams"].append(row)
            log(f"  nginx {row['nginx']}% of a core, other work {row['other']}%, problems {row['problems']}")
        for proc in publishers[1:]:
            kill_group(proc)
        del publishers[1:]
        if not publishers:
            publishers.append(publish(streams[0]["publish_url"], source, OUT / "publisher-0.log"))
        wait_until(lambda: playlist_ready(ctx, streams[0]["id"]), 20, 0.2, "HLS of the viewers' stream")
        url = status(ctx, streams[0]["id"])["playback_url"]
        time.sleep(args.warmup)
        for count in sorted(set(args.viewers)):
            viewers = None
            try:
                if count:
                    viewers = subprocess.Popen(
                        [sys.executable, str(HERE / "viewers.py"), "--url", url, "--count", str(count),
                         "--interval", str(fragment / 2), "--fragment", str(fragment)],
                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=(OUT / f"viewers-{count}.log").open("wb"),
                        text=True, start_new_session=True,
                    )  # fmt: skip
                    if viewers.stdout.readline().strip() != "ready":
                        raise RuntimeError(
                            f"viewers did not start: {(OUT / f'viewers-{count}.log').read_text()}"
                        )
                    time.sleep(args.warmup)
                log(f"1 stream, {count} viewer(s): measuring {args.window:.0f} s")
                row = measure(ctx, args.window, publishers=publishers, viewers=viewers)
                row.update(viewers=count, problems=check_streams(ctx, streams[:1], publishers))
                if viewers is not None:
                    viewers.send_signal(signal.SIGTERM)
                    out, _ = viewers.communicate(timeout=30)
                    row["load"] = json.loads(out.strip().splitlines()[-1])
                results["viewers"].append(row)
                log(f"  nginx {row['nginx']}%, viewers {row['viewers_cpu']}%, load {row.get('load')}")
            finally:
                if viewers is not None:
                    kill_group(viewers)
    finally:
        for proc in publishers:
            kill_group(proc)
    per_stream = slope([(r["publishers"], r["nginx"]) for r in results["streams"]])
    per_viewer = slope([(r["viewers"], r["nginx"]) for r in results["viewers"]])
    results["per_stream_pct"] = per_stream
    results["per_viewer_pct"] = per_viewer
    return results


# --- the report ------------------------------------------------------------------------------------


def fmt(value, digits: int = 2, unit: str = "") -> str:
    return "–" if value is None else f"{value:.{digits}f}{unit}"


def capacity(load: dict, media: dict) -> str:
    per_stream, per_viewer = load["per_stream_pct"], load["per_viewer_pct"]
    if not per_stream or not per_viewer or per_stream <= 0 or per_viewer <= 0:
        return "(a slope is not positive: no capacity estimate)"
    return (
        f"At {media['kbps']} kbit/s that is, by CPU alone, about {100 / per_stream:,.0f} streams or "
        f"{100 / per_viewer:,.0f} viewers per core of the single nginx worker. The template's "
        "`worker_connections 1000` (each viewer holds one keep-alive connection) caps a node's viewers well "
        "before that."
    )


def report(info: dict, config: dict, args, first: list[dict] | None, load: dict | None) -> str:
    fragment = config["hls_fragment"]
    lines = [
        "# Live streams: first frame to first playable segment, nginx CPU per stream and per viewer",
        "",
        f"`bench/live/run {' '.join(sys.argv[1:])}`".replace(" `", "`"),
        "",
        f"{info['date']}; {info['nproc']} CPUs ({info['model']}), Linux {info['kernel']}; {info['nginx']} "
        f"with Debian's libnginx-mod-rtmp; {info['ffmpeg']}. The app (uvicorn, embedded default: SQLite, "
        "no Redis), nginx, the publishers and the viewers all share these cores.",
        "",
        f"HLS as configured in `deploy/rtmp/nginx.conf.template`: `hls_fragment {fmt(fragment, 0)}s`, "
        f"`hls_playlist_length {fmt(config['hls_playlist_length'], 0)}s`.",
        "",
    ]
    if first is not None:
        good = [r for r in first if "playable" in r]
        failed = [r for r in first if "playable" not in r]
        lines += [
            "## 1. First published frame → first playable segment for a member",
            "",
            f"{len(first)} runs; each a new stream, ffmpeg publishing the e2e test's pattern (320x240, 25 fps, "
            f"libx264 ultrafast, GOP 25 = 1 s, AAC); a member polls the stream's status every {args.poll * 1000:.0f} ms "
            "and, through its `playback_url`, the playlist and its first segment. Times from ffmpeg's start.",
            "",
            "| from ffmpeg's start to | p50 | max | min |",
            "| --- | --- | --- | --- |",
        ]
        for key, label in (
            ("on_publish", "on_publish received (app log, ms resolution)"),
            ("live", "status says `live` (100 ms polls)"),
            ("segment_closed", "first segment complete on disk (its mtime)"),
            ("playlist", "signed playlist lists a segment"),
            ("playable", "**that segment downloaded, 200**"),
        ):
            values = [r[key] for r in good if key in r]
            if values:
                lines.append(
                    f"| {label} | {percentile(values, 50):.2f} s | {max(values):.2f} s | {min(values):.2f} s |"
                )
        extinf = [r["first_extinf"] for r in good if r.get("first_extinf")]
        lines += [""]
        if extinf:
            lines.append(
                f"The first segment's `#EXTINF`: {min(extinf):.2f}–{max(extinf):.2f} s. A segment is listed only once "
                f"it is complete, so the figure is dominated by the fragment length ({fmt(fragment, 0)} s, cut at the "
                "next keyframe) plus the publisher's start-up (ffmpeg start, RTMP handshake, on_publish, the push "
                "to the `hls` application); it cannot go below one fragment."
            )
        if failed:
            lines.append(
                f"\n**{len(failed)} run(s) failed**: "
                + "; ".join(f"run {r['run']}: {r['error']}" for r in failed)
            )
        lines += [
            "",
            "| run | on_publish | live | segment on disk | playlist | playable | first EXTINF | other work % |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in first:
            lines.append(
                f"| {r['run']} | {fmt(r.get('on_publish'))} | {fmt(r.get('live'))} | {fmt(r.get('segment_closed'))} | "
                f"{fmt(r.get('playlist'))} | "
                f"{fmt(r.get('playable'))} | {fmt(r.get('first_extinf'))} | {fmt(r.get('other_pct'), 0)} |"
            )
        lines.append("")
    if load is not None:
        media = load["media"]
        lines += [
            "## 2. nginx CPU per live stream and per HLS viewer",
            "",
            f"CPU of the `rtmp` process tree (nginx master + worker, /proc utime+stime, children included) over "
            f"{args.window:.0f} s windows, as % of one core. Publishers: `ffmpeg -re -stream_loop -1 -c copy` of a "
            f"pre-encoded {media['size']} H.264/AAC file at {media['kbps']} kbit/s (1 s GOP). Viewers: "
            f"bench/live/viewers.py, each re-fetching the signed playlist every {fragment / 2:.1f} s (fragment / 2) "
            "and downloading each new segment, starting 3 segments from the live edge (as hls.js); all viewers "
            "share one member's `playback_url`.",
            "",
            f"**Per live stream: {fmt(load['per_stream_pct'], 2)} % of one core** (slope over "
            f"{', '.join(str(r['publishers']) for r in load['streams'])} publishers). "
            f"**Per viewer: {fmt(load['per_viewer_pct'], 3)} % of one core** (slope over "
            f"{', '.join(str(r['viewers']) for r in load['viewers'])} viewers of one stream).",
            "",
            capacity(load, media),
            "",
            "| publishers | nginx % | nginx % per stream | nginx RSS | publishers' ffmpeg % | app % | "
            "other work % | problems |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in load["streams"]:
            per = r["nginx"] / r["publishers"] if r["publishers"] else None
            lines.append(
                f"| {r['publishers']} | {r['nginx']:.2f} | {fmt(per)} | {r['nginx_rss_mib']} MiB | "
                f"{r['publishers_cpu']:.2f} | {r['app']:.2f} | {r['other']:.1f} | "
                f"{'; '.join(r['problems']) or 'none'} |"
            )
        lines += [
            "",
            "| viewers | nginx % | viewers' process % | playlists/s | segments/s | MB/s out | segment ms p50 / max | "
            "longest gap | stalls (> 3 fragments) | errors |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in load["viewers"]:
            viewer = r.get("load")
            if viewer:
                span = viewer["seconds"]
                ms = viewer["segment_ms"]
                cells = (
                    f"{viewer['playlists'] / span:.1f} | {viewer['segments'] / span:.1f} | "
                    f"{viewer['bytes'] / span / 1e6:.2f} | {fmt(ms['p50'], 1)} / {fmt(ms['max'], 1)} | "
                    f"{fmt(viewer['max_gap_s'], 1, ' s')} | {viewer['stalls']} | {viewer['errors'] or 'none'}"
                )
            else:
                cells = "– | – | – | – | – | – | –"
            lines.append(f"| {r['viewers']} | {r['nginx']:.2f} | {r['viewers_cpu']:.2f} | {cells} |")
        problems = [p for r in load["streams"] + load["viewers"] for p in r["problems"]]
        if problems:
            lines += ["", "Problems seen: " + "; ".join(problems)]
        lines += [
            "",
            '"other work": cores busy on the machine (/proc/stat) minus everything this benchmark started, as % '
            "of one core; above a few % the windows shared the machine with something else.",
            "",
        ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description="Live-stream benchmark (bench/live/run)")
    parser.add_argument("--runs", type=int, default=10, help="first-frame runs (10)")
    parser.add_argument("--poll", type=float, default=0.1, help="poll interval, s (0.1)")
    parser.add_argument("--window", type=float, default=20, help="CPU window, s (20)")
    parser.add_argument("--idle-window", type=float, default=10, help="CPU window with no publisher, s (10)")
    parser.add_argument("--warmup", type=float, default=3, help="settle time before each window, s (3)")
    parser.add_argument("--publishers", type=lambda v: [int(x) for x in v.split(",")], default=[1, 4, 8])
    parser.add_argument("--viewers", type=lambda v: [int(x) for x in v.split(",")], default=[0, 10, 50])
    parser.add_argument("--size", default="1280x720", help="pre-encoded file's size (1280x720)")
    parser.add_argument("--bitrate", default="2500k", help="its video bitrate (2500k)")
    parser.add_argument("--length", type=int, default=10, help="its length, s (10)")
    parser.add_argument("--only", default="first,cpu", help="first, cpu or both (first,cpu)")
    args = parser.parse_args()
    only = set(args.only.split(","))

    missing = [tool for tool in ("nginx", "ffmpeg", "ffprobe", "lscpu") if not shutil.which(tool)]
    if not Path(MODULE).exists():
        missing.append("libnginx-mod-rtmp")
    if missing:
        log(f"missing: {', '.join(missing)} (scripts/install-system-packages)")
        return 2
    # SIGTERM unwinds like Ctrl-C, so every process started is stopped (ExitStack, finally).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    info, config = machine(), hls_config()
    first = load = None
    with ExitStack() as stack:
        ctx = start(stack)
        if "first" in only:
            first = first_segment(ctx, args.runs, args.poll)
        if "cpu" in only:
            load = cpu(ctx, args, config["hls_fragment"] or 1.0)
    (OUT / "results.json").write_text(
        json.dumps({"machine": info, "config": config, "first": first, "cpu": load}, indent=2)
    )
    text = report(info, config, args, first, load)
    RESULTS.write_text(text)
    print(text)
    failed = first is not None and any("playable" not in r for r in first)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
