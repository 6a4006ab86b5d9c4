"""Bad fields on every accounts endpoint that takes a body: one field of a body that
succeeds made wrong, by its type, its size, its bytes or a rule of its value (a taken
username, a weak password, a wrong current password)."""

from __future__ import annotations

import json

import pytest

from apps.accounts.tests.bad_input.conftest import (
    BY_NAME,
    ENDPOINTS,
    FieldSpec,
    assert_field_error,
    assert_unchanged,
    snapshot,
)

pytestmark = pytest.mark.django_db


MISSING = object()


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_valid_base_body_succeeds(ctx, endpoint):
    """Every bad case of this package differs from this body in one thing only."""
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
