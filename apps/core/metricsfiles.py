"""The files prometheus-client's multi-process mode keeps in PROMETHEUS_MULTIPROC_DIR, and their
clean-up (docs/operations.md, "Metrics").

Each process writes ``<kind>_<pid>.db`` files. A counter's file outlives its process on purpose
(a recycled gunicorn worker's requests still count), but a live gauge's (sockets open on a ws
node) must go with it, or a node killed with SIGKILL would be counted for ever: ``forget_dead``
removes those at every scrape. When the web server starts, ``forget_dead(everything=True)``
removes every file of a process that is gone: the last run's totals restart from zero, which
Prometheus reads as a counter reset, and the directory does not grow from run to run.

No Django here: gunicorn's master calls it before it loads the app.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_FILE = re.compile(r"^(?P<kind>[a-z_]+)_(?P<pid>\d+)\.db$")


def directory() -> Path | None:
    value = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(value) if value else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def forget_dead(*, everything: bool = False) -> int:
    """Remove the files of processes that no longer run: their live gauges only, or with
    ``everything`` all of them. Returns how many files went. The directory is one host's (a pid
    means nothing across hosts or containers)."""
    folder = directory()
    if folder is None or not folder.is_dir():
        return 0
    removed = 0
    for path in folder.iterdir():
        match = _FILE.match(path.name)
        if match is None or _alive(int(match["pid"])):
            continue
        if everything or match["kind"].startswith("gauge_live"):
            try:
                path.unlink()
            except FileNotFoundError:
                continue  # another scrape removed it first
            removed += 1
    return removed
