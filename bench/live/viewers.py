"""N HLS viewers in one process (asyncio + httpx), run by livebench.py as its own process so its
CPU is counted apart from nginx's.

Each viewer behaves like hls.js on a live stream: it fetches the signed playlist every
``--interval`` seconds (the fragment length / 2), downloads every segment it has not seen yet
(starting, like hls.js, three segments from the live edge), one request at a time on its own
keep-alive connection. Prints "ready", counts from the start or from the last SIGUSR1 (the
measured window), and on SIGTERM/SIGINT prints one JSON object of counters:

  viewers, seconds, playlists, segments, bytes, errors (status -> count), segment_ms (p50, max),
  max_gap_s (the longest a viewer went without a new segment once it had one), stalls (gaps
  longer than 3 fragment lengths).

  python bench/live/viewers.py --url URL --count 10 --interval 0.5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
import time
from collections import Counter
from urllib.parse import urljoin

import httpx

LIVE_EDGE = 3  # hls.js liveSyncDurationCount


class Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """SIGUSR1: count from now on (the measured window starts)."""
        self.started = time.monotonic()
        self.playlists = 0
        self.segments = 0
        self.bytes = 0
        self.errors: Counter[str] = Counter()
        self.segment_ms: list[float] = []
        self.gaps: list[float] = []


async def viewer(url: str, interval: float, stop: asyncio.Event, stats: Stats) -> None:
    seen: set[str] = set()
    first = True
    last_new: float | None = None
    async with httpx.AsyncClient(timeout=10) as client:
        await asyncio.sleep(random.uniform(0, interval))  # viewers do not arrive in step
        while not stop.is_set():
            started = time.monotonic()
            try:
                playlist = await client.get(url)
                stats.playlists += 1
                if playlist.status_code != 200:
                    stats.errors[f"playlist {playlist.status_code}"] += 1
                else:
                    names = [line for line in playlist.text.splitlines() if line.endswith(".ts")]
                    if first and names:
                        seen.update(names[:-LIVE_EDGE])
                        first = False
                    new = [name for name in names if name not in seen]
                    for name in new:
                        t0 = time.monotonic()
                        segment = await client.get(urljoin(url, name))
                        seen.add(name)
                        if segment.status_code != 200:
                            stats.errors[f"segment {segment.status_code}"] += 1
                            continue
                        stats.segment_ms.append((time.monotonic() - t0) * 1000)
                        stats.segments += 1
                        stats.bytes += len(segment.content)
                    if new:
                        now = time.monotonic()
                        if last_new is not None:
                            stats.gaps.append(now - last_new)
                        last_new = now
            except httpx.HTTPError as exc:
                stats.errors[type(exc).__name__] += 1
            elapsed = time.monotonic() - started
            try:
                await asyncio.wait_for(stop.wait(), timeout=max(0.0, interval - elapsed))
            except TimeoutError:
                pass
        if last_new is not None:  # a viewer stuck at the end counts too
            stats.gaps.append(time.monotonic() - last_new)


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round((len(ordered) - 1) * p / 100))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="a signed playlist URL (playback_url)")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--interval", type=float, required=True, help="seconds between playlist fetches")
    parser.add_argument("--fragment", type=float, default=1.0, help="fragment length (for stalls)")
    args = parser.parse_args()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stats = Stats()
    loop.add_signal_handler(signal.SIGUSR1, stats.reset)
    print("ready", flush=True)
    await asyncio.gather(*(viewer(args.url, args.interval, stop, stats) for _ in range(args.count)))
    json.dump(
        {
            "viewers": args.count,
            "seconds": round(time.monotonic() - stats.started, 2),
            "playlists": stats.playlists,
            "segments": stats.segments,
            "bytes": stats.bytes,
            "errors": dict(stats.errors),
            "segment_ms": {"p50": percentile(stats.segment_ms, 50), "max": percentile(stats.segment_ms, 100)},
            "max_gap_s": max(stats.gaps, default=None),
            "stalls": sum(1 for gap in stats.gaps if gap > 3 * args.fragment),
        },
        sys.stdout,
    )
    print(flush=True)


if __name__ == "__main__":
    asyncio.run(main())
