"""When PostgreSQL fails (docs/security.md, "When the database is down").

- **Which failures**: a lost or refused connection (``lost_connection``: no SQLSTATE, class 08,
  an administrator's or a crash's shutdown, too many clients) and the two a busy database
  answers a correct transaction with, serialization failure and deadlock (``transient``).
- **The breaker**: ``database_breaker`` counts lost connections only (a deadlock says nothing
  about the database being up). The PostgreSQL backend (apps.core.postgresql) feeds it every
  outcome and, while it is open, refuses at once with ``DatabaseUnavailable`` instead of waiting
  for a connect timeout on each request. ``/readyz`` names its state.
- **Retries**: ``run_with_retries`` runs a unit of work again after a transient failure, 100 ms
  then 200 ms later (3 tries at most), and only when nothing of it was committed: the backend
  counts commits and the statements that commit by themselves, and a unit that committed
  anything, or that runs inside a transaction it does not own, is never run twice. A request
  (``DatabaseFaultMiddleware``) and a WebSocket database call (apps.rooms.dbthreads) are units.
- **The answer**: what still fails is ``ServiceDegraded`` (503 ``service_degraded`` with
  ``Retry-After``; an ``error`` frame on a WebSocket, which stays open), never a 500.
"""

from __future__ import annotations

import io
import logging
import math
import time
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connections
from django.http import HttpResponse, JsonResponse
from psycopg_pool import PoolTimeout

from apps.core.errors import ServiceDegraded, error_body, is_api
from apps.core.resilience import CircuitBreaker, register

logger = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_DELAYS = (0.1, 0.2)  # 100 ms x 2^n between tries: 3 tries in all
SERIALIZATION_FAILURE, DEADLOCK_DETECTED, TOO_MANY_CONNECTIONS = "40001", "40P01", "53300"
# 08: connection exception; 57P01-57P03: admin shutdown, crash shutdown, cannot connect now.
LOST_CONNECTION_PREFIXES = ("08", "57P")


class DatabaseUnavailable(OperationalError):
    """The database breaker is open: the database failed recently and is not being called."""


database_breaker = register(
    CircuitBreaker(
        "database",
        failure_threshold=settings.DB_BREAKER_FAILURES,
        reset_timeout=settings.DB_BREAKER_RESET_SECONDS,
    )
)


def _sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error (Django's wrapper keeps the driver's as its cause)."""
    for error in (exc, exc.__cause__):
        state = getattr(error, "sqlstate", None)
        if state:
            return state
    return None


def lost_connection(exc: BaseException) -> bool:
    """The database could not be reached or dropped the connection (or the breaker is open)."""
    if isinstance(exc, InterfaceError):  # "connection already closed"
        return True
    if not isinstance(exc, OperationalError):
        return False
    state = _sqlstate(exc)
    return state is None or state.startswith(LOST_CONNECTION_PREFIXES) or state == TOO_MANY_CONNECTIONS


def transient(exc: BaseException) -> bool:
    """Worth one more try a moment later: a lost connection, a serialization failure, a deadlock;
    not an open breaker (it answers at once, for a reason that will not pass in 100 ms) nor a
    pool timeout."""
    if isinstance(exc, DatabaseUnavailable) or isinstance(exc.__cause__, PoolTimeout):
        return False  # a pool that found no connection in its timeout has waited long enough
    return lost_connection(exc) or _sqlstate(exc) in (SERIALIZATION_FAILURE, DEADLOCK_DETECTED)


def degraded(exc: BaseException) -> bool:
    """A database error that means "the service is degraded" (503), not a bug (500)."""
    return isinstance(exc, DatabaseError) and (lost_connection(exc) or transient(exc))


def retry_after_seconds() -> int:
    """When to come back: once the breaker lets calls through again, or in a second."""
    return max(1, math.ceil(database_breaker.seconds_until_retry()))


def as_service_degraded(exc: BaseException) -> ServiceDegraded:
    return ServiceDegraded(retry_after=retry_after_seconds(), message=_message(exc))


def _message(exc: BaseException) -> str:
    if isinstance(exc, DatabaseUnavailable) or lost_connection(exc):
        return "The database is unavailable; retry shortly."
    return "The database is busy; retry shortly."


def commit_mark(alias: str = "default") -> int | None:
    """How many commits this thread's connection has made (None: the backend does not count, so
    nothing run on it is retried)."""
    return getattr(connections[alias], "commits", None)


def may_retry(exc: BaseException, mark: int | None, alias: str = "default") -> bool:
    """Another try is worth it: a transient failure, nothing committed, not inside a transaction
    the work does not own, and the breaker not opened by this very failure (a half-open probe
    that failed answers at once instead of waiting 100 ms to be refused)."""
    connection = connections[alias]
    return (
        transient(exc)
        and mark is not None
        and getattr(connection, "commits", None) == mark
        and not connection.in_atomic_block
        and not database_breaker.refusing()
    )


def prepare_retry(exc: BaseException, attempt: int, alias: str = "default", sleep=time.sleep) -> None:
    """Before the next try: drop a lost connection (the next query opens a new one), wait."""
    if lost_connection(exc):
        try:
            connections[alias].close()
        except DatabaseError:
            connections[alias].connection = None
    delay = RETRY_DELAYS[attempt]
    name, state = type(exc).__name__, _sqlstate(exc)
    logger.warning("database: %s (%s); trying again in %d ms", name, state, delay * 1000)
    sleep(delay)


def run_with_retries(fn: Callable[[], T], alias: str = "default", sleep=time.sleep) -> T:
    """``fn()``, tried again after a transient failure when nothing of it was committed."""
    attempt = 0
    while True:
        mark = commit_mark(alias)
        try:
            return fn()
        except DatabaseError as exc:
            if attempt >= len(RETRY_DELAYS) or not may_retry(exc, mark, alias):
                raise
            prepare_retry(exc, attempt, alias, sleep)
            attempt += 1


class DatabaseFaultMiddleware:
    """A request that fails for a transient database error and committed nothing runs again
    (``run_with_retries``' rules); one that still fails answers 503 ``service_degraded``.

    Django turns an exception into a response before an outer middleware sees it, so the fault
    is caught where it happens (``process_exception`` for views, ``apps.core.errors.server_error``
    for the other middleware) and left on the request for this middleware to retry. The body is
    read into memory first, so a second try parses it again."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        body = _buffered_body(request)
        attempt = 0
        while True:
            mark = commit_mark()
            request.database_fault = None
            response = self.get_response(request)
            exc = request.database_fault
            if exc is None or attempt >= len(RETRY_DELAYS) or body is None or not may_retry(exc, mark):
                return response
            prepare_retry(exc, attempt)
            request._stream = io.BytesIO(body)
            attempt += 1

    def process_exception(self, request, exception):
        if not degraded(exception):
            return None
        return degraded_response(request, exception)


def _buffered_body(request) -> bytes | None:
    """The request body, read once (None: too large to hold, or already streamed: no retry)."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    try:
        if limit is not None and int(request.META.get("CONTENT_LENGTH") or 0) > limit:
            return None
        return request.body
    except Exception:  # a bad Content-Length, a stream already read: run once, as before
        return None


def degraded_response(request, exception: BaseException):
    """The 503 for a database fault, in the API's format under /api/ (and noted on the request
    for DatabaseFaultMiddleware)."""
    request.database_fault = exception
    error = as_service_degraded(exception)
    response: HttpResponse
    if is_api(request):
        response = JsonResponse(error_body(error.code, error.message), status=503)
    else:
        response = HttpResponse(
            f"<!doctype html><title>Service degraded</title><h1>Service degraded</h1><p>{error.message}</p>",
            status=503,
        )
    for name, value in error.headers.items():
        response[name] = value
    return response
