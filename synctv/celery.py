"""The Celery app. Without CELERY_BROKER_URL tasks run eagerly in-process (embedded default)."""

import logging
import os
import time
from datetime import datetime

from celery import Celery
from celery.signals import before_task_publish, task_postrun, task_prerun, worker_ready, worker_shutdown

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


# /metrics (docs/operations.md, "Metrics"): each task's outcome, run time, and time in the queue
# (from a header stamped at each publish, a retry's included; a task published by an older client
# has none). A task held back on purpose (``countdown``, ``eta``: a mail's retry) is queued from
# its due time on.
_started: dict[str, float] = {}


@before_task_publish.connect
def _stamp_published(headers: dict | None = None, **_: object) -> None:
    if headers is not None:
        headers["published_at"] = time.time()


@task_prerun.connect
def _task_started(task_id: str = "", task: object = None, **_: object) -> None:
    from apps.core import metrics

    _started[task_id] = time.perf_counter()
    request = getattr(task, "request", None)
    published_at = getattr(request, "published_at", None)
    if isinstance(published_at, int | float):
        due = max(published_at, _eta_seconds(getattr(request, "eta", None)))
        metrics.TASK_QUEUED_SECONDS.labels(task.name).observe(max(0.0, time.time() - due))  # type: ignore[attr-defined]


def _eta_seconds(eta: object) -> float:
    """A task's ``eta`` (an ISO 8601 time, or a datetime) as a Unix time; 0 without one."""
    if isinstance(eta, str):
        try:
            eta = datetime.fromisoformat(eta)
        except ValueError:
            return 0.0
    return eta.timestamp() if isinstance(eta, datetime) else 0.0


@task_postrun.connect
def _task_finished(task_id: str = "", task: object = None, state: str | None = None, **_: object) -> None:
    from apps.core import metrics

    name = getattr(task, "name", "unknown")
    started = _started.pop(task_id, None)
    if started is not None:
        metrics.TASK_SECONDS.labels(name).observe(time.perf_counter() - started)
    metrics.TASKS.labels(name, (state or "unknown").lower()).inc()


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
