"""Prometheus metrics and ``GET /metrics`` (docs/operations.md, "Metrics").

Each metric is defined here and counted where its thing happens: requests by view, method and
status with their latency (``observe_request``, from the request log's middleware, which times
every request anyway), sockets and rooms per node, WebSocket messages in and out by type, the
fan-out's time, playback changes, authentication failures by reason, rate-limit hits, breaker
states, Celery tasks.

Every process writes its own numbers. In production they go to files in PROMETHEUS_MULTIPROC_DIR
(synctv/settings.py puts it in the environment before prometheus_client is imported), and the
process that answers ``/metrics`` adds up the files of every process on the host. Without it (the
embedded default, tests) they stay in this process's memory.

Labels hold only values from a fixed set (message types, error codes, task names), never what a
client typed: one label value per distinct input would grow without bound.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import Http404, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
    values,
)
from prometheus_client.exposition import choose_encoder

from apps.core import metricsfiles
from apps.core.errors import error_body
from apps.core.operators import is_operator

if settings.METRICS_DIR and values.ValueClass is values.MutexValue:
    # prometheus_client chose in-memory values when it was imported, before the setting: each
    # process would answer with only its own numbers. Fail loudly instead.
    raise ImproperlyConfigured("prometheus_client was imported before PROMETHEUS_MULTIPROC_DIR was set")
if settings.METRICS_DIR:
    # A dead process that had this id left its live gauges: start from nothing, here and in
    # every process forked from this one (Celery's pool).
    metricsfiles.forget_live_gauges(os.getpid())
    os.register_at_fork(after_in_child=lambda: metricsfiles.forget_live_gauges(os.getpid()))

# Seconds: a request is a few ms; a fan-out ~1 ms for a few sockets, tens of ms for thousands.
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
TASK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# The names django-prometheus gives the same two series, so dashboards made for it work.
RESPONSES = Counter(
    "django_http_responses_total_by_status_view_method",
    "Responses by status, view (the URL pattern's name) and method.",
    ["status", "view", "method"],
)
LATENCY = Histogram(
    "django_http_requests_latency_seconds_by_view_method",
    "Time from the first middleware in to the response out, by view and method.",
    ["view", "method"],
    buckets=REQUEST_BUCKETS,
)
WS_SOCKETS = Gauge(
    "synctv_ws_sockets", "Room sockets open on a ws node.", ["node"], multiprocess_mode="livesum"
)
WS_ROOMS = Gauge(
    "synctv_ws_rooms", "Rooms with a socket open on a ws node.", ["node"], multiprocess_mode="livesum"
)
WS_RECEIVED = Counter(
    "synctv_ws_messages_received",
    "Frames clients sent on room sockets, by message type (invalid: refused by the schema; "
    'frames over the allowance are in synctv_rate_limited_total{limit="ws_frame"}).',
    ["type"],
)
WS_SENT = Counter("synctv_ws_messages_sent", "Messages written to room sockets, by type.", ["type"])
WS_FANOUT = Histogram(
    "synctv_ws_fanout_seconds",
    "From a room event read off Redis to the last of this node's sockets written.",
    buckets=FAST_BUCKETS,
)
PLAYBACK_CHANGES = Counter("synctv_playback_changes", "Playback changes stored, by what changed.", ["change"])
AUTH_FAILURES = Counter(
    "synctv_auth_failures",
    "Requests and socket connects turned away for their credentials, by error code.",
    ["reason"],
)
RATE_LIMITED = Counter("synctv_rate_limited", "Requests, frames and connects over a limit.", ["limit"])
BREAKER_STATE = Gauge(
    "synctv_breaker_state",
    "Circuit breaker state: 0 closed, 1 half-open, 2 open (the worst of the host's processes).",
    ["breaker"],
    multiprocess_mode="livemax",
)
BREAKER_OPENED = Counter("synctv_breaker_opened", "Times a circuit breaker opened.", ["breaker"])
TASKS = Counter("synctv_celery_tasks", "Celery task runs, by outcome.", ["task", "outcome"])
TASK_SECONDS = Histogram(
    "synctv_celery_task_seconds", "Celery task run time.", ["task"], buckets=TASK_BUCKETS
)
TASK_QUEUED_SECONDS = Histogram(
    "synctv_celery_task_queued_seconds",
    "From a Celery task's publish to its start on a worker.",
    ["task"],
    buckets=TASK_BUCKETS,
)

BREAKER_LEVELS = {"closed": 0, "half_open": 1, "open": 2}


def breaker_changed(name: str, state: str) -> None:
    BREAKER_STATE.labels(name).set(BREAKER_LEVELS[state])
    if state == "open":
        BREAKER_OPENED.labels(name).inc()


def counter_of(counter: Counter) -> Callable[[str], Counter]:
    """``counter.labels(value)`` remembered per value: the real-time path counts every frame, and
    ``labels`` takes a lock and builds a key each time."""
    children: dict[str, Counter] = {}

    def child(value: str) -> Counter:
        found = children.get(value)
        if found is None:
            found = children[value] = counter.labels(value)
        return found

    return child


received = counter_of(WS_RECEIVED)
sent = counter_of(WS_SENT)
rate_limited = counter_of(RATE_LIMITED)
auth_failed = counter_of(AUTH_FAILURES)


# --- requests ---------------------------------------------------------------------------------------

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})
_request_series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def observe_request(request, status: int, seconds: float) -> None:
    """One request in the two request series. A method nobody uses is ``<invalid method>`` and a
    path no URL pattern matched ``<unnamed view>``: a client inventing either would otherwise
    invent series. Both series' children are remembered per key (``labels`` costs a lock and a
    tuple each time); this runs on every request (bench/README.md, "Metrics and JSON logs")."""
    if not settings.METRICS_ENABLE:
        return
    match = getattr(request, "resolver_match", None)
    view = (match.view_name if match is not None else None) or "<unnamed view>"
    method = request.method if request.method in KNOWN_METHODS else "<invalid method>"
    key = (view, method, status)
    series = _request_series.get(key)
    if series is None:
        series = _request_series[key] = (
            RESPONSES.labels(str(status), view, method),
            LATENCY.labels(view, method),
        )
    series[0].inc()
    series[1].observe(seconds)


# --- the endpoint -----------------------------------------------------------------------------------


def exposition(encode) -> bytes:
    """This process's metrics, or with PROMETHEUS_MULTIPROC_DIR those of every process on the
    host: the files of processes that ended are folded first (a node killed with SIGKILL leaves
    its sockets gauge behind), under the lock that keeps another scrape from folding mid-read."""
    folder = metricsfiles.directory()
    if folder is None:
        return encode(REGISTRY)
    with metricsfiles.locked(folder):
        metricsfiles.tidy_unlocked(folder)
        found = CollectorRegistry()
        multiprocess.MultiProcessCollector(found)
        return encode(found)


@never_cache
@require_GET
def metrics_view(request):
    """Prometheus text format, for an operator: ``METRICS_TOKEN`` as a bearer token, or a client
    in ``METRICS_ALLOWED_NETWORKS`` (apps/core/operators.py)."""
    if not settings.METRICS_ENABLE:
        raise Http404
    if not is_operator(request):
        body = error_body("permission_denied", "Metrics need METRICS_TOKEN or an allowed network.")
        return JsonResponse(body, status=403)
    # The format the scraper asks for (OpenMetrics, text 1.0.0), else Prometheus text 0.0.4.
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(exposition(encode), content_type=content_type)
