"""Bad bodies on every accounts endpoint that takes one: the body as a whole wrong (not JSON,
not an object, too deep, too big, the wrong content type), empty, or with fields the endpoint
does not know."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from apps.accounts.models import User
from apps.accounts.tests.bad_input.conftest import (
    ENDPOINTS,
    NEW_PASSWORD,
    anon_client,
    assert_unchanged,
    snapshot,
)
from apps.core.tests.helpers import assert_error

pytestmark = pytest.mark.django_db


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
    r = anon_client().post("/api/v1/auth/register", {"username": "newbie", "password": NEW_PASSWORD})
    assert_error(r, 415, "unsupported_media_type")
    assert not User.objects.filter(username="newbie").exists()


def test_extra_unknown_fields_cannot_set_role(ctx):
    """Fields the serializer does not know are ignored: no mass assignment of role or id."""
    r = anon_client().post(
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
