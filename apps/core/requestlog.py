"""Request ids, log context and one log line per request (docs/operations.md, "Logs").

Every HTTP response carries ``X-Request-ID``. Behind a trusted front (TRUSTED_PROXY_COUNT > 0;
deploy/nginx sets it to nginx's ``$request_id``) the front's id is kept, so its access log and
ours name the same request; a client's own header is never believed without one, and anything
that does not look like an id is replaced by a new one. While the request is served, every log
line carries that id, the user's id and this node's id (:class:`LogContextFilter`). When it ends,
``synctv.request`` writes one line: method, path (never the query string, where tokens travel),
status and milliseconds.

With LOG_FORMAT=json (the default in production) each line is one JSON object
(:class:`JsonFormatter`, python-json-logger's, configured in settings.LOGGING); development keeps
plain readable lines.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from contextvars import ContextVar, Token

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from pythonjsonlogger import json as json_logging

from apps.core.logredact import redact

HEADER = "X-Request-ID"
_META_KEY = "HTTP_X_REQUEST_ID"
_LOOKS_LIKE_AN_ID = re.compile(r"[A-Za-z0-9._:-]{8,128}")

request_id: ContextVar[str] = ContextVar("synctv_request_id", default="-")
user_id: ContextVar[str] = ContextVar("synctv_user_id", default="-")

request_logger = logging.getLogger("synctv.request")


def incoming_id(meta) -> str:
    """The front's id when one is trusted and it looks like an id; else a new one."""
    given = meta.get(_META_KEY, "")
    if settings.TRUSTED_PROXY_COUNT > 0 and _LOOKS_LIKE_AN_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


class RequestLogMiddleware:
    """Outermost: the id is set before anything else runs and reaches every response, the 503s
    of a database outage included."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        started, token = self._begin(request)
        try:
            response = self.get_response(request)
            return self._end(request, response, started)
        finally:
            _reset(token)

    async def __acall__(self, request):
        started, token = self._begin(request)
        try:
            response = await self.get_response(request)
            return self._end(request, response, started)
        finally:
            _reset(token)

    def _begin(self, request) -> tuple[float, Token]:
        request.request_id = incoming_id(request.META)
        return time.perf_counter(), request_id.set(request.request_id)

    def _end(self, request, response, started: float):
        response[HEADER] = request.request_id
        user = getattr(request, "user", None)  # DRF sets it on the HttpRequest too
        who = str(user.pk) if user is not None and user.is_authenticated else "-"
        user_id.set(who)
        seconds = time.perf_counter() - started
        from apps.core import metrics  # not at import: LOGGING loads this module before the apps

        metrics.observe_request(request, response.status_code, seconds)
        duration_ms = seconds * 1000
        request_logger.info(
            "%s %s %s %.1fms",
            request.method,
            request.path,
            response.status_code,
            duration_ms,
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round(duration_ms, 1),
            },
        )
        return response


def _reset(token: Token) -> None:
    request_id.reset(token)
    user_id.set("-")


class LogContextFilter(logging.Filter):
    """Adds ``request_id``, ``user_id``, ``room_id`` and ``node_id`` to every record (``-`` when
    there is none), so a formatter can print them."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Django logs a 4xx/5xx answer (``django.request``) after the middleware has returned:
        # the request it passes along still knows its id.
        request_id_of_record = getattr(getattr(record, "request", None), "request_id", None)
        record.request_id = request_id.get() if request_id_of_record is None else request_id_of_record
        record.user_id = getattr(record, "user_id", None) or user_id.get()
        record.room_id = getattr(record, "room_id", None) or "-"  # a socket's line passes its own
        record.node_id = settings.SYNCTV_NODE_ID
        return True


class JsonFormatter(json_logging.JsonFormatter):
    """python-json-logger's formatter, minus what could carry a secret. It writes every ``extra``
    of a record, and Django's ``django.request`` passes the request itself, whose text holds the
    full URL (``?key=``, ``?code=``...): that field is left out. Every other string value goes
    through the same redaction as the plain lines (apps/core/logredact.py)."""

    def process_log_record(self, log_data: dict) -> dict:
        log_data.pop("request", None)
        for key, value in log_data.items():
            if isinstance(value, str):
                log_data[key] = redact(value)
        return super().process_log_record(log_data)
