"""The one error format: {"error": {"code", "message", "details"}}, from DRF views, Django's
handlers under /api/, and a real bug (500) — never a traceback, never HTML under /api/."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpResponse
from django.test import Client, override_settings
from django.urls import include, path
from rest_framework import exceptions as drf
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core import errors
from apps.core.errors import (
    AccountPending,
    ApplicationError,
    Conflict,
    InvalidCredentials,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServiceDegraded,
    TokenInvalid,
    TokenRevoked,
    UserBanned,
    api_exception_handler,
)

SECRET = "s3cret-internal-detail"


def handle(exc):
    return api_exception_handler(exc, {})


def assert_format(body: dict) -> dict:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    return body["error"]


# --- the handler, unit by unit -------------------------------------------------------------------

APPLICATION_ERRORS = [
    (InvalidInput(), 400, "invalid"),
    (NotAuthenticated(), 401, "not_authenticated"),
    (InvalidCredentials(), 401, "invalid_credentials"),
    (TokenInvalid(), 401, "token_invalid"),
    (TokenRevoked(), 401, "token_revoked"),
    (UserBanned(), 403, "user_banned"),
    (AccountPending(), 403, "account_pending"),
    (PermissionDenied(), 403, "permission_denied"),
    (NotFound(), 404, "not_found"),
    (Conflict(), 409, "conflict"),
    (ApplicationError("custom", code="room_password_wrong", status=403), 403, "room_password_wrong"),
]


@pytest.mark.parametrize(("exc", "status", "code"), APPLICATION_ERRORS, ids=lambda v: str(v)[:30])
def test_application_errors(exc, status, code):
    r = handle(exc)
    assert r.status_code == status
    error = assert_format(r.data)
    assert error["code"] == code


def test_application_error_details_and_message():
    r = handle(InvalidInput("name: too long", details={"name": ["Too long."]}))
    assert r.data == {
        "error": {"code": "invalid", "message": "name: too long", "details": {"name": ["Too long."]}}
    }


@pytest.mark.parametrize(("wait", "header"), [(0, "1"), (0.2, "1"), (1, "1"), (1.2, "2"), (59.9, "60")])
def test_rate_limited_has_retry_after_in_whole_seconds(wait, header):
    r = handle(RateLimited(wait))
    assert r.status_code == 429
    assert r["Retry-After"] == header
    assert r.data["error"]["code"] == "rate_limited"
    assert r.data["error"]["details"] == {"retry_after": int(header)}


def test_service_degraded_has_retry_after():
    r = handle(ServiceDegraded(7))
    assert r.status_code == 503 and r["Retry-After"] == "7"
    assert r.data["error"]["code"] == "service_degraded"


DJANGO_AND_DRF = [
    (Http404("no room " + SECRET), 404, "not_found"),
    (DjangoPermissionDenied(SECRET), 403, "permission_denied"),
    (RequestDataTooBig(SECRET), 413, "payload_too_large"),
    (SuspiciousOperation(SECRET), 400, "invalid"),
    (drf.NotAuthenticated(), 401, "not_authenticated"),
    (drf.AuthenticationFailed(), 401, "token_invalid"),
    (drf.PermissionDenied(), 403, "permission_denied"),
    (drf.NotFound(), 404, "not_found"),
    (drf.MethodNotAllowed("DELETE"), 405, "method_not_allowed"),
    (drf.NotAcceptable(), 406, "not_acceptable"),
    (drf.UnsupportedMediaType("text/plain"), 415, "unsupported_media_type"),
    (drf.ParseError(), 400, "invalid"),
    (drf.Throttled(wait=3.5), 429, "rate_limited"),
]


@pytest.mark.parametrize(("exc", "status", "code"), DJANGO_AND_DRF, ids=lambda v: type(v).__name__)
def test_django_and_drf_exceptions(exc, status, code):
    r = handle(exc)
    assert r.status_code == status
    error = assert_format(r.data)
    assert error["code"] == code
    assert SECRET not in str(r.data)  # internal messages of Django exceptions do not leak


def test_auth_errors_carry_www_authenticate():
    assert handle(drf.NotAuthenticated())["WWW-Authenticate"].startswith("Bearer")
    assert handle(drf.AuthenticationFailed())["WWW-Authenticate"].startswith("Bearer")


def test_throttled_retry_after():
    r = handle(drf.Throttled(wait=3.5))
    assert r["Retry-After"] == "4" and r.data["error"]["details"] == {"retry_after": 4}
    r = handle(drf.Throttled(wait=None))
    assert int(r["Retry-After"]) >= 1


def test_validation_errors_map_fields_to_messages():
    r = handle(drf.ValidationError({"username": ["Too short.", "Bad characters."], "email": ["Invalid."]}))
    assert r.status_code == 400
    error = assert_format(r.data)
    assert error["code"] == "invalid"
    assert error["details"] == {"username": ["Too short.", "Bad characters."], "email": ["Invalid."]}
    assert error["message"] == "username: Too short."


def test_validation_errors_nested_and_non_field():
    r = handle(drf.ValidationError({"settings": {"hidden": ["Must be a boolean."]}}))
    assert r.data["error"]["details"] == {"settings": {"hidden": ["Must be a boolean."]}}
    assert r.data["error"]["message"] == "settings: hidden: Must be a boolean."
    r = handle(drf.ValidationError(["Expected an object."]))
    assert r.data["error"]["details"] == {"non_field_errors": ["Expected an object."]}
    assert r.data["error"]["message"] == "Expected an object."
    r = handle(drf.ValidationError({"non_field_errors": ["Passwords differ."]}))
    assert r.data["error"]["message"] == "Passwords differ."
    r = handle(drf.ValidationError({"items": [{}, {"name": ["Required."]}]}))
    assert r.data["error"]["details"] == {"items": [{}, {"name": ["Required."]}]}


def test_unexpected_exception_is_left_to_django():
    """A real bug is not dressed up as a 4xx: Django logs it and handler500 answers."""
    assert handle(ValueError("bug")) is None
    assert handle(KeyError("bug")) is None


# --- through the stack: a throwaway URLconf with views that fail -----------------------------------


class BoomView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    def get(self, request):
        raise RuntimeError(SECRET)


class ForbiddenView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    def get(self, request):
        raise DjangoPermissionDenied(SECRET)


class MissingView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    def get(self, request):
        raise Http404(SECRET)


class FieldsView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    def post(self, request):
        if not isinstance(request.data, dict) or "name" not in request.data:
            raise drf.ValidationError({"name": ["This field is required."]})
        return Response({"ok": True})


def plain_boom(request):
    raise RuntimeError(SECRET)


def plain_suspicious(request):
    raise SuspiciousOperation(SECRET)


def page(request):
    return HttpResponse("a page")


api_patterns = [
    path("boom", BoomView.as_view()),
    path("forbidden", ForbiddenView.as_view()),
    path("missing", MissingView.as_view()),
    path("fields", FieldsView.as_view()),
    path("plain-boom", plain_boom),
    path("plain-suspicious", plain_suspicious),
]
urlpatterns = [
    path("api/t/", include(api_patterns)),
    path("page/boom", plain_boom),
    path("page/ok", page),
]
handler400 = "apps.core.errors.bad_request"
handler404 = "apps.core.errors.not_found"
handler500 = "apps.core.errors.server_error"

THIS_URLCONF = __name__


@pytest.fixture
def client():
    with override_settings(ROOT_URLCONF=THIS_URLCONF, DEBUG=False):
        yield Client(raise_request_exception=False)


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/api/t/boom", 500, "server_error"),
        ("/api/t/plain-boom", 500, "server_error"),
        ("/api/t/forbidden", 403, "permission_denied"),
        ("/api/t/missing", 404, "not_found"),
        ("/api/t/plain-suspicious", 400, "invalid"),
        ("/api/t/unknown", 404, "not_found"),
    ],
)
def test_api_errors_through_the_stack(client, path, status, code):
    r = client.get(path)
    assert r.status_code == status
    assert r["Content-Type"].startswith("application/json")
    error = assert_format(r.json())
    assert error["code"] == code
    assert SECRET not in r.content.decode()
    assert "Traceback" not in r.content.decode()


def test_field_errors_through_the_stack(client):
    r = client.post("/api/t/fields", "[1, 2]", content_type="application/json")
    assert r.status_code == 400
    assert assert_format(r.json())["details"] == {"name": ["This field is required."]}


def test_pages_keep_django_error_pages(client):
    r = client.get("/page/boom")
    assert r.status_code == 500
    assert not r["Content-Type"].startswith("application/json")
    assert SECRET not in r.content.decode()
    r = client.get("/page/nope")
    assert r.status_code == 404 and not r["Content-Type"].startswith("application/json")


# --- with the real URLconf ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_disallowed_host_under_api_is_a_400_in_the_error_format():
    r = Client(raise_request_exception=False).get("/api/v1/users/me", HTTP_HOST="evil.example")
    assert r.status_code == 400
    assert assert_format(r.json())["code"] == "invalid"


@pytest.mark.django_db
def test_unknown_api_path_in_debug_too():
    with override_settings(DEBUG=True):
        r = Client(raise_request_exception=False).get("/api/v1/definitely-not-here")
    assert r.status_code == 404
    assert assert_format(r.json())["code"] == "not_found"


def test_error_body_helper():
    assert errors.error_body("conflict", "Changed.") == {
        "error": {"code": "conflict", "message": "Changed.", "details": {}}
    }
