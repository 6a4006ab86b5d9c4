"""``manage.py rtmp``: the Procfile's ``rtmp`` process (``scripts/rtmp``): nginx with the RTMP
module, and this node's RTMP server in the cluster while it runs (apps.streaming.rtmpserver;
docs/streaming.md). Runs until SIGTERM or SIGINT, hands the node's streams over, stops nginx."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.streaming import rtmpserver
from apps.streaming.management.until_stopped import run_until_stopped


class Command(BaseCommand):
    help = "Run this node's RTMP server (nginx + RTMP module) until SIGTERM."

    def handle(self, *args: Any, **options: Any) -> None:
        code = run_until_stopped(rtmpserver.run)
        if code:
            raise CommandError(f"nginx exited with status {code}", returncode=code)
