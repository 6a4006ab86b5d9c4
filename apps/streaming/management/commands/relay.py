"""``manage.py relay``: the Procfile's ``relay`` process, which pulls this node's pulled streams
into its RTMP server (apps.streaming.relay; docs/streaming.md, "Pulled streams"). Runs until
SIGTERM or SIGINT, then leaves the cluster and hands its streams over before it exits."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from apps.streaming import relay
from apps.streaming.management.until_stopped import run_until_stopped


class Command(BaseCommand):
    help = "Pull this node's pulled live streams into its RTMP server (runs until SIGTERM)."

    def handle(self, *args: Any, **options: Any) -> None:
        run_until_stopped(relay.run)
