"""Assemble bench/out/*.json into a Markdown report: print it and write bench/RESULTS.md.

Usage: python bench/report.py OUT_DIR RESULTS_MD   (bench/run passes both; env BENCH_* describe
the commands that were run).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

TARGET_RPS = 1000.0
TARGET_FLOOR_RATIO = 0.90
BUSY_CORES = 0.2  # other work above this during a load test distorts req/s on 2 cores


def load(out: Path, name: str) -> dict | None:
    path = out / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def mem_total() -> str:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return "?"


def version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "-"


def sh(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def ms(v) -> str:
    return "-" if v is None else f"{v:.1f} ms"


def us(entry: dict | None) -> tuple[str, str]:
    if not entry:
        return "-", "-"

    def fmt(x: float) -> str:
        return f"{x / 1000:.2f} ms" if x >= 1000 else f"{x:.0f} µs"

    return fmt(entry["median_us"]), fmt(entry["p90_us"])


def main() -> None:
    out, results_md = Path(sys.argv[1]), Path(sys.argv[2])
    env = os.environ
    web, ws, ws0, floor = load(out, "web"), load(out, "ws"), load(out, "ws0"), load(out, "floor")
    micro = load(out, "micro") or {}
    lines: list[str] = []
    add = lines.append

    add("# Benchmark results: authenticated `GET /api/v1/users/me`")
    add("")
    add(
        f"Run {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')} by `bench/run`; see `bench/README.md` "
        "for what each figure means."
    )
    add("")
    add("## Machine")
    add("")
    add("| | |")
    add("| --- | --- |")
    add(f"| CPUs (`nproc`) | {sh('nproc')} |")
    add(f"| CPU model | {cpu_model()} |")
    add(f"| RAM | {mem_total()} |")
    add(f"| load average before the run | {env.get('BENCH_LOADAVG', '?')} |")
    add(f"| kernel | {platform.release()} |")
    add(f"| Python / Django | {platform.python_version()} / {version('Django')} |")
    add(
        f"| DRF / simplejwt / PyJWT / cryptography | {version('djangorestframework')} / "
        f"{version('djangorestframework-simplejwt')} / {version('PyJWT')} / {version('cryptography')} |"
    )
    servers = " / ".join(version(p) for p in ("gunicorn", "uvicorn", "psycopg"))
    add(f"| gunicorn / uvicorn / psycopg | {servers} |")
    pg, rd = env.get("BENCH_PG_VERSION", "?"), env.get("BENCH_REDIS_VERSION", "?")
    add(f"| PostgreSQL / Redis | {pg} / {rd} |")
    add(
        f"| load generator | `{env.get('BENCH_WRK_ARGS', '?')}` (wrk {env.get('BENCH_WRK_VERSION', '?')}), "
        "on the same cores as the server |"
    )
    add("")

    add("## Authenticated read, 50 concurrent clients")
    add("")
    busy = {
        name: cpu["other"]
        for name in ("web", "ws", "ws0", "floor")
        if (cpu := load(out, f"{name}.cpu")) and cpu.get("other", 0) > BUSY_CORES
    }
    if busy:
        where = ", ".join(f"{k} {v:.2f} cores" for k, v in busy.items())
        add(
            f"**Warning: other work used the machine during the load tests ({where}); req/s and "
            "latencies are low for that reason. Compare the CPU-per-request columns, or run again "
            "on a quiet machine.**"
        )
        add("")
    columns = [
        "server", "req/s", "p50", "p90", "p99", "max", "requests", "vs floor",
        "server CPU / req", "PG + Redis CPU / req", "other work", "PG conns (max)",
    ]  # fmt: skip
    add("| " + " | ".join(columns) + " |")
    add("|" + " --- |" * len(columns))
    rows = [
        ("`web`: gunicorn, synctv.wsgi (Procfile)", web),
        ("`ws`: uvicorn, synctv.asgi (Procfile + `--workers 2`)", ws),
        ("`ws` with `DB_CONN_MAX_AGE=0` (no persistent connections)", ws0),
        ("bare floor: DRF + simplejwt RS256 + PostgreSQL, gunicorn 2 sync", floor),
    ]
    failed: list[str] = []
    for name, r in rows:
        if not r:
            add(f"| {name} | not run | | | | | | | | | | |")
            continue
        if r.get("failed"):
            err_file = out / f"{r['label']}.error.txt"
            err = err_file.read_text().strip() if err_file.exists() else ""
            cpu = load(out, f"{r['label']}.cpu") or {}
            conns = cpu.get("pg_backends_max", "?")
            add(
                f"| {name} | **FAILED**: {r['non_2xx_3xx']} of {r.get('requests', '?')} responses were "
                f"errors, {r['socket_errors'] or 'no'} socket errors; up to {conns} PostgreSQL "
                f"connections; first server error: `{err[:160]}` | | | | | | | | | | | |"
            )
            failed.append(r["label"])
            continue
        ratio = f"{100 * r['rps'] / floor['rps']:.0f}%" if floor else "-"
        cpu = load(out, f"{r['label']}.cpu")
        if cpu:
            server_ms = f"{1000 * cpu['server'] / r['rps']:.2f} ms"
            deps_ms = f"{1000 * (cpu['postgres'] + cpu['redis']) / r['rps']:.2f} ms"
            other = f"{cpu['other']:.2f} cores"
            conns = cpu.get("pg_backends_max")
        else:
            server_ms = deps_ms = other = "-"
            conns = None
        add(
            f"| {name} | **{r['rps']:.0f}** | {ms(r.get('p50_ms'))} | {ms(r.get('p90_ms'))} | "
            f"{ms(r.get('p99_ms'))} | {ms(r.get('max_ms'))} | {r.get('requests', '-')} | {ratio} | "
            f"{server_ms} | {deps_ms} | {other} | {conns if conns is not None else '-'} |"
        )
    add("")
    if failed:
        add(f"**{', '.join(failed)}: FAILED** — error responses are not results; see bench/out/*.log.")
        add("")
    add(
        "Every figure shown is from a run with 0 non-2xx responses and 0 socket errors (a run with "
        "errors is shown as FAILED instead), and the response was checked to be `200` with the bench "
        'user\'s JSON before and after. "PG conns (max)" is the most PostgreSQL backends seen at '
        "once on the bench database during the run."
    )
    add("")
    add(
        "CPU columns come from sampling /proc during the measured run (bench/cpusample.py): CPU "
        "seconds used by the server's process group (master + workers), and by PostgreSQL + Redis, "
        "per request. They do not depend on how busy the machine was, so they compare designs "
        'even when throughput does not. "other work" is CPU used meanwhile by processes that are '
        "not the server, wrk, PostgreSQL or Redis (on a 2-core machine anything above ~0.1 "
        "cores lowers req/s)."
    )
    add("")
    add("Commands (bind host forced to 127.0.0.1):")
    add("")
    for key, label in (("BENCH_WEB_CMD", "web"), ("BENCH_WS_CMD", "ws, ws0"), ("BENCH_FLOOR_CMD", "floor")):
        if env.get(key):
            add(f"- {label}: `{env[key]}`")
    add("")
    add(
        "Environment: `SYNCTV_ENV=production`, `DATABASE_URL=" + env.get("BENCH_DB_SAFE", "?") + "` (a role "
        "limited to " + env.get("BENCH_PG_CONN_LIMIT", "?") + " connections, so a leak cannot starve the "
        "PostgreSQL server), "
        "`REDIS_URL=" + env.get("REDIS_URL", "?") + "`, `SECURE_SSL_REDIRECT=false`, "
        "`RATELIMIT_ENABLE=false`, `LOG_LEVEL=WARNING`, `ALLOWED_HOSTS=127.0.0.1,localhost`."
    )
    add("")

    add("## Target")
    add("")
    if web:
        ok_rps = web["rps"] >= TARGET_RPS
        verdict = "met" if ok_rps else "NOT met"
        add(f"- `web` >= {TARGET_RPS:.0f} req/s: **{verdict}** ({web['rps']:.0f} req/s)")
        if floor:
            ratio = web["rps"] / floor["rps"]
            ok_floor = ratio >= TARGET_FLOOR_RATIO
            add(
                f"- `web` within 10% of the bare floor measured in this run: "
                f"**{'met' if ok_floor else 'NOT met'}** ({100 * ratio:.0f}% of {floor['rps']:.0f} req/s)"
            )
            wcpu, fcpu = load(out, "web.cpu"), load(out, "floor.cpu")
            if wcpu and fcpu and wcpu["server"] and fcpu["server"]:
                web_ms = 1000 * wcpu["server"] / web["rps"]
                floor_ms = 1000 * fcpu["server"] / floor["rps"]
                add(
                    f"- the same judged by server CPU per request, which other work on the machine does "
                    f"not distort: `web` {web_ms:.2f} ms vs floor {floor_ms:.2f} ms, i.e. `web` can reach "
                    f"≈ {100 * floor_ms / web_ms:.0f}% of the floor's throughput"
                )
        add("- The design's floor on its machine: 1,061-1,133 req/s, p50 43-46 ms, p99 59-62 ms.")
    add("")

    add("## Micro costs (one thread, in-process, same PostgreSQL + Redis)")
    add("")
    add("| cost | median | p90 | n |")
    add("| --- | --- | --- | --- |")
    names = [
        ("rs256_verify_pyjwt", "RS256 verify alone (`jwt.decode` with a loaded key)"),
        ("access_token_verify", "one RS256 verify through our backend: `AccessToken(raw)`"),
        ("auth_pipeline", "`authenticate_access_token(raw)`, user row cached: verify + one Redis `MGET`"),
        ("auth_pipeline_miss", "the same, cache emptied first: verify + Redis + one PostgreSQL query"),
        ("auth_pipeline_request", "the miss after `close_old_connections()` (a session's first request)"),
        ("redis_exists", "one Redis `EXISTS` round trip"),
        ("pg_select1", "one PostgreSQL `SELECT 1` round trip"),
        ("rs256_sign", "mint + RS256-sign one access token"),
        ("argon2id_hash", "one Argon2id hash (19 MiB, t=2, p=1)"),
        ("login", "one login: `services.user_login()`"),
    ]
    for key, label in names:
        med, p90 = us(micro.get(key))
        n = micro.get(key, {}).get("n", "-")
        add(f"| {label} | {med} | {p90} | {n} |")
    meta = micro.get("meta", {})
    if meta:
        add("")
        add(
            f"Token size {meta.get('token_bytes')} bytes; `CONN_MAX_AGE={meta.get('conn_max_age')}`, "
            f"`CONN_HEALTH_CHECKS={meta.get('conn_health_checks')}`; hasher `{meta.get('hasher')}`."
        )
    if micro.get("login"):
        per_core = 1e6 / micro["login"]["median_us"]
        add(f"One core completes ≈ {per_core:.0f} logins/s at this median.")
    add("")

    text = "\n".join(lines)
    results_md.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
