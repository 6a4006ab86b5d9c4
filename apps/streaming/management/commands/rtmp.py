"""``manage.py rtmp``: the Procfile's ``rtmp`` process (``scripts/rtmp``): nginx with the RTMP
module, and this node's RTMP server in the cluster while it runs (apps.streaming.rtmpserver;
docs/streaming.md). Runs until SIGTERM or SIGINT, hands the node's streams over, stops nginx."""

from __future__ import annotations

import io
import signal
import sys
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.streaming import rtmpserver


class Command(BaseCommand):
    help = "Run this node's RTMP server (nginx + RTMP module) until SIGTERM."

    def handle(self, *args: Any, **options: Any) -> None:
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, io.TextIOWrapper):
                stream.reconfigure(line_buffering=True)
        stop = threading.Event()

        def ask_to_stop(signum: int, frame: object) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, ask_to_stop)
        signal.signal(signal.SIGINT, ask_to_stop)
        code = rtmpserver.run(stop)
        if code:
            raise CommandError(f"nginx exited with status {code}", returncode=code)
