"""Parse `wrk --latency` output (stdin) into JSON (stdout). Exit 1 if any response was an
error or any socket error happened: a fast 401 is not a result.

Usage: wrk ... --latency URL | python bench/wrkparse.py LABEL
"""

from __future__ import annotations

import json
import re
import sys

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def to_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"unparsable latency {text!r}")
    return float(m.group(1)) * UNITS[m.group(2)]


def parse(out: str) -> dict:
    result: dict = {"non_2xx_3xx": 0, "socket_errors": {}}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise ValueError("no Requests/sec line: did wrk run?")
    result["rps"] = float(m.group(1))
    for pct, value in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", out, re.M):
        result[f"p{pct}_ms"] = round(to_ms(value), 2)
    m = re.search(r"^\s+Latency\s+(\S+)\s+(\S+)\s+(\S+)", out, re.M)
    if m:
        result["avg_ms"], result["max_ms"] = round(to_ms(m.group(1)), 2), round(to_ms(m.group(3)), 2)
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+),", out)
    if m:
        result["requests"] = int(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if m:
        result["non_2xx_3xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        result["socket_errors"] = dict(
            zip(("connect", "read", "write", "timeout"), map(int, m.groups()), strict=True)
        )
    return result


def main() -> None:
    label = sys.argv[1] if len(sys.argv) > 1 else "wrk"
    out = sys.stdin.read()
    try:
        result = parse(out)
    except ValueError as exc:
        sys.stderr.write(out)
        sys.exit(f"FAIL [{label}]: {exc}")
    result["label"] = label
    errors = sum(result["socket_errors"].values())
    result["failed"] = bool(result["non_2xx_3xx"] or errors or "p99_ms" not in result)
    print(json.dumps(result))
    if result["failed"]:
        sys.stderr.write(out)
        sys.exit(
            f"FAIL [{label}]: {result['non_2xx_3xx']} non-2xx/3xx responses, socket errors "
            f"{result['socket_errors']}: these are not results"
        )


if __name__ == "__main__":
    main()
