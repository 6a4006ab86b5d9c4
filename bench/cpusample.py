"""Where the CPU went while a load test ran: the server under test, wrk, PostgreSQL, Redis, and
everything else on the machine (other work would distort the figures; it is reported, not hidden).

Usage: python bench/cpusample.py SERVER_PGID SECONDS [DBNAME] > out.json
Samples /proc every 0.5 s; prints CPU use in cores (CPU-seconds per second) per group, and with
DBNAME the most PostgreSQL backends seen at once on that database (from their process titles).
"""

from __future__ import annotations

import json
import os
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def snapshot() -> dict[int, tuple[str, int, int, float]]:
    """pid -> (comm, pgrp, cpu ticks, start ticks)"""
    procs = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                raw = fh.read()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        # fields[0] is state (field 3); utime=14, stime=15, pgrp=5, starttime=22 (1-based)
        procs[int(name)] = (comm, int(fields[2]), int(fields[11]) + int(fields[12]), int(fields[19]))
    return procs


def pg_backends(dbname: str) -> int:
    """PostgreSQL backends serving dbname: their titles read 'postgres: ... USER DBNAME HOST(...) ...'."""
    count = 0
    needle = f" {dbname} "
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                title = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if title.startswith("postgres: ") and needle in title:
            count += 1
    return count


def machine_busy() -> tuple[int, int]:
    with open("/proc/stat") as fh:
        parts = [int(x) for x in fh.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


def group(comm: str, pgrp: int, server_pgid: int) -> str:
    if pgrp == server_pgid:
        return "server"
    if comm == "wrk":
        return "wrk"
    if comm.startswith("postgres"):
        return "postgres"
    if comm.startswith("redis"):
        return "redis"
    return "other"


def main() -> None:
    server_pgid, seconds = int(sys.argv[1]), float(sys.argv[2])
    dbname = sys.argv[3] if len(sys.argv) > 3 else None
    max_backends = 0
    me = os.getpid()
    with open("/proc/uptime") as fh:
        boot_ticks_at_start = float(fh.read().split()[0]) * TICK
    first = snapshot()
    busy0, total0 = machine_busy()
    t0 = time.monotonic()
    seen: dict[int, tuple[str, int, int, int]] = {}  # pid -> (comm, pgrp, baseline, last)
    for pid, (comm, pgrp, ticks, _start) in first.items():
        seen[pid] = (comm, pgrp, ticks, ticks)
    while time.monotonic() - t0 < seconds:
        time.sleep(0.5)
        if dbname:
            max_backends = max(max_backends, pg_backends(dbname))
        for pid, (comm, pgrp, ticks, start) in snapshot().items():
            if pid in seen and seen[pid][0] == comm:
                c, g, base, _ = seen[pid]
                seen[pid] = (c, g, base, ticks)
            else:  # started during the window: all its CPU is in the window
                base = 0 if start >= boot_ticks_at_start else ticks
                seen[pid] = (comm, pgrp, base, ticks)
    elapsed = time.monotonic() - t0
    busy1, total1 = machine_busy()
    out = {"server": 0.0, "wrk": 0.0, "postgres": 0.0, "redis": 0.0, "other": 0.0}
    other_top: dict[str, float] = {}
    for pid, (comm, pgrp, base, last) in seen.items():
        if pid == me:
            continue
        cores = (last - base) / TICK / elapsed
        g = group(comm, pgrp, server_pgid)
        out[g] += cores
        if g == "other" and cores > 0.02:
            other_top[comm] = other_top.get(comm, 0.0) + cores
    ncpu = os.cpu_count() or 1
    out = {k: round(v, 2) for k, v in out.items()}
    out["machine_busy"] = round((busy1 - busy0) / max(total1 - total0, 1) * ncpu, 2)
    out["cores"] = ncpu
    if dbname:
        out["pg_backends_max"] = max_backends
    out["other_top"] = {k: round(v, 2) for k, v in sorted(other_top.items(), key=lambda kv: -kv[1])[:5]}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
