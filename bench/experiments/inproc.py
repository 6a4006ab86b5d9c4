"""Time GET /api/v1/users/me through Django's WSGI handler in-process (no HTTP server, no
network except PostgreSQL and Redis): what one request costs the app, per variant.

Usage (from the repo root, production env + BENCH_ACCESS set):
  BENCH_VARIANT=nohc,rawsql .venv/bin/python bench/experiments/inproc.py [N]
Prints: variant, wall median / p90 per request, and CPU per request of this process.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]
# BENCH_INPROC_SETTINGS=floor.settings times the bare floor the same way.
os.environ["DJANGO_SETTINGS_MODULE"] = os.environ.get("BENCH_INPROC_SETTINGS", "experiments.variant_settings")

import django  # noqa: E402

django.setup()

from django.core.handlers.wsgi import WSGIHandler  # noqa: E402

from experiments import patches  # noqa: E402

applied = patches.apply()
app = WSGIHandler()
token = os.environ["BENCH_ACCESS"]


def environ() -> dict:
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/api/v1/users/me",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "18080",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1:18080",
        "HTTP_AUTHORIZATION": f"Bearer {token}",
        "HTTP_USER_AGENT": "wrk",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


status_seen = []


def start_response(status, headers, exc_info=None):
    status_seen.append(status)


def one() -> None:
    result = app(environ(), start_response)
    b"".join(result)
    result.close()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    for _ in range(100):
        one()
    if not all(s.startswith("200") for s in status_seen):
        sys.exit(f"not 200: {set(status_seen)}")
    samples = []
    c0 = time.process_time()
    for _ in range(n):
        t0 = time.perf_counter_ns()
        one()
        samples.append(time.perf_counter_ns() - t0)
    cpu = (time.process_time() - c0) / n * 1e6
    samples.sort()
    print(
        json.dumps(
            {
                "variant": os.environ.get("BENCH_VARIANT", "")
                or os.environ.get("BENCH_INPROC_SETTINGS", "as-is"),
                "patched": applied,
                "wall_median_us": round(statistics.median(samples) / 1000),
                "wall_p90_us": round(samples[int(n * 0.9)] / 1000),
                "cpu_per_req_us": round(cpu),
                "all_200": all(s.startswith("200") for s in status_seen),
            }
        )
    )


if __name__ == "__main__":
    main()
