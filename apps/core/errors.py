"""One error type with stable codes, and the one handler that turns errors into the API body.

Body (docs/api.md, "Errors"): ``{"error": {"code": "<snake_case>", "message": "<text>", "details": {...}}}``.
Services raise :class:`ApplicationError` (or a subclass); the DRF handler below and, later,
the WebSocket consumer turn it into their wire format.
"""

from __future__ import annotations

import logging
import math
import sys
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404, JsonResponse
from django.views import defaults
from rest_framework import exceptions as drf
from rest_framework.response import Response

logger = logging.getLogger(__name__)


class ApplicationError(drf.APIException):
    """A domain error with a stable ``code`` clients can branch on.

    It is a DRF APIException so that DRF treats one raised during authentication or
    throttling like its own; the handler below renders it.
    """

    status = 400
    code = "invalid"
    message = "The request could not be processed."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        status: int | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.message
        self.code = code or self.code
        self.status = status or self.status
        self.details = details or {}
        self.headers = headers or {}
        self.status_code = self.status
        super().__init__(self.message, self.code)


class InvalidInput(ApplicationError):
    status, code, message = 400, "invalid", "Invalid input."


class NotAuthenticated(ApplicationError):
    status, code, message = 401, "not_authenticated", "Authentication credentials were not provided."


class InvalidCredentials(ApplicationError):
    status, code, message = 401, "invalid_credentials", "Wrong username or password."


class TokenInvalid(ApplicationError):
    status, code, message = 401, "token_invalid", "The token is invalid or expired."


class TokenRevoked(ApplicationError):
    status, code, message = 401, "token_revoked", "The token has been revoked."


class UserBanned(ApplicationError):
    status, code, message = 403, "user_banned", "This account is banned."


class AccountPending(ApplicationError):
    status, code, message = 403, "account_pending", "This account is awaiting approval."


class PermissionDenied(ApplicationError):
    status, code, message = 403, "permission_denied", "You do not have permission to do this."


class NotInRoom(ApplicationError):
    status, code, message = 403, "not_in_room", "You are not a member of this room."


class RoomPasswordRequired(ApplicationError):
    status, code, message = 403, "room_password_required", "This room needs a password."


class RoomPasswordWrong(ApplicationError):
    status, code, message = 403, "room_password_wrong", "Wrong room password."


class RoomClosed(ApplicationError):
    status, code, message = 403, "room_closed", "This room is closed."


class NotFound(ApplicationError):
    status, code, message = 404, "not_found", "Not found."


class Conflict(ApplicationError):
    status, code, message = 409, "conflict", "The resource changed; reload and try again."


class RateLimited(ApplicationError):
    status, code, message = 429, "rate_limited", "Too many requests; slow down."

    def __init__(self, retry_after: float, message: str | None = None) -> None:
        seconds = max(1, math.ceil(retry_after))
        super().__init__(
            message,
            details={"retry_after": seconds},
            headers={"Retry-After": str(seconds)},
        )


class ServiceDegraded(ApplicationError):
    status, code, message = 503, "service_degraded", "The service is degraded; retry shortly."

    def __init__(self, retry_after: int = 5, message: str | None = None) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict:
    return {"error": {"code": code, "message": str(message), "details": details or {}}}


def _first_message(detail: Any) -> str:
    """A human sentence from DRF's nested error detail."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            inner = _first_message(value)
            return inner if key in ("non_field_errors", "detail") else f"{key}: {inner}"
        return "Invalid input."
    if isinstance(detail, list):
        return _first_message(detail[0]) if detail else "Invalid input."
    return str(detail)


def _as_details(detail: Any) -> dict[str, Any]:
    if isinstance(detail, dict):
        return {str(k): _plain(v) for k, v in detail.items()}
    return {"non_field_errors": _plain(detail if isinstance(detail, list) else [detail])}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return str(value)


# DRF exception class -> (status, code). Order matters: subclasses first.
_DRF_CODES: list[tuple[type[Exception], str]] = [
    (drf.NotAuthenticated, "not_authenticated"),
    (drf.AuthenticationFailed, "token_invalid"),
    (drf.PermissionDenied, "permission_denied"),
    (drf.NotFound, "not_found"),
    (drf.MethodNotAllowed, "method_not_allowed"),
    (drf.NotAcceptable, "not_acceptable"),
    (drf.UnsupportedMediaType, "unsupported_media_type"),
    (drf.Throttled, "rate_limited"),
    (drf.ParseError, "invalid"),
    (drf.ValidationError, "invalid"),
]


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's EXCEPTION_HANDLER: every API error leaves in the one format. A 401, or an account
    refused for what it is (banned, awaiting approval), counts in /metrics as an authentication
    failure, by its code, as the WebSocket's refusals do (apps/rooms/handshake.py)."""
    response = _error_response(exc, context)
    if response is None or response.status_code not in (401, 403):
        return response
    error = response.data.get("error") if isinstance(response.data, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    if response.status_code == 401 or code in ACCOUNT_REFUSALS:
        from apps.core import metrics  # it imports this module

        metrics.auth_failed(code if isinstance(code, str) else "unknown").inc()
    return response


ACCOUNT_REFUSALS = frozenset({UserBanned.code, AccountPending.code})


def _error_response(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, ApplicationError):
        return Response(
            error_body(exc.code, exc.message, exc.details), status=exc.status, headers=exc.headers
        )
    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        return Response(error_body("payload_too_large", "The request body is too large."), status=413)
    elif isinstance(exc, SuspiciousOperation):
        return Response(error_body("invalid", "The request was malformed."), status=400)

    if not isinstance(exc, drf.APIException):
        from apps.core import dbfaults

        if dbfaults.degraded(exc):  # the database failed: 503, and a retry (apps/core/dbfaults.py)
            return dbfaults.degraded_response(context["request"]._request, exc)
        return None  # a real bug: let Django log it and answer 500 (see server_error below)

    code = next((c for cls, c in _DRF_CODES if isinstance(exc, cls)), "error")
    headers: dict[str, str] = {}
    if isinstance(exc, drf.Throttled):
        wait = max(1, math.ceil(exc.wait or 1))
        headers["Retry-After"] = str(wait)
        return Response(
            error_body(code, "Too many requests; slow down.", {"retry_after": wait}),
            status=429,
            headers=headers,
        )
    if isinstance(exc, drf.ValidationError):
        details = _as_details(exc.detail)
        return Response(error_body(code, _first_message(exc.detail), details), status=400)
    if isinstance(exc, drf.AuthenticationFailed | drf.NotAuthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="api"'
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    return Response(error_body(code, _first_message(exc.detail)), status=exc.status_code, headers=headers)


# Django-level handlers (urls.py): under /api/ errors keep the API's format; elsewhere
# (admin, pages) Django's own pages.
def is_api(request) -> bool:
    return request.path.startswith("/api/")


def not_found(request, exception=None):
    if is_api(request):
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    from apps.core import dbfaults

    exc = sys.exc_info()[1]
    if exc is not None and dbfaults.degraded(exc):  # a middleware's query failed: 503, not 500
        return dbfaults.degraded_response(request, exc)
    if is_api(request):
        return JsonResponse(error_body("server_error", "Internal server error."), status=500)
    return defaults.server_error(request)


def bad_request(request, exception=None):
    if is_api(request):
        return JsonResponse(error_body("invalid", "The request was malformed."), status=400)
    return defaults.bad_request(request, exception)
