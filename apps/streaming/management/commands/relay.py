"""``manage.py relay``: the Procfile's ``relay`` process, which pulls this node's pulled streams
into its RTMP server (apps.streaming.relay; docs/streaming.md, "Pulled streams"). Runs until
SIGTERM or SIGINT, then leaves the cluster and hands its streams over before it exits."""

from __future__ import annotations

import io
import signal
import sys
import threading
from typing import Any

from django.core.management.base import BaseCommand

from apps.streaming import relay


class Command(BaseCommand):
    help = "Pull this node's pulled live streams into its RTMP server (runs until SIGTERM)."

    def handle(self, *args: Any, **options: Any) -> None:
        # Log lines reach a process manager as they happen, not when a block buffer fills.
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, io.TextIOWrapper):
                stream.reconfigure(line_buffering=True)
        stop = threading.Event()

        def ask_to_stop(signum: int, frame: object) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, ask_to_stop)
        signal.signal(signal.SIGINT, ask_to_stop)
        relay.run(stop)
