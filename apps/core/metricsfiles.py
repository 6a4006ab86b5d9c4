"""The files prometheus-client's multi-process mode keeps in PROMETHEUS_MULTIPROC_DIR, and their
upkeep (docs/operations.md, "Metrics").

Each process writes ``<kind>_<pid>.db`` files; a scrape adds up every file. What happens to the
files of a process that ended:
- its live gauges (sockets open on a ws node, breaker states) are removed: it holds nothing now;
- its counters and histograms are folded into ``counter_archive.db`` / ``histogram_archive.db``
  and removed, so the totals never go down (a recycled gunicorn worker's requests still count,
  and a restart of `web` is not a counter reset) and the directory does not grow with every
  process that ever ran (each ``manage.py`` command, each recycled worker).
``tidy`` does both, under a lock that ``/metrics`` also holds while it reads the files, so no
scrape sees a file half folded. A process id can come back (a container restarted): a process
removes any live gauge under its own id before it counts (``forget_live_gauges``), or it would
start from a dead process's sockets. A pid means nothing across hosts or containers: one
directory per host.

No Django here: gunicorn's master calls it before it loads the app.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.mmap_dict import MmapedDict

_FILE = re.compile(r"^(?P<kind>[a-z_]+)_(?P<pid>\d+)\.db$")
FOLDED = ("counter", "histogram")


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


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Held by ``tidy`` and by a scrape while it reads the files (every process of the host)."""
    with open(folder / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def forget_live_gauges(pid: int) -> None:
    """Remove the live gauges filed under ``pid`` (a process that had this id before)."""
    folder = directory()
    if folder is None or not folder.is_dir():
        return
    for path in folder.glob(f"gauge_live*_{pid}.db"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _fold(path: Path, archive: Path) -> None:
    """Add every value of ``path`` to ``archive`` (a crash between this and the unlink that
    follows would count that process twice: rare, and only ever too high)."""
    into = MmapedDict(str(archive))
    try:
        for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(str(path)):
            into.write_value(key, into.read_value(key)[0] + value, timestamp)
    finally:
        into.close()


def tidy_unlocked(folder: Path) -> int:
    """``tidy`` for a caller that holds ``locked`` already."""
    handled = 0
    for path in sorted(folder.iterdir()):
        match = _FILE.match(path.name)
        if match is None or _alive(int(match["pid"])):
            continue
        kind = match["kind"]
        if kind in FOLDED:
            _fold(path, folder / f"{kind}_archive.db")
        elif not kind.startswith("gauge_live"):
            continue  # a gauge mode we do not use
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        handled += 1
    return handled


def tidy() -> int:
    """Fold or remove the files of processes that ended; how many."""
    folder = directory()
    if folder is None or not folder.is_dir():
        return 0
    with locked(folder):
        return tidy_unlocked(folder)
