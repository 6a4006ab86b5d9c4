"""gunicorn's settings for the `web` process (the Procfile passes ``-c python:synctv.gunicorn``;
the command line sets the rest)."""

from __future__ import annotations

import os


def on_starting(server) -> None:
    """Before the workers: fold the /metrics files of the processes of an earlier run into the
    totals (apps/core/metricsfiles.py). Loading the settings puts PROMETHEUS_MULTIPROC_DIR in the
    environment the workers inherit."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "synctv.settings")
    from django.conf import settings

    if settings.METRICS_DIR:
        from apps.core import metricsfiles

        handled = metricsfiles.tidy()
        server.log.info("metrics: %d file(s) of stopped processes folded or removed", handled)
