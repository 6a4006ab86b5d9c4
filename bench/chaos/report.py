"""Figures and the human summary of a chaos run (bench/chaos/chaos.py calls these).

``python bench/chaos/report.py out/chaos-<stamp>.json`` prints the summary of a run again.
"""

from __future__ import annotations

import json
import math
import sys
from collections import Counter

GRACE_S = 5.0  # after a fault ends, its expected errors are still expected this long
RESTARTS = ("ws_sigterm", "rolling_restart")


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return round(ordered[k], 3)


def dist(values: list[float]) -> dict:
    return {"n": len(values), "p50": pct(values, 50), "p99": pct(values, 99), "max": pct(values, 100)}


def in_window(t: float, fault: dict | None, grace: float = GRACE_S) -> bool:
    return fault is not None and fault["start"] <= t <= fault.get("end", fault["start"]) + grace


def in_any(t: float, faults: list[dict], grace: float = GRACE_S) -> bool:
    return any(in_window(t, f, grace) for f in faults)


def classify(result: dict, load: dict) -> tuple[Counter, Counter, list]:
    """Every error the clients saw, expected or not (README, "Expected errors"); with
    CHAOS_CYCLES > 1, every occurrence of a fault has its window."""
    pgs = [f for f in result["faults"] if f["name"] == "pg_cut"]
    restarts = [f for f in result["faults"] if f["name"] in RESTARTS]
    expected, unexpected, samples = Counter(), Counter(), []
    for t, kind, status, code, ms in load["rest"]:
        if 200 <= status < 300:
            continue
        key = f"rest:{kind}:{status}:{code}"
        # A request in flight when the cut began counts as during it: [sent, answered] overlaps.
        if status == 503 and code == "service_degraded" and (in_any(t, pgs) or in_any(t + ms / 1000, pgs)):
            expected[key] += 1
        else:
            unexpected[key] += 1
            if len(samples) < 40:
                samples.append({"t": t, "what": key})
    for t, client, kind in load["ws_events"]:
        key = f"ws:{kind}"
        ok = False
        restart_kinds = ("close:1012", "close:1013", "refused:1012", "refused:1013")
        if kind in restart_kinds and in_any(t, restarts):
            ok = True
        if in_any(t, pgs) and (
            kind in ("close:1013", "frame:service_degraded") or kind.endswith(":service_degraded")
        ):
            ok = True
        if ok:
            expected[key] += 1
        else:
            unexpected[key] += 1
            if len(samples) < 80:
                samples.append({"t": t, "client": client, "what": key})
    return expected, unexpected, samples


def analyse(result: dict, load: dict) -> dict:
    faults = {f["name"]: f for f in result["faults"]}
    probe = {str(c["i"]) for c in load["clients"] if c["probe"]}
    fig: dict = {}

    def window_clients(name: str) -> dict:
        stats = load["win_stats"].get(name, {})
        gaps_probe = [v[0] for k, v in stats.items() if k in probe]
        lags = [v[1] for v in stats.values()]
        after_answer = [v[2] for v in stats.values() if len(v) > 2]
        recon = [r[2] for r in load["reconnects"] if in_window(r[0], faults.get(name), 0)]
        handshake = [r[4] for r in load["reconnects"] if in_window(r[0], faults.get(name), 0)]
        closes = Counter(f"{r[1]}" for r in load["reconnects"] if in_window(r[0], faults.get(name), 0))
        moved = [r[1] for r in load.get("handovers", []) if in_window(r[0], faults.get(name))]
        return {
            "handover_dial_to_hello_s": dist(moved),
            "longest_gap_probe_clients_s": dist(gaps_probe),
            "longest_lag_all_clients_s": dist(lags),
            "longest_delivery_after_answer_s": dist(after_answer),
            "reconnect_close_to_hello_s": dist(recon),
            "reconnect_last_attempt_to_hello_s": dist(handshake),
            "reconnects_by_close_code": dict(closes),
        }

    # PostgreSQL cut
    pg = faults.get("pg_cut")
    if pg:
        back = pg["db_back"]
        during = [r for r in load["rest"] if pg["start"] <= r[0] <= back]
        degraded = [r[4] for r in during if r[2] == 503]
        # From 1 s into the cut every process has had the 3 failures that open its breaker.
        degraded_open = [r[4] for r in during if r[2] == 503 and r[0] >= pg["start"] + 1]
        opened = sorted({r[1] for r in result["readyz"] if pg["start"] <= r[0] <= back and r[3] == "open"})
        after = [r for r in load["rest"] if r[0] >= back]
        failures_after = [
            r[0] + r[4] / 1000 - back for r in after if not 200 <= r[2] < 300 and r[0] < back + 60
        ]
        first_ok = [r[0] + r[4] / 1000 - back for r in after if 200 <= r[2] < 300]
        ws_after = [
            e[0] - back
            for e in load["ws_events"]
            if back <= e[0] <= back + 60 and ("service_degraded" in e[2] or e[2] == "close:1013")
        ]
        last_failure = max(failures_after + ws_after, default=0.0)
        fig["pg_cut"] = {
            "seconds": round(back - pg["start"], 1),
            "requests_during": len(during),
            "answers_during": dict(Counter(f"{r[2]}:{r[3]}" for r in during)),
            "breaker_seen_open_on": opened,
            "latency_503_ms": dist(degraded),
            "latency_503_ms_from_1s": dist(degraded_open),
            "slow_503_over_50ms_from_1s": sum(1 for x in degraded_open if x > 50),
            "all_readyz_200_after_s": pg.get("all_readyz_200_after_s"),
            "last_client_failure_after_s": round(last_failure, 3),
            "first_client_2xx_after_s": round(min(first_ok), 3) if first_ok else None,
            "recovery_s": max(pg.get("all_readyz_200_after_s") or 999, round(last_failure, 3)),
            **window_clients("pg_cut"),
        }

    # Redis restart
    rd = faults.get("redis_restart")
    if rd:
        back = rd["redis_back"]
        reads = [
            r
            for r in load["rest"]
            if r[1] in ("room_get", "playback_get") and rd["start"] <= r[0] <= back + 2
        ]
        flow = load["flow"].get("redis_restart", {})
        late_outage = [x for x in load.get("late", []) if rd["start"] <= x[0] <= back]
        worst: dict[int, float] = {}
        for _sent, got, client, _room, _how in late_outage:
            worst[client] = max(worst.get(client, 0.0), got - back)
        behind = list(worst.values())
        # flow: room id -> first delivery after Redis returned; the probe rooms have a dense stream.
        fig["redis_restart"] = {
            "down_s": round(back - rd["start"], 1),
            "authenticated_reads": len(reads),
            "failed_authenticated_reads": sum(1 for r in reads if r[2] != 200),
            "failed_reads_by_answer": dict(Counter(f"{r[2]}:{r[3]}" for r in reads if r[2] != 200)),
            "events_flow_again_s_probe_rooms": dist(
                [v for k, v in flow.items() if k in load.get("probe_room_ids", [])]
            ),
            "events_flow_again_s_all_rooms": dist(list(flow.values())),
            "rooms_without_event_after": load["rooms"] - len(flow),
            "all_readyz_200_after_s": rd.get("all_readyz_200_after_s"),
            # Changes made while Redis was down reach the other node's clients only with a later
            # change or a new hello: how long after Redis's return each client was still behind.
            "behind_after_return_s": dist(behind),
            "clients_behind_over_2s_after_return": sum(1 for x in behind if x > 2),
            "behind_by_kind": dict(Counter(x[4] for x in late_outage)),
            **window_clients("redis_restart"),
        }

    for name in RESTARTS:
        f = faults.get(name)
        if f:
            survival = [p for p in load["survival"]["problems"] if in_window(p["t"], f, 30)]
            fig[name] = {
                "seconds": round(f["end"] - f["start"], 1),
                "steps": f.get("steps"),
                "playback_survival_problems": len(survival),
                **window_clients(name),
            }
    gk = faults.get("gunicorn_worker_kill")
    if gk:
        rest = [r for r in load["rest"] if in_window(r[0], gk)]
        fig["gunicorn_worker_kill"] = {
            "respawn_s": gk.get("respawn_s"),
            "requests": len(rest),
            "non_2xx": dict(Counter(f"{r[1]}:{r[2]}:{r[3]}" for r in rest if not 200 <= r[2] < 300)),
        }

    expected, unexpected, samples = classify(result, load)
    fig["errors"] = {
        "expected": dict(expected),
        "unexpected": dict(unexpected),
        "unexpected_total": sum(unexpected.values()),
        "unexpected_samples": samples,
    }
    rest_all = load["rest"]
    fig["rest_overall"] = {
        "requests": len(rest_all),
        "by_kind_status": dict(Counter(f"{r[1]}:{r[2]}" for r in rest_all)),
        "latency_ms_2xx": dist([r[4] for r in rest_all if 200 <= r[2] < 300]),
    }
    clients = load["clients"]
    fig["clients"] = {
        "connected": sum(1 for c in clients if c["connected"]),
        "stopped_for_good": dict(Counter(c["stopped"] for c in clients if c["stopped"])),
        "longest_gap_whole_run_probe_s": dist([c["max_gap"] for c in clients if c["probe"]]),
        "longest_gap_whole_run_all_s": dist([c["max_gap"] for c in clients]),
        "longest_lag_whole_run_all_s": dist([c["max_lag"] for c in clients]),
        "reconnects": len(load["reconnects"]),
        "reconnect_close_to_hello_s": dist([r[2] for r in load["reconnects"]]),
        "handovers": len(load.get("handovers", [])),
        "frames_received": load["frames_received"],
        "playback_hellos_checked": load["survival"]["hellos_checked"],
        "playback_survival_problems": len(load["survival"]["problems"]),
    }
    v = result["verify"]
    fig["lost"] = {
        "chats": f"{len(v['chats_lost'])} of {v['chats_acked']}",
        "playback": f"{len(v['playback_lost'])} of {v['playback_acked']}",
        "movies": f"{len(v['movies_lost'])} of {v['movies_acked']}",
        "total": len(v["chats_lost"]) + len(v["playback_lost"]) + len(v["movies_lost"]),
        "playback_final_below_acked": len(v["playback_final_below_acked"]),
    }
    rss = result["rss"]
    mem = {}
    if "start" in rss and "end" in rss:
        for role, start in rss["start"]["roles"].items():
            end = rss["end"]["roles"].get(role)
            if end and start["total_kb"]:
                change = 100 * (end["total_kb"] - start["total_kb"]) / start["total_kb"]
                mem[role] = {
                    "boot_mb": round(
                        rss.get("boot", {}).get("roles", {}).get(role, {}).get("total_kb", 0) / 1024, 1
                    ),
                    "start_mb": round(start["total_kb"] / 1024, 1),
                    "end_mb": round(end["total_kb"] / 1024, 1),
                    "change_pct": round(change, 1),
                    "cpu_s_start_to_end": cpu_between(start, end),
                }
    ws = [v for k, v in mem.items() if k.startswith("ws-")]
    if ws:
        # Sockets move between the ws nodes by design (a stopped node's go to the others and stay
        # there): what they hold is compared as one.
        start_mb, end_mb = sum(v["start_mb"] for v in ws), sum(v["end_mb"] for v in ws)
        mem["ws (all nodes)"] = {
            "boot_mb": round(sum(v["boot_mb"] for v in ws), 1),
            "start_mb": round(start_mb, 1),
            "end_mb": round(end_mb, 1),
            "change_pct": round(100 * (end_mb - start_mb) / start_mb, 1) if start_mb else 0.0,
            "cpu_s_start_to_end": round(sum(v["cpu_s_start_to_end"] for v in ws), 1),
        }
    fig["rss"] = mem
    fig["rss_last_cycle"] = last_cycle_growth(rss)
    fig["targets"] = targets(fig)
    return fig


def cpu_between(start: dict, end: dict) -> float:
    """CPU seconds a role used between two snapshots: processes in both count their difference,
    processes started since (a restarted node, a respawned worker) all of theirs."""
    before = {p["pid"]: p.get("cpu_s", 0) for p in start.get("processes", [])}
    return round(sum(p.get("cpu_s", 0) - before.get(p["pid"], 0) for p in end.get("processes", [])), 1)


def targets(fig: dict) -> list[dict]:
    rows = []

    def row(area: str, target: str, measured, ok: bool | None) -> None:
        rows.append({"area": area, "target": target, "measured": measured,
                     "verdict": "n/a" if ok is None else ("met" if ok else "NOT met")})  # fmt: skip

    pg = fig.get("pg_cut")
    if pg:
        row("PostgreSQL cut", "the database breaker opens", ", ".join(pg["breaker_seen_open_on"]) or "never seen open",
            bool(pg["breaker_seen_open_on"]))  # fmt: skip
        d, d1 = pg["latency_503_ms"], pg["latency_503_ms_from_1s"]
        row("PostgreSQL cut", "503 answers p99 <= 50 ms while open (from 1 s into the cut)",
            f"p99 {d1['p99']} ms (n={d1['n']}, p50 {d1['p50']}, max {d1['max']}; "
            f"whole cut: p99 {d['p99']} ms, n={d['n']})", None if d1["p99"] is None else d1["p99"] <= 50)  # fmt: skip
        row("PostgreSQL cut", "recovers by itself <= 5 s after the database returns",
            f"{pg['recovery_s']} s (readyz {pg['all_readyz_200_after_s']} s, last client failure "
            f"{pg['last_client_failure_after_s']} s)", pg["recovery_s"] <= 5)  # fmt: skip
    row("whole run", "0 acknowledged writes lost", f"{fig['lost']['total']} lost (chats {fig['lost']['chats']}, "
        f"playback {fig['lost']['playback']}, movies {fig['lost']['movies']})", fig["lost"]["total"] == 0)  # fmt: skip
    rd = fig.get("redis_restart")
    if rd:
        row(
            "Redis restart",
            "0 failed authenticated reads",
            f"{rd['failed_authenticated_reads']} of {rd['authenticated_reads']}",
            rd["failed_authenticated_reads"] == 0,
        )
        flow = rd["events_flow_again_s_probe_rooms"]["max"]
        row(
            "Redis restart",
            "room events flow again <= 2 s after Redis returns (probe rooms, max)",
            f"{flow} s (all rooms: {rd['events_flow_again_s_all_rooms']})",
            None if flow is None else flow <= 2,
        )
    if rd:
        row("Redis restart", "(no target) clients still missing a change made during the outage 2 s after Redis "
            "returned", f"{rd['clients_behind_over_2s_after_return']} clients, the longest {rd['behind_after_return_s']['max']} s "
            f"after the return ({rd['behind_by_kind']})", None)  # fmt: skip
    rr = fig.get("rolling_restart")
    if rr:
        g = rr["longest_gap_probe_clients_s"]
        row("rolling restart", "longest gap in room events per client p99 <= 1 s, max <= 2 s (playing rooms)",
            f"p99 {g['p99']} s, max {g['max']} s (n={g['n']})",
            None if g["p99"] is None else g["p99"] <= 1 and g["max"] <= 2)  # fmt: skip
        lag = rr["longest_lag_all_clients_s"]
        row("rolling restart", "the same, as longest event lag, every client",
            f"p99 {lag['p99']} s, max {lag['max']} s (n={lag['n']})",
            None if lag["p99"] is None else lag["p99"] <= 1 and lag["max"] <= 2)  # fmt: skip
        after = rr["longest_delivery_after_answer_s"]
        row("rolling restart", "(no target) the WebSocket path alone: a REST change's answer -> the client has it",
            f"p99 {after['p99']} s, max {after['max']} s (n={after['n']})", None)  # fmt: skip
        row(
            "rolling restart",
            "playback position and version survive",
            f"{rr['playback_survival_problems']} hellos went back",
            rr["playback_survival_problems"] == 0,
        )
    row("whole run", "0 unexpected errors", f"{fig['errors']['unexpected_total']}: "
        + ", ".join(f"{k} x{v}" for k, v in sorted(fig["errors"]["unexpected"].items(), key=lambda x: -x[1])[:8]),
        fig["errors"]["unexpected_total"] == 0)  # fmt: skip
    mem = fig["rss"]
    worst = {
        k: v["change_pct"]
        for k, v in mem.items()
        if k != "load-client" and not (k.startswith("ws-") and "ws (all nodes)" in mem)
    }
    row(
        "whole run",
        "RSS at the end within 10 % of the start (every role; the ws nodes together)",
        ", ".join(f"{k} {v:+.1f}%" for k, v in worst.items()),
        all(abs(v) <= 10 for v in worst.values()),
    )
    if fig.get("rss_last_cycle"):
        growth = fig["rss_last_cycle"]
        row(
            "whole run",
            "(no target) RSS at the end against the end of the cycle before (a leak keeps growing)",
            ", ".join(f"{k} {v:+.1f}%" for k, v in growth.items()),
            None,
        )
    return rows


def last_cycle_growth(rss: dict) -> dict[str, float]:
    """With CHAOS_CYCLES > 1: each role's RSS at the end against the end of the cycle before (the
    ws nodes together), in %. The first cycle raises every process to its high-water mark (the
    moves, the restarted Redis filling up again); a leak would keep growing in the next."""
    cycles = sorted((k for k in rss if k.startswith("cycle:")), key=lambda k: int(k.split(":")[1]))
    if not cycles or "end" not in rss:
        return {}
    before, end = rss[cycles[-1]]["roles"], rss["end"]["roles"]

    def total(roles: dict, names: list[str]) -> float:
        return sum(roles[n]["total_kb"] for n in names if n in roles)

    growth = {}
    for role in end:
        if role.startswith("ws-") or role == "load-client" or role not in before:
            continue
        growth[role] = round(100 * (end[role]["total_kb"] / before[role]["total_kb"] - 1), 1)
    ws = [n for n in end if n.startswith("ws-")]
    if ws and total(before, ws):
        growth["ws (all nodes)"] = round(100 * (total(end, ws) / total(before, ws) - 1), 1)
    return growth


def summary(result: dict) -> str:
    fig = result["figures"]
    m = result["machine"]
    c = result["config"]
    lines = [
        f"# Chaos run {result['started_utc']}",
        "",
        f"{c['sockets']} sockets over {c['rooms']} rooms, {c['duration_s']:.0f} s, PostgreSQL cut {c['pg_cut_s']:.0f} s; "
        f"{m['cpu_model']}, {m['cpus']} CPUs. Connected: {fig['clients']['connected']}. "
        f"App code fingerprint {result.get('code_fingerprint')}.",
        "",
        "| area | target | measured | verdict |",
        "| --- | --- | --- | --- |",
    ]
    for r in fig["targets"]:
        lines.append(f"| {r['area']} | {r['target']} | {r['measured']} | {r['verdict']} |")
    lines += ["", "Faults (UTC):", ""]
    for f in result["faults"]:
        start = _utc(f["start"])
        lines.append(f"- {f['name']}: {start} for {f.get('end', f['start']) - f['start']:.1f} s")
    lines += [
        "",
        "Handovers (a draining node's socket replaced before its close: new socket's dial -> hello):",
        "",
    ]
    for name in RESTARTS:
        if name in fig:
            d = fig[name]["handover_dial_to_hello_s"]
            lines.append(
                f"- {name}: {d['n']} handovers, p50 {d['p50']} s, p99 {d['p99']} s, max {d['max']} s"
            )
    lines += ["", "Reconnects (close -> new hello):", ""]
    for name in ("redis_restart", "pg_cut", *RESTARTS):
        if name in fig:
            d = fig[name]["reconnect_close_to_hello_s"]
            h = fig[name]["reconnect_last_attempt_to_hello_s"]
            lines.append(
                f"- {name}: {d['n']} reconnects, p50 {d['p50']} s, p99 {d['p99']} s, max {d['max']} s "
                f"(of which last attempt -> hello p50 {h['p50']} s, p99 {h['p99']} s); "
                f"closes {fig[name]['reconnects_by_close_code']}"
            )
    steps = [label for label in result["rss"] if label.startswith("after:")]
    if steps:
        lines += ["", "RSS after each fault (MB; start, after each, end):", ""]
        for role in ("nginx", "redis", "web-1", "web-2"):
            series = [
                result["rss"][label]["roles"].get(role, {}).get("total_kb")
                for label in ("start", *steps, "end")
            ]
            lines.append(f"- {role}: " + " → ".join(f"{kb / 1024:.1f}" if kb else "—" for kb in series))
    lines += ["", "RSS (MB, start -> end):", ""]
    for role, v in fig["rss"].items():
        lines.append(
            f"- {role}: boot {v['boot_mb']}, start {v['start_mb']} -> end {v['end_mb']} ({v['change_pct']:+.1f} %); "
            f"CPU between them {v['cpu_s_start_to_end']} s"
        )
    asked = result.get("load_summary", {}).get("server_shutdown_asked")
    lines += ["", f"Machine busy between the start and end snapshots: {fig.get('machine_busy_pct_start_to_end')} % "
              f"of {m['cpus']} CPUs. server_shutdown asked (reconnect_after_ms+reconnect_window_ms: frames): {asked}."]  # fmt: skip
    if fig["errors"]["unexpected"]:
        lines += ["", "Unexpected errors:", ""]
        for k, v in sorted(fig["errors"]["unexpected"].items(), key=lambda x: -x[1]):
            lines.append(f"- {k}: {v}")
    lines.append("")
    return "\n".join(lines)


def _utc(t: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%H:%M:%S")


if __name__ == "__main__":
    # The figures again from the run's raw client records (out/logs-<stamp>/load-raw.json), with
    # this file's definitions; the JSON is left as it is.
    from pathlib import Path

    path = Path(sys.argv[1])
    run = json.loads(path.read_text())
    raw = path.parent / f"logs-{run['started_utc']}" / "load-raw.json"
    if raw.exists():
        busy = run["figures"].get("machine_busy_pct_start_to_end")
        run["figures"] = analyse(run, json.loads(raw.read_text()))
        run["figures"]["machine_busy_pct_start_to_end"] = busy
    print(summary(run))
