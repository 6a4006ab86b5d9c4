"""Celery jobs of live streams. Thin: what a failover does is apps.streaming.failover's."""

from __future__ import annotations

from celery import shared_task

from apps.streaming import failover


# Run by beat every second (CELERY_BEAT_SCHEDULE): a publisher whose node left is replaced
# within about a second, a silent one 30 s after it was last heard from (docs/streaming.md, "Failover").
# Sweeps that overlap are safe: each stream has its failover lock.
@shared_task(ignore_result=True)
def failover_sweep() -> int:
    return failover.sweep_quietly()
