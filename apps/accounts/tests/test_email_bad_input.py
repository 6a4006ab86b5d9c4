"""Bad input on the e-mail endpoints (issue 12): every case is a 4xx in the error format, never a
500, and changes nothing (no password set, no address verified, no mail queued). Each case starts
from a body that succeeds (``test_the_valid_body_succeeds``) and breaks one thing, in the manner
of apps/accounts/tests/bad_input/."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from allauth.account.models import EmailAddress

from apps.accounts.models import User
from apps.accounts.tests.email_support import NEW_PASSWORD, RESEND, RESET, RESET_CONFIRM, VERIFY, last_key
from apps.accounts.tests.factories import PASSWORD, make_user
from apps.core.tests.helpers import assert_error, client_for
from apps.mail.models import OutboundEmail

pytestmark = pytest.mark.django_db


@dataclass
class Ctx:
    user: User
    access: str
    verify_key: str
    reset_key: str


@pytest.fixture
def ctx() -> Ctx:
    user, pair = make_user("alice", email="alice@example.com")
    client_for().post(RESET, {"email": "alice@example.com"}, format="json")
    return Ctx(
        user=user,
        access=pair.access,
        verify_key=last_key("alice@example.com", "verify-email"),
        reset_key=last_key("alice@example.com", "reset-password"),
    )


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str
    body: Callable[[Ctx], dict]
    ok_status: int
    authenticated: bool = False

    def send(self, ctx: Ctx, raw: str | bytes, content_type: str = "application/json"):
        client = client_for(ctx.access if self.authenticated else None, raise_request_exception=False)
        return client.generic("POST", self.path, raw, content_type=content_type)


ENDPOINTS = [
    Endpoint("verify", VERIFY, lambda c: {"key": c.verify_key}, 200),
    Endpoint("resend", RESEND, lambda c: {}, 202, authenticated=True),
    Endpoint("reset", RESET, lambda c: {"email": "alice@example.com"}, 202),
    Endpoint("reset_confirm", RESET_CONFIRM, lambda c: {"key": c.reset_key, "password": NEW_PASSWORD}, 200),
]


def snapshot(ctx: Ctx) -> tuple:
    ctx.user.refresh_from_db()
    verified = EmailAddress.objects.filter(user=ctx.user, verified=True).exists()
    return ctx.user.password, verified, OutboundEmail.objects.count()


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_the_valid_body_succeeds(ctx, endpoint):
    r = endpoint.send(ctx, json.dumps(endpoint.body(ctx)))
    assert r.status_code == endpoint.ok_status, r.content


BODIES = {
    "invalid_json": '{"key": ',
    "json_list": "[{}]",
    "json_number": "42",
    "json_string": '"alice"',
    "json_null": "null",
    "deep_list": "[" * 100_000,
    "not_utf8": b"\xff\xfe\xfa{}",
    "nan": '{"key": NaN, "email": NaN, "password": NaN}',
}


@pytest.mark.parametrize("case", sorted(BODIES))
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_bad_bodies(ctx, endpoint, case):
    before = snapshot(ctx)
    assert_error(endpoint.send(ctx, BODIES[case]), 400, "invalid")
    assert snapshot(ctx) == before


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_form_encoding_is_415(ctx, endpoint):
    before = snapshot(ctx)
    assert_error(endpoint.send(ctx, "key=x", "application/x-www-form-urlencoded"), 415)
    assert snapshot(ctx) == before


VALUES = {
    "missing": ...,
    "null": None,
    "int": 12345678,
    "float": 1.5,
    "true": True,
    "list": ["x"],
    "object": {"x": 1},
    "empty": "",
    "blank": "   ",
    "huge": "Aa1!" * 25_000,
    "nul_byte": "Ab1!\x00xyzw",
    "lone_surrogate": "Ab1!\ud800xyzw",
}


def _fields_of(endpoint: Endpoint, ctx: Ctx) -> list[str]:
    return sorted(endpoint.body(ctx))


@pytest.mark.parametrize("case", sorted(VALUES))
@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if e.name != "resend"], ids=lambda e: e.name)
def test_bad_field_values(ctx, endpoint, case):
    for field in _fields_of(endpoint, ctx):
        body = endpoint.body(ctx)
        if VALUES[case] is ...:
            del body[field]
        else:
            body[field] = VALUES[case]
        before = snapshot(ctx)
        r = endpoint.send(ctx, json.dumps(body))
        error = assert_error(r, 400, "invalid")
        assert field in error["details"], (field, error)
        assert snapshot(ctx) == before, field


@pytest.mark.parametrize(
    "email", ["no-at-sign", "a@", "@b.c", "a@b@c.d", "a" * 250 + "@example.com", "a\n@b.c"]
)
def test_reset_refuses_what_is_not_an_address(ctx, email):
    r = client_for(raise_request_exception=False).post(RESET, {"email": email}, format="json")
    assert set(assert_error(r, 400, "invalid")["details"]) == {"email"}


def test_resend_without_a_token_is_401_and_with_a_bad_one_too(ctx):
    assert_error(client_for(raise_request_exception=False).post(RESEND, format="json"), 401)
    assert_error(client_for("not.a.token", raise_request_exception=False).post(RESEND, format="json"), 401)


def test_confirm_with_the_verify_key_and_verify_with_the_reset_key_are_refused(ctx):
    before = snapshot(ctx)
    body = {"key": ctx.verify_key, "password": NEW_PASSWORD}
    assert_error(
        client_for(raise_request_exception=False).post(RESET_CONFIRM, body, format="json"), 400, "invalid"
    )
    r = client_for(raise_request_exception=False).post(VERIFY, {"key": ctx.reset_key}, format="json")
    assert_error(r, 400, "invalid")
    assert snapshot(ctx) == before
    assert ctx.user.check_password(PASSWORD)
