"""CPU seconds of process trees and of the whole machine, from /proc (Linux)."""

from __future__ import annotations

import os
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after the last ")".
    return raw[raw.rindex(")") + 2 :].split()


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None:
                tree.setdefault(int(fields[1]), []).append(int(entry))
    return tree


def tree_pids(root: int) -> list[int]:
    """``root`` and all its descendants alive now."""
    tree, pids, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(tree.get(pid, []))
    return pids


def tree_cpu(*roots: int) -> float:
    """CPU seconds (user + system) of each root's process tree, reaped children included
    (cutime + cstime): fields 14-17 of /proc/<pid>/stat."""
    total = 0
    for root in roots:
        for pid in tree_pids(root):
            fields = _stat(pid)
            if fields is not None:
                # After the name: state is fields[0], so utime (field 14) is fields[11].
                total += sum(int(v) for v in fields[11:15])
    return total / TICK


def machine_busy() -> tuple[float, float]:
    """(busy, steal): CPU seconds all cores spent busy since boot (/proc/stat: user, nice, system,
    irq, softirq) and stolen by the hypervisor."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / TICK, steal / TICK


def tree_rss_kib(root: int) -> int:
    total = 0
    for pid in tree_pids(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total
