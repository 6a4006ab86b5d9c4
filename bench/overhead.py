"""The overhead of /metrics and JSON request logs on GET /api/v1/users/me: bench/run's
``overhead`` step runs the `web` process alternately without them ("off": metrics off, each
request's line in the plain format) and with them ("on": metrics on, the line in JSON), and this
prints the comparison as Markdown.

Usage: python bench/overhead.py OUT_DIR   (reads OUT_DIR/overhead-{off,on}-N.json and .cpu.json)

Two figures per round: requests a second, and the server's CPU time per request (its cores used
divided by req/s). wrk shares the machine's cores with the server, so req/s moves with whatever
else runs; CPU per request is the steadier measure of what the server itself spends. The verdict
compares medians over the rounds: "on" within 5 % of "off".
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

LIMIT = 0.05


def rounds(out: Path, variant: str) -> list[dict]:
    found = []
    for path in sorted(out.glob(f"overhead-{variant}-*.json")):
        if path.name.endswith(".cpu.json"):
            continue
        wrk = json.loads(path.read_text())
        cpu_path = path.with_name(path.name.removesuffix(".json") + ".cpu.json")
        cpu = json.loads(cpu_path.read_text()) if cpu_path.exists() else {}
        server = cpu.get("server")
        found.append(
            {
                "round": path.stem.rsplit("-", 1)[1],
                "rps": wrk["rps"],
                "p50_ms": wrk.get("p50_ms"),
                "p99_ms": wrk.get("p99_ms"),
                "cpu_us": 1e6 * server / wrk["rps"] if server and wrk["rps"] else None,
                "busy": cpu.get("machine_busy"),
                "failed": wrk.get("failed", False),
            }
        )
    return found


def main() -> int:
    out = Path(sys.argv[1])
    off, on = rounds(out, "off"), rounds(out, "on")
    if not off or not on:
        print("no overhead rounds found", file=sys.stderr)
        return 1
    print("| round | variant | req/s | p50 | p99 | server CPU per request | machine busy (cores) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    labelled = [("off", r) for r in off] + [("on", r) for r in on]
    for variant, row in sorted(labelled, key=lambda vr: (int(vr[1]["round"]), vr[0] == "on")):
        cpu = "-" if row["cpu_us"] is None else f"{row['cpu_us']:.0f} µs"
        print(
            f"| {row['round']} | {variant} | {row['rps']:.0f} | {row['p50_ms']} ms | {row['p99_ms']} ms "
            f"| {cpu} | {row['busy']} |"
        )
    rps_off, rps_on = (statistics.median(r["rps"] for r in rows) for rows in (off, on))
    rps_cost = 1 - rps_on / rps_off
    print()
    print(f"- median req/s: off {rps_off:.0f}, on {rps_on:.0f}: {100 * rps_cost:+.1f} % fewer with them on")
    verdict = rps_cost <= LIMIT
    cpus = [[r["cpu_us"] for r in rows if r["cpu_us"]] for rows in (off, on)]
    if all(cpus):
        cpu_off, cpu_on = (statistics.median(c) for c in cpus)
        cpu_cost = cpu_on / cpu_off - 1
        print(
            f"- median server CPU per request: off {cpu_off:.0f} µs, on {cpu_on:.0f} µs: {100 * cpu_cost:+.1f} %"
        )
        verdict = verdict and cpu_cost <= LIMIT
    failed = [r for r in off + on if r["failed"]]
    if failed:
        print(f"- {len(failed)} round(s) had errors: not a result")
        verdict = False
    print(f"- within {100 * LIMIT:.0f} %: {'yes' if verdict else 'NO'}")
    return 0 if verdict else 2


if __name__ == "__main__":
    sys.exit(main())
