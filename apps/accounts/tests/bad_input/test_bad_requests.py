"""Bad requests around the bodies: the GET endpoints ignore bodies and queries they do not use,
the protected endpoints refuse bad Authorization headers, unknown paths are 404 and wrong
methods 405, all in the error format and with nothing changed."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from rest_framework.test import APIClient

from apps.accounts.tests.bad_input.conftest import anon_client, assert_unchanged, snapshot
from apps.core.tests.helpers import assert_error

pytestmark = pytest.mark.django_db


# --- the GET endpoints ignore what they do not use --------------------------------------------------

GET_ENDPOINTS = [
    pytest.param("/api/v1/users/me", True, id="users-me"),
    pytest.param("/api/v1/auth/jwks", False, id="jwks"),
    pytest.param("/.well-known/jwks.json", False, id="well-known-jwks"),
]
GET_NOISE = {
    "junk_json_body": ("[" * 100_000, "application/json"),
    "form_body": ("a=1", "application/x-www-form-urlencoded"),
    "binary_body": (b"\x00\xff" * 1000, "application/octet-stream"),
}


@pytest.mark.parametrize("noise", GET_NOISE)
@pytest.mark.parametrize(("path", "auth"), GET_ENDPOINTS)
def test_get_endpoints_ignore_bodies(ctx, path, auth, noise):
    raw, content_type = GET_NOISE[noise]
    client = ctx.authed() if auth else anon_client()
    r = client.generic("GET", path, raw, content_type=content_type)
    assert r.status_code == 200, r.content
    assert "error" not in r.json()


@pytest.mark.parametrize(("path", "auth"), GET_ENDPOINTS)
def test_get_endpoints_ignore_junk_query(ctx, path, auth):
    client = ctx.authed() if auth else anon_client()
    r = client.get(path + "?" + urlencode({"a": "\x00" * 10, "b": "[" * 5000, "page": "-1", "a[]": "{"}))
    assert r.status_code == 200, r.content
    # DRF's ?format= override naming a renderer we do not have: a 404 in the error format.
    assert_error(client.get(path + "?format=xml"), 404, "not_found")


BAD_AUTH_HEADERS = {
    "no_header": None,
    "empty": "",
    "bearer_only": "Bearer",
    "bearer_space": "Bearer ",
    "two_tokens": "Bearer a b",
    "basic": "Basic YWxpY2U6cGFzcw==",
    "garbage_token": "Bearer not.a.jwt",
    "huge_token": "Bearer " + "a" * 100_000,
    "nul_token": "Bearer abc\x00def",
    "non_ascii": "Bearer ünïcode",
}


@pytest.mark.parametrize("header", BAD_AUTH_HEADERS)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/users/me"),
        ("PATCH", "/api/v1/users/me"),
        ("POST", "/api/v1/auth/logout"),
        ("POST", "/api/v1/auth/logout-all"),
        ("POST", "/api/v1/auth/password/change"),
    ],
)
def test_protected_endpoints_refuse_bad_authorization(ctx, method, path, header):
    client = anon_client()
    extra = {} if BAD_AUTH_HEADERS[header] is None else {"HTTP_AUTHORIZATION": BAD_AUTH_HEADERS[header]}
    before = snapshot()
    r = client.generic(
        method, path, json.dumps({"refresh": ctx.refresh}), content_type="application/json", **extra
    )
    error = assert_error(r, 401)
    assert error["code"] in ("not_authenticated", "token_invalid")
    assert_unchanged(before, ctx)


@pytest.mark.parametrize("header", ["garbage_token", "huge_token", "nul_token", "two_tokens"])
def test_public_endpoints_treat_bad_token_as_anonymous(ctx, header):
    client = anon_client()
    client.credentials(HTTP_AUTHORIZATION=BAD_AUTH_HEADERS[header])
    assert client.get("/api/v1/auth/jwks").status_code == 200
    r = client.post("/api/v1/auth/login", {"username": "alice", "password": "x"}, format="json")
    assert_error(r, 401, "invalid_credentials")


# --- unknown paths and wrong methods ------------------------------------------------------------------

UNKNOWN_PATHS = [
    "/api/",
    "/api/v1/",
    "/api/v1/nope",
    "/api/v1/auth/",
    "/api/v1/auth/registerx",
    "/api/v1/auth/register/extra",
    "/api/v2/users/me",
    "/api/v1/users/someone-else",
    "/api/v1/users/me/%00",
    "/api/" + "x" * 5000,
]


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("path", UNKNOWN_PATHS, ids=lambda p: p[:40])
def test_unknown_api_path_is_404_in_error_format(path, method):
    r = anon_client().generic(method, path, "{}", content_type="application/json")
    assert_error(r, 404, "not_found")


def test_unknown_api_path_is_404_with_csrf_checks_on():
    """A browser-less client posting to a wrong URL gets the API's 404, not Django's CSRF page."""
    client = APIClient(enforce_csrf_checks=True, raise_request_exception=False)
    r = client.post("/api/v1/nope", {"a": 1}, format="json")
    assert_error(r, 404, "not_found")


WRONG_METHODS = [
    ("/api/v1/auth/register", ["GET", "PUT", "PATCH", "DELETE"]),
    ("/api/v1/auth/login", ["GET", "PUT", "PATCH", "DELETE"]),
    ("/api/v1/auth/refresh", ["GET", "PUT", "DELETE"]),
    ("/api/v1/auth/logout", ["GET", "PUT", "DELETE"]),
    ("/api/v1/auth/logout-all", ["GET", "PUT", "DELETE"]),
    ("/api/v1/auth/password/change", ["GET", "PUT", "PATCH", "DELETE"]),
    ("/api/v1/auth/jwks", ["POST", "PUT", "PATCH", "DELETE"]),
    ("/api/v1/users/me", ["POST", "PUT", "DELETE"]),
]


@pytest.mark.parametrize(
    ("path", "method"), [pytest.param(p, m, id=f"{m}-{p}") for p, methods in WRONG_METHODS for m in methods]
)
def test_wrong_method_is_405_in_error_format(ctx, path, method):
    before = snapshot()
    r = ctx.authed().generic(
        method, path, json.dumps({"refresh": ctx.refresh}), content_type="application/json"
    )
    assert_error(r, 405, "method_not_allowed")
    assert "Allow" in r
    assert_unchanged(before, ctx)
