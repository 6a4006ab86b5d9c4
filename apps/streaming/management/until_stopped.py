"""What the long-running commands of this app (``manage.py relay``, ``manage.py rtmp``) share:
log lines reach a process manager as they happen, and SIGTERM or SIGINT asks the work to stop
(it then leaves the cluster and hands its streams over) instead of killing it."""

from __future__ import annotations

import io
import signal
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def run_until_stopped(work: Callable[[threading.Event], T]) -> T:
    """Run ``work(stop)``; SIGTERM and SIGINT set ``stop``."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(line_buffering=True)  # not held back until a block buffer fills
    stop = threading.Event()

    def ask_to_stop(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, ask_to_stop)
    signal.signal(signal.SIGINT, ask_to_stop)
    return work(stop)
