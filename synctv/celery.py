"""The Celery app. Without CELERY_BROKER_URL tasks run eagerly in-process (embedded default)."""

import logging
import os

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "synctv.settings")

app = Celery("synctv")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# A worker is a node of the cluster registry while it runs (docs/streaming.md, "Cluster"): the
# main process beats on a thread, and leaves at once on a warm shutdown (SIGTERM).
@worker_ready.connect
def _join_cluster(**_: object) -> None:
    from apps.streaming.cluster import start_heartbeat

    start_heartbeat("worker")


@worker_shutdown.connect
def _leave_cluster(**_: object) -> None:
    from apps.streaming.cluster import stop_heartbeat

    stop_heartbeat("worker")


# Jobs that run every second (the live-stream failover sweep) would put three INFO lines a second
# in the beat and worker logs ("Sending due task", "received", "succeeded"). Those routine lines
# are dropped for them alone; their warnings and errors, and every line of other jobs, stay.
QUIET_TASKS = ("apps.streaming.tasks.failover_sweep",)


class QuietRoutineLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # INFO only: DEBUG was asked for (beat's "Current schedule" lists every job at once).
        if record.levelno != logging.INFO:
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        return not any(task in message for task in QUIET_TASKS)


for _name in ("celery.beat", "celery.worker.strategy", "celery.app.trace"):
    logging.getLogger(_name).addFilter(QuietRoutineLines())
