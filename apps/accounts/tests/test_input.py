"""Bad input on every accounts endpoint: a 4xx in the error format, never a 500, nothing changed.

The matrix is endpoints x bad payloads. Each case starts from a body that would succeed
(``test_valid_base_body_succeeds`` proves it), breaks one thing, and checks the answer and that
no row moved: no user created, password and profile unchanged, sessions and audit log untouched,
and the caller's access token still works.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from urllib.parse import urlencode

import pytest
from django.contrib.auth.hashers import make_password
from django.db import transaction
from rest_framework.test import APIClient

from apps.accounts import keystore as keystore_module
from apps.accounts import services
from apps.accounts.models import AuthSession, User
from apps.accounts.tests.factories import PASSWORD, TEST_ORIGIN
from apps.audit.models import AuditEvent
from apps.core.tests.helpers import assert_error

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "N3w-passw0rd!"
MISSING = object()


# --- helpers -------------------------------------------------------------------------------------


def assert_field_error(response, field_name: str) -> None:
    """400 ``invalid`` whose details map the field to a list of messages."""
    error = assert_error(response, 400, "invalid")
    assert field_name in error["details"], error
    messages = error["details"][field_name]
    assert isinstance(messages, list) and messages and all(isinstance(m, str) and m for m in messages)


@functools.cache
def _password_hash() -> str:
    # One Argon2id hash for the whole module: the matrix has hundreds of cases.
    return make_password(PASSWORD)


_seed_private_key_once = functools.cache(keystore_module._seed_private_key)


@pytest.fixture(autouse=True)
def _parse_the_seed_key_once(monkeypatch):
    """Each test's rolled-back database re-seeds the key store from var/jwt_private.pem; parsing
    that PEM costs ~35 ms, which over this matrix is most of its run time. Same key, parsed once."""
    monkeypatch.setattr(keystore_module, "_seed_private_key", _seed_private_key_once)


def _client() -> APIClient:
    return APIClient(raise_request_exception=False)


@dataclass
class Ctx:
    user: User
    access: str
    refresh: str
    client: APIClient = field(default_factory=_client)

    def authed(self) -> APIClient:
        client = _client()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {self.access}")
        return client


@pytest.fixture
def ctx() -> Ctx:
    user = User.objects.create(username="alice", email="alice@example.com", password=_password_hash())
    with transaction.atomic():
        pair = services._session_open(user=user, origin=TEST_ORIGIN)
    return Ctx(user=user, access=pair.access, refresh=pair.refresh)


def snapshot() -> dict:
    return {
        "users": list(User.objects.order_by("pk").values_list("pk", "username", "email", "role", "password")),
        "sessions": list(
            AuthSession.objects.order_by("pk").values_list("pk", "refresh_jti", "revoked_at", "expires_at")
        ),
        "audit": AuditEvent.objects.count(),
    }


def assert_unchanged(before: dict, ctx: Ctx) -> None:
    assert snapshot() == before
    assert not User.objects.filter(username__iexact="newbie").exists()
    # The caller's tokens were not revoked (the revocation list lives outside the database).
    assert ctx.authed().get("/api/v1/users/me").status_code == 200


# --- the endpoints -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldSpec:
    name: str
    required: bool = True
    nullable: bool = False
    blank_ok: bool = False
    # Passwords are not trimmed: "   " is a (weak) password, judged by the password rule or login.
    whitespace_ok: bool = False


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str
    auth: bool
    fields: tuple[FieldSpec, ...]
    ok_status: int

    def body(self, ctx: Ctx) -> dict:
        return VALID_BODIES[self.name](ctx)

    def client(self, ctx: Ctx) -> APIClient:
        return ctx.authed() if self.auth else _client()

    def send(self, ctx: Ctx, raw: bytes | str, content_type: str | None = "application/json", **extra):
        kwargs = {"content_type": content_type} if content_type is not None else {}
        return self.client(ctx).generic(self.method, self.path, raw, **kwargs, **extra)


VALID_BODIES = {
    "register": lambda c: {"username": "newbie", "password": NEW_PASSWORD, "email": "newbie@example.com"},
    "login": lambda c: {"username": "alice", "password": PASSWORD},
    "refresh": lambda c: {"refresh": c.refresh},
    "logout": lambda c: {"refresh": c.refresh},
    "logout_all": lambda c: {},
    "password_change": lambda c: {"old_password": PASSWORD, "new_password": NEW_PASSWORD},
    # Changing the address needs the current password (issue 10, finding 9).
    "me_patch": lambda c: {"username": "alice2", "email": "alice2@example.com", "current_password": PASSWORD},
}

ENDPOINTS = [
    Endpoint(
        "register",
        "POST",
        "/api/v1/auth/register",
        False,
        (
            FieldSpec("username"),
            FieldSpec("password", whitespace_ok=True),
            FieldSpec("email", False, True, True),
        ),
        201,
    ),
    Endpoint(
        "login",
        "POST",
        "/api/v1/auth/login",
        False,
        (FieldSpec("username"), FieldSpec("password", whitespace_ok=True)),
        200,
    ),
    Endpoint("refresh", "POST", "/api/v1/auth/refresh", False, (FieldSpec("refresh"),), 200),
    Endpoint("logout", "POST", "/api/v1/auth/logout", True, (FieldSpec("refresh"),), 204),
    Endpoint("logout_all", "POST", "/api/v1/auth/logout-all", True, (), 204),
    Endpoint(
        "password_change",
        "POST",
        "/api/v1/auth/password/change",
        True,
        (FieldSpec("old_password", whitespace_ok=True), FieldSpec("new_password", whitespace_ok=True)),
        200,
    ),
    Endpoint(
        "me_patch",
        "PATCH",
        "/api/v1/users/me",
        True,
        (
            FieldSpec("username", required=False),
            FieldSpec("email", False, True, True),
            FieldSpec("current_password", required=False, whitespace_ok=True),
        ),
        200,
    ),
]
BY_NAME = {e.name: e for e in ENDPOINTS}


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_valid_base_body_succeeds(ctx, endpoint):
    """Every bad case below differs from this body in one thing only."""
    r = endpoint.send(ctx, json.dumps(endpoint.body(ctx)))
    assert r.status_code == endpoint.ok_status, r.content


# --- field-level matrix: one field of a valid body made wrong ---------------------------------------

FIELD_CASES: dict[str, object] = {
    "missing": MISSING,
    "null": None,
    "int": 12345678,
    "negative_int": -1,
    "float": 1234.5,
    "big_int": 10**400,
    "true": True,
    "false": False,
    "list": ["alice"],
    "empty_list": [],
    "object": {"value": "alice"},
    "empty_string": "",
    "blank_string": "   ",
    "huge_100k": "Aa1!" * 25_000,
    "huge_2m": "Aa1!" * 500_000,
    "nul_byte": "Ab1!\x00xyzw",
    "only_nul": "\x00",
    "lone_surrogate": "Ab1!\ud800xyzw",
}


def _field_case_applies(spec: FieldSpec, case: str) -> bool:
    """Skip the cases the contract allows for this field (an optional field left out, ...)."""
    if case == "missing":
        return spec.required
    if case == "null":
        return not spec.nullable
    if case in ("empty_string", "blank_string"):
        return not (spec.blank_ok or (case == "blank_string" and spec.whitespace_ok))
    return True


FIELD_MATRIX = [
    pytest.param(endpoint, spec.name, case, id=f"{endpoint.name}-{spec.name}-{case}")
    for endpoint in ENDPOINTS
    for spec in endpoint.fields
    for case in FIELD_CASES
    if _field_case_applies(spec, case)
]


@pytest.mark.parametrize(("endpoint", "field_name", "case"), FIELD_MATRIX)
def test_bad_field(ctx, endpoint, field_name, case):
    body = endpoint.body(ctx)
    value = FIELD_CASES[case]
    if value is MISSING:
        body.pop(field_name)
    else:
        body[field_name] = value
    before = snapshot()
    r = endpoint.send(ctx, json.dumps(body))  # ensure_ascii: a lone surrogate travels as \ud800
    assert_field_error(r, field_name)
    assert_unchanged(before, ctx)


# --- body-level matrix: the body as a whole is wrong ------------------------------------------------


def _with_literal(body: dict, literal: str) -> str:
    """The valid body with its first value replaced by a bare JSON literal like NaN."""
    key = next(iter(body))
    return json.dumps({**body, key: "@@LITERAL@@"}).replace('"@@LITERAL@@"', literal)


# name -> (make raw body from the valid body, content type, expected status, expected code)
BODY_CASES = {
    "invalid_json": (lambda b: '{"username": ', "application/json", 400, "invalid"),
    "trailing_garbage": (lambda b: json.dumps(b) + " }", "application/json", 400, "invalid"),
    "single_quotes": (lambda b: str(b), "application/json", 400, "invalid"),
    "not_utf8": (lambda b: b"\xff\xfe\xfa{}", "application/json", 400, "invalid"),
    "json_list": (lambda b: json.dumps([b]), "application/json", 400, "invalid"),
    "json_empty_list": (lambda b: "[]", "application/json", 400, "invalid"),
    "json_number": (lambda b: "42", "application/json", 400, "invalid"),
    "json_string": (lambda b: '"alice"', "application/json", 400, "invalid"),
    "json_null": (lambda b: "null", "application/json", 400, "invalid"),
    "json_true": (lambda b: "true", "application/json", 400, "invalid"),
    "deep_list": (lambda b: "[" * 100_000, "application/json", 400, "invalid"),
    "deep_list_closed": (lambda b: "[" * 100_000 + "]" * 100_000, "application/json", 400, "invalid"),
    "deep_object": (lambda b: '{"a":' * 100_000, "application/json", 400, "invalid"),
    "nan": (lambda b: _with_literal(b, "NaN"), "application/json", 400, "invalid"),
    "infinity": (lambda b: _with_literal(b, "Infinity"), "application/json", 400, "invalid"),
    "minus_infinity": (lambda b: _with_literal(b, "-Infinity"), "application/json", 400, "invalid"),
    "bad_charset": (lambda b: json.dumps(b), "application/json; charset=utf-16", 400, "invalid"),
    "rot13_charset": (lambda b: json.dumps(b), "application/json; charset=rot13", 400, "invalid"),
    "form_urlencoded": (
        lambda b: urlencode(b),
        "application/x-www-form-urlencoded",
        415,
        "unsupported_media_type",
    ),
    "multipart": (
        lambda b: b'--x\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--x--\r\n',
        "multipart/form-data; boundary=x",
        415,
        "unsupported_media_type",
    ),
    "text_plain": (lambda b: json.dumps(b), "text/plain", 415, "unsupported_media_type"),
    "xml": (lambda b: "<a>1</a>", "application/xml", 415, "unsupported_media_type"),
    # Above DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MiB): refused before parsing.
    "body_3mb": (
        lambda b: json.dumps({**b, "pad": "x" * 3_000_000}),
        "application/json",
        413,
        "payload_too_large",
    ),
}

# An empty body is an empty object: a 400 only where something is required.
EMPTY_CASES = {
    "empty_json": ("", "application/json"),
    "empty_no_content_type": ("", None),
    "empty_object": ("{}", "application/json"),
}

BODY_MATRIX = [
    pytest.param(endpoint, case, id=f"{endpoint.name}-{case}")
    for endpoint in ENDPOINTS
    for case in BODY_CASES
]


@pytest.mark.parametrize(("endpoint", "case"), BODY_MATRIX)
def test_bad_body(ctx, endpoint, case):
    make, content_type, status, code = BODY_CASES[case]
    # logout-all takes no fields; an unknown one keeps its bodies non-empty (and still malformed)
    body = endpoint.body(ctx) or {"anything": "1"}
    raw = make(body)
    before = snapshot()
    r = endpoint.send(ctx, raw, content_type)
    assert_error(r, status, code)
    assert_unchanged(before, ctx)


EMPTY_MATRIX = [
    pytest.param(endpoint, case, id=f"{endpoint.name}-{case}")
    for endpoint in ENDPOINTS
    if any(spec.required for spec in endpoint.fields)
    for case in EMPTY_CASES
]


@pytest.mark.parametrize(("endpoint", "case"), EMPTY_MATRIX)
def test_empty_body(ctx, endpoint, case):
    raw, content_type = EMPTY_CASES[case]
    before = snapshot()
    r = endpoint.send(ctx, raw, content_type)
    error = assert_error(r, 400, "invalid")
    required = {spec.name for spec in endpoint.fields if spec.required}
    assert required <= set(error["details"]), error
    assert_unchanged(before, ctx)


def test_form_body_with_valid_fields_creates_no_user(ctx):
    """Even a well-formed form post with a good username and password is refused (JSON only)."""
    # Django's test client sends a dict as multipart/form-data.
    r = _client().post("/api/v1/auth/register", {"username": "newbie", "password": NEW_PASSWORD})
    assert_error(r, 415, "unsupported_media_type")
    assert not User.objects.filter(username="newbie").exists()


def test_extra_unknown_fields_cannot_set_role(ctx):
    """Fields the serializer does not know are ignored: no mass assignment of role or id."""
    r = _client().post(
        "/api/v1/auth/register",
        {
            "username": "newbie",
            "password": NEW_PASSWORD,
            "role": "root",
            "id": "chosen",
            "is_superuser": True,
        },
        format="json",
    )
    assert r.status_code == 201, r.content
    user = User.objects.get(username="newbie")
    assert user.role == "user" and user.pk != "chosen"
    r = ctx.authed().patch("/api/v1/users/me", {"role": "root", "id": "x"}, format="json")
    assert r.status_code == 200
    ctx.user.refresh_from_db()
    assert ctx.user.role == "user"


# --- value rules that are not about types --------------------------------------------------------

VALUE_CASES = [
    ("register", "username", "ab"),
    ("register", "username", "a" * 33),
    ("register", "username", "has space"),
    ("register", "username", "semi;colon"),
    ("register", "username", "ünïcode"),
    ("register", "username", "line\nbreak"),
    ("register", "username", "alice"),  # taken
    ("register", "username", "ALICE"),  # taken, case-insensitively
    ("register", "email", "not-an-email"),
    ("register", "email", "a" * 250 + "@example.com"),
    ("register", "password", "short1A"),
    ("register", "password", "alllowercase"),
    ("me_patch", "username", "x"),
    ("me_patch", "username", "bad name"),
    ("me_patch", "email", "nope"),
    ("me_patch", "current_password", "Wr0ng-password"),
    ("password_change", "new_password", "short1A"),
    ("password_change", "new_password", "a" * 129),
    ("password_change", "old_password", "Wr0ng-password"),
]


@pytest.mark.parametrize(("endpoint_name", "field_name", "value"), VALUE_CASES)
def test_bad_value(ctx, endpoint_name, field_name, value):
    endpoint = BY_NAME[endpoint_name]
    body = endpoint.body(ctx)
    body[field_name] = value
    before = snapshot()
    r = endpoint.send(ctx, json.dumps(body))
    assert_field_error(r, field_name)
    after = snapshot()
    if (endpoint_name, field_name) in (("password_change", "old_password"), ("me_patch", "current_password")):
        # A wrong current password is audited (auth.password_change_failed, user.update_refused);
        # nothing else moves.
        assert after["audit"] == before["audit"] + 1
        after["audit"] = before["audit"]
    assert after == before
    assert ctx.authed().get("/api/v1/users/me").status_code == 200


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
    client = ctx.authed() if auth else _client()
    r = client.generic("GET", path, raw, content_type=content_type)
    assert r.status_code == 200, r.content
    assert "error" not in r.json()


@pytest.mark.parametrize(("path", "auth"), GET_ENDPOINTS)
def test_get_endpoints_ignore_junk_query(ctx, path, auth):
    client = ctx.authed() if auth else _client()
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
    client = _client()
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
    client = _client()
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
    r = _client().generic(method, path, "{}", content_type="application/json")
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
