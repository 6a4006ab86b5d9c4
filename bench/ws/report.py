"""Turn bench/ws/out/*.json (written by bench/ws/load.js) into bench/ws/RESULTS.md on stdout.

Usage: .venv/bin/python bench/ws/report.py bench/ws/out > bench/ws/RESULTS.md
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

TARGET_FANOUT_P99_MS = 30.0
TARGET_SOCKETS_PER_NODE = 5000
TARGET_KIB_PER_SOCKET = 40.0


def sh(cmd: str) -> str:
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return ""


def machine() -> list[str]:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    mhz = sh("awk -F: '/cpu MHz/ {print $2; exit}' /proc/cpuinfo").strip()
    versions = []
    for dist in ("Django", "channels", "uvicorn", "websockets", "uvloop", "httptools", "redis", "psycopg"):
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    pg = sh("psql -h 127.0.0.1 -U postgres -XAtc 'show server_version'")
    redis = sh("redis-cli INFO server | awk -F: '/^redis_version/ {print $2}'").strip()
    return [
        f"- Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {os.cpu_count()} vCPU ({cpu}{', ' + mhz.split('.')[0] + ' MHz' if mhz else ''}), "
        f"{mem_kib / 1024 / 1024:.1f} GiB RAM, {platform.system()} {platform.release()}",
        f"- Server: Python {platform.python_version()}, {', '.join(versions)}; PostgreSQL {pg}, Redis {redis}",
        f"- Client: Node.js {sh('node --version')}, ws {client_ws_version()} (one process, every socket)",
        "- Nodes: the Procfile `ws` line (uvicorn synctv.asgi:application, one process each, no --workers), "
        "`SYNCTV_ENV=production`, `RATELIMIT_ENABLE=false`, `LOG_LEVEL=WARNING`, database and Redis on 127.0.0.1",
    ]


def client_ws_version() -> str:
    try:
        lock = json.loads((Path(__file__).parent / "package-lock.json").read_text())
        return lock["packages"]["node_modules/ws"]["version"]
    except Exception:
        return "?"


def load(out: Path, pattern: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob(pattern))]


def f(x, d=1) -> str:
    return "—" if x is None else f"{x:,.{d}f}"


def busy(cpu: dict) -> str:
    return f"{f(cpu.get('other_cpu_pct'), 0)} %"


def receiver(r: dict) -> str:
    """The load client's receive path (load.js --receiver); files from before the option: ws."""
    return (r.get("client") or {}).get("receiver") or "ws"


RECEIVER_LABEL = {"ws": "ws", "raw": "raw frames"}


def fanout_table(rows: list[dict]) -> list[str]:
    rows = sorted(rows, key=lambda r: (r["deflate"], r["members"], receiver(r) != "ws"))
    lines = [
        "| members (nodes) | deflate | client | last p50 / p99 | first p50 | spread (last−first) p50 / p99 | "
        "per-delivery p50 / p99 | events, missing | node CPU per delivery | client CPU per delivery | "
        "node CPU % (A, B) | PG+Redis+other CPU | connect |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        c = r["connect"]
        rcv = receiver(r)
        lines.append(
            f"| {r['members']:,} ({r['nodes']}) | {'on' if r['deflate'] else 'off'} "
            f"| {RECEIVER_LABEL.get(rcv, rcv)} "
            f"| **{f(r['last_ms']['p50'])} / {f(r['last_ms']['p99'])} ms** | {f(r['first_ms']['p50'])} ms "
            f"| {f(r['spread_ms']['p50'])} / {f(r['spread_ms']['p99'])} ms "
            f"| {f(r['delivery_ms']['p50'])} / {f(r['delivery_ms']['p99'])} ms "
            f"| {r['events']}, {r['missing']} | {f(r['node_cpu_us_per_delivery'], 0)} µs "
            f"| {f(r['client_cpu_us_per_delivery'], 0)} µs "
            f"| {', '.join(f(x, 0) for x in r['cpu']['node_cpu_pct'])} | {busy(r['cpu'])} "
            f"| {c['opened']:,}/{c['requested']:,} in {f(c['wall_s'])} s ({f(c['per_s'], 0)}/s), "
            f"largest hello {c['hello_bytes_max'] / 1024:.0f} KiB |"
        )
    return lines


def chat_table(r: dict) -> list[str]:
    lines = [
        f"{r['rooms']} rooms × {r['room_size']} members over {r['nodes']} nodes "
        f"({r['connect']['opened']:,} sockets), {r['phase_s']} s per step; each sender sends at most 1 "
        "message/s (the per-user chat limit: 5 burst, then 1/s, `RATELIMIT_ENABLE` does not lift it).",
        "",
        "| offered msg/s (senders) | accepted msg/s | delivered frames/s | rate limited | "
        "msg → last member p50 / p99 | per-delivery p50 / p99 | node CPU % (A, B) | client CPU % | "
        "PG+Redis+other CPU | node CPU per msg (per delivery) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p in r["phases"]:
        lines.append(
            f"| {p['offered_msgs_per_s']:,} ({p['senders']:,}) | {f(p['accepted_msgs_per_s'], 0)} "
            f"| **{f(p['delivered_frames_per_s'], 0)}** | {p['rate_limited']} "
            f"| {f(p['msg_last_ms']['p50'])} / {f(p['msg_last_ms']['p99'])} ms "
            f"| {f(p['delivery_ms']['p50'])} / {f(p['delivery_ms']['p99'])} ms "
            f"| {', '.join(f(x, 0) for x in p['cpu']['node_cpu_pct'])} | {f(p['cpu']['client_cpu_pct'], 0)} "
            f"| {busy(p['cpu'])} "
            f"| {f(p['node_cpu_us_per_accepted_msg'], 0)} µs ({f(p['node_cpu_us_per_delivery'], 0)} µs) |"
        )
    return lines


def idle_table(rows: list[dict]) -> list[str]:
    lines = [
        "| sockets on one node | deflate offered | opened / errors | connect rate | RSS before → after hello → after traffic "
        "| KiB per idle socket after hello | **KiB per idle socket after traffic** | node CPU while idle (10 s) "
        "| connect CPU per socket |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in sorted(rows, key=lambda r: (r["deflate"], r["requested"])):
        c = r["connect"]
        per_conn = r["connect_cpu"]["node_cpu_s"][0] * 1000 / max(1, c["opened"])
        lines.append(
            f"| {r['requested']:,} ({r['rooms']} rooms) | {'yes' if r['deflate'] else 'no'} "
            f"| {c['opened']:,} / {c['errors']} (alive after settle: {r['alive_after_settle']:,}) "
            f"| {f(c['per_s'], 0)}/s ({f(c['wall_s'])} s) "
            f"| {r['rss_before_kib'] / 1024:,.1f} → {r['rss_after_kib'] / 1024:,.1f} → "
            f"{r.get('rss_after_traffic_kib', 0) / 1024:,.1f} MiB "
            f"| {f(r['kib_per_socket'])} | **{f(r.get('kib_per_socket_after_traffic'))}** "
            f"| {f(r['idle_cpu_10s']['node_cpu_pct'][0])} % "
            f"| {f(per_conn)} ms |"
        )
    return lines


def storm_table(r: dict) -> list[str]:
    """`bench/ws/run storm` (not in the default run): audited playback writes taking turns."""
    return [
        f"The creators of {r['rooms']} rooms each send {r['per_room_per_s']} playback changes/s at once over "
        f"{len(r['cpu']['node_cpu_pct'])} nodes: every change is an audited write, and audited writes take turns on one lock "
        "cluster-wide.",
        "",
        "| offered changes/s | applied changes/s | change → own echo p50 / p99 | node CPU % (A, B) | PG+Redis+other CPU |",
        "| --- | --- | --- | --- | --- |",
        f"| {r['offered_per_s']:,} | **{f(r['applied_per_s'], 0)}** "
        f"| {f(r['change_to_own_echo_ms']['p50'])} / {f(r['change_to_own_echo_ms']['p99'])} ms "
        f"| {', '.join(f(x, 0) for x in r['cpu']['node_cpu_pct'])} | {busy(r['cpu'])} |",
    ]


def tree(r: dict) -> str:
    """Where the nodes ran (bench/ws/run NODE_TREE): commit, and the path unless it is this checkout."""
    t = r.get("node_tree") or {}
    if not t:
        return "—"
    here = str(Path(__file__).resolve().parents[2])
    dirty = f" + diff {t['uncommitted_diff']}" if t.get("uncommitted_diff") else ""
    return f"`{t.get('commit') or '?'}`{dirty}" + ("" if t.get("path") == here else f" ({t.get('path')})")


def ms3(s: dict | None) -> str:
    """p50 / p99 / max of a load.js summary, in ms."""
    if not s or not s.get("n"):
        return "—"
    return f"{f(s['p50'], 0)} / {f(s['p99'], 0)} / {f(s['max'], 0)} ms"


def fetched(r: dict) -> str:
    """The fill's member-page fetches; "none asked" for a run with ``--fetch none`` (the connect
    alone: its sockets hold the first page and the batches, not the whole list)."""
    if r.get("members_fetched") == "none":
        return "none asked"
    fe = r["members_fetch"]
    return f"{fe['requests']:,}, {fe['pages']:,} ({fe['page_bytes'] / 1024:,.0f} KiB)"


def fill_table(rows: list[dict]) -> list[str]:
    lines = [
        "| members (nodes) | protocol offered → accepted | nodes from | fill time | connects/s | connect → hello p50 / p99 / max "
        "| node CPU per connect | client CPU per connect | PG+Redis+other CPU | presence deliveries (per socket) "
        "| hello / joined / left / changed / other | largest hello | members fetch (requests, pages) "
        "| sockets with all N members |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in sorted(
        rows, key=lambda r: (r["members"], r["protocol_offered"] != "v2", r.get("members_fetched") == "none")
    ):
        fr, c = r["frames"], r["connect"]
        kinds = " / ".join(
            f"{fr[k]['count']:,} ({fr[k]['bytes'] / 1024 / 1024:,.1f} MiB)"
            for k in ("hello", "member_joined", "member_left", "members_changed", "other")
        )
        lines.append(
            f"| {c['opened']:,}/{r['members']:,} ({r['nodes']}) | {r['protocol_offered']} → {(r.get('ws') or {}).get('protocol')} "
            f"| {tree(r)} | **{f(r['fill_ms'] / 1000, 2)} s** | {f(r['connects_per_s'], 0)} | {ms3(c['connect_ms'])} "
            f"| **{f(r['node_cpu_ms_per_connect'], 1)} ms** | {f(r['client_cpu_ms_per_connect'], 1)} ms | {busy(r['cpu'])} "
            f"| **{r['presence_deliveries']:,}** ({f(r['presence_deliveries_per_socket'], 0)}), "
            f"{r['presence_bytes'] / 1024 / 1024:,.1f} MiB | {kinds} | {r['largest_hello_bytes'] / 1024:,.1f} KiB "
            f"| {fetched(r)} "
            f"| {r['sockets_with_all_members']:,}/{c['opened']:,} |"
        )
    return lines


def move_table(rows: list[dict]) -> list[str]:
    lines = [
        "| members (moved) | protocol → accepted | nodes from | changes sent → applied (refused) | server_shutdown "
        "| notice → new hello p50 / p99 / max "
        "| SIGTERM → last hello | refusals (attempts) | moved: event gap (drain: longest silence) p50 / p99 / max "
        "| versions missed as event "
        "(not covered by the hello) | stayed on A: send → arrival before / during the move "
        "| stayed on A: longest silence p50 / max |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        refused = ", ".join(f"{k} {v}" for k, v in sorted((r.get("sender_refused") or {}).items())) or "none"
        sd = r.get("server_shutdown") or {}
        notice = (
            f"after {sd.get('reconnect_after_ms')} ms, window {sd.get('reconnect_window_ms', '— (0–1,000 ms used)')}"
            + (f", drain {sd['drain_ms']} ms" if sd.get("drain_ms") else "")
            if sd
            else "none"
        )
        refusals = ", ".join(f"{k}: {v}" for k, v in sorted(r["refusals"].items())) or "none"
        lat = r["latency_ms"]["stayed_on_a"]
        # Make before break (a drain): no reconnect gap to measure; the longest silence between
        # two events of each moved client from the SIGTERM to 2 s after the last new hello.
        gap = r["moved_longest_silence_ms"] if sd.get("drain_ms") else r["event_gap_ms"]
        lines.append(
            f"| {r['members']:,} ({r['moved_back']}/{r['moved']} back) | {r['protocol_offered']} → {(r.get('ws') or {}).get('protocol')} "
            f"| {tree(r)} | {r['sent']:,} → {r.get('versions', r['sent']):,} ({refused}) | {notice} "
            f"| **{ms3(r['notice_to_hello_ms'])}** | {f(r['sigterm_to_last_hello_ms'] / 1000, 2)} s "
            f"| {refusals} ({r['attempts']:,}) | **{ms3(gap)}** "
            f"| {r['missed_as_event_total']:,} ({r['missed_not_covered_by_hello_total']:,}) "
            f"| {ms3(lat.get('before'))}; {ms3(lat.get('during'))} "
            f"| {f(r['stayed_longest_silence_ms'].get('p50'), 0)} / {f(r['stayed_longest_silence_ms'].get('max'), 0)} ms |"
        )
    return lines


def verdicts(fan: list[dict], idle: list[dict]) -> list[str]:
    out = ["| target | measured | |", "| --- | --- | --- |"]
    big = sorted(
        (r for r in fan if r["members"] >= 1000 and not r["deflate"]),
        key=lambda r: receiver(r) != "ws",  # the ws client's row first: the comparable figure
    )
    for r in big:
        p99 = r["last_ms"]["p99"]
        ok = "met" if p99 <= TARGET_FANOUT_P99_MS else "**missed**"
        how = (
            ""
            if receiver(r) == "ws"
            else f" — {RECEIVER_LABEL.get(receiver(r), receiver(r))} client (a lower client floor, see README)"
        )
        out.append(
            f"| 1,000 members in one room over 2 nodes, last p99 ≤ {TARGET_FANOUT_P99_MS:.0f} ms{how} "
            f"| p50 {f(r['last_ms']['p50'])} / p99 {f(p99)} ms | {ok} |"
        )
    for r in sorted(idle, key=lambda r: r["deflate"]):
        label = (
            "client offers deflate like browsers (the server may decline it)"
            if r["deflate"]
            else "no deflate (lean client)"
        )
        kib = r.get("kib_per_socket_after_traffic", r["kib_per_socket"])
        ok_m = kib <= TARGET_KIB_PER_SOCKET
        if r["requested"] >= TARGET_SOCKETS_PER_NODE:
            ok_n = "met" if r["alive_after_settle"] >= TARGET_SOCKETS_PER_NODE else "**missed**"
        else:
            ok_n = f"(count not tried: {r['requested']:,} sockets)"
        out.append(
            f"| {TARGET_SOCKETS_PER_NODE:,} sockets per node, ≤ {TARGET_KIB_PER_SOCKET:.0f} KiB each — {label} "
            f"| {r['alive_after_settle']:,} sockets, {f(kib)} KiB each (after traffic) "
            f"| {ok_n} / {'met' if ok_m else '**missed**'} |"
        )
    return out


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "out")
    fan = load(out, "fanout-*.json")
    chat = load(out, "chat.json")
    idle = load(out, "idle-*.json")
    storm = load(out, "storm.json")
    fill = load(out, "fill-*.json")
    move = load(out, "move-*.json")
    md = [
        "# WebSocket benchmark results",
        "",
        "Written by `bench/ws/run` (`bench/ws/report.py` from `bench/ws/out/*.json`). What each figure "
        "means and what limits it: `bench/ws/README.md`.",
        "",
        *machine(),
        "",
        "Server, PostgreSQL, Redis and the load client share the same cores. "
        '"PG+Redis+other CPU" is machine busy time minus the nodes and the client: PostgreSQL, Redis, and '
        "anything else that ran on the machine during the measurement (it should stay well under 100 %).",
        "",
        "## Targets",
        "",
        *verdicts(fan, idle),
        "",
    ]
    if fan:
        md += [
            "## Fan-out: one `playback` change to every member of one room",
            "",
            "Members split evenly over the nodes (the sender, the room creator, on node A). "
            '"last" = from the sender\'s `ws.send` to the arrival at the last member, p50/p99 over the events; '
            '"first" = to the first member (the write path alone); "spread" = last − first (the fan-out alone). '
            '"client": how the load client read the frames after each socket\'s `hello` — "ws" = the `ws` '
            'package\'s own receiver (comparable with earlier runs and the older figures), "raw frames" = a '
            "minimal frame parser on the socket (`load.js --receiver raw`), which lowers the client's own CPU "
            'per frame, a floor under "last" that belongs to the measurement (README).',
            "",
            *fanout_table(fan),
            "",
        ]
    if chat:
        md += ["## Chat throughput", "", *chat_table(chat[0]), ""]
    if idle:
        md += [
            "## Idle sockets on one node (memory)",
            "",
            "RSS (VmRSS of the single uvicorn process) after a warm-up; then after every socket got its "
            "`hello`, the join announcements died down and at least one presence heartbeat passed; then "
            "again after ~8 KB of chat reached every socket (5 messages of 1,500 characters per room) and the "
            "node went idle. Memory that is only touched when a socket first carries data (compressor windows) "
            "shows in the last figure only; the target is judged on it.",
            "",
            *idle_table(idle),
            "",
        ]
    if storm:
        md += ["## Playback storm", "", *storm_table(storm[0]), ""]
    if fill:
        md += [
            "## Fill: N members join one room",
            "",
            "`bench/ws/run fill`: the members of the fan-out room connect over 2 fresh nodes (alternating, "
            "32 handshakes in flight). Fill time = first connect started → last `hello`. Node CPU per connect = "
            "both nodes' CPU during the fill ÷ sockets. Presence deliveries = the `hello`, `member_joined`, "
            "`member_left` and `members_changed` frames all sockets received until SETTLE s after the last hello "
            "(frame count, MiB); the `members` fetch (v2: the rest of the list after the hello's first page) "
            "is counted apart. Sockets with all N members: each socket's own member list at the end (README).",
            "",
            *fill_table(fill),
            "",
        ]
    if move:
        md += [
            "## Move: node B stops while the room plays",
            "",
            "`bench/ws/run move`: members over nodes A and B, the sender on A changes playback every 100 ms; "
            "node B gets SIGTERM and its clients reconnect to A as the page does (with a drain: the new socket "
            "opened beside the old one, which is closed after the new hello). Notice → new hello per moved "
            "client; event gap = the last `playback` event before the notice → the first after the new hello "
            "(with a drain: each moved client's longest silence between two events); "
            "versions missed = playback versions every client on A got as events that a moved client did not "
            "(those newer than its new hello's state in brackets: real losses). Latencies p50 / p99 / max.",
            "",
            *move_table(move),
            "",
        ]
    print("\n".join(md))


if __name__ == "__main__":
    main()
