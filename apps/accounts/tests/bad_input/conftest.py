"""What every bad-input case on the accounts endpoints shares: a user ``alice`` with a live
session (``ctx``), the table of endpoints with a body that succeeds for each (``ENDPOINTS``,
``VALID_BODIES``) and ``snapshot`` / ``assert_unchanged``, which check that no row moved: no user
created, password and profile unchanged, sessions and audit log untouched, and the caller's
access token still works.

Each case starts from a body that would succeed (``test_valid_base_body_succeeds`` proves it),
breaks one thing, and checks the answer (a 4xx in the error format, never a 500) and that
nothing changed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import pytest
from django.db import transaction
from rest_framework.test import APIClient

from apps.accounts import keystore as keystore_module
from apps.accounts import services
from apps.accounts.models import AuthSession, User
from apps.accounts.tests.factories import PASSWORD, TEST_ORIGIN, password_hash
from apps.audit.models import AuditEvent
from apps.core.tests.helpers import assert_error

NEW_PASSWORD = "N3w-passw0rd!"

# --- helpers -------------------------------------------------------------------------------------


def assert_field_error(response, field_name: str) -> None:
    """400 ``invalid`` whose details map the field to a list of messages."""
    error = assert_error(response, 400, "invalid")
    assert field_name in error["details"], error
    messages = error["details"][field_name]
    assert isinstance(messages, list) and messages and all(isinstance(m, str) and m for m in messages)


_seed_private_key_once = functools.cache(keystore_module._seed_private_key)


@pytest.fixture(autouse=True)
def _parse_the_seed_key_once(monkeypatch):
    """Each test's rolled-back database re-seeds the key store from var/jwt_private.pem; parsing
    that PEM costs ~35 ms, which over this matrix is most of its run time. Same key, parsed once."""
    monkeypatch.setattr(keystore_module, "_seed_private_key", _seed_private_key_once)


def anon_client() -> APIClient:
    return APIClient(raise_request_exception=False)


@dataclass
class Ctx:
    user: User
    access: str
    refresh: str
    client: APIClient = field(default_factory=anon_client)

    def authed(self) -> APIClient:
        client = anon_client()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {self.access}")
        return client


@pytest.fixture
def ctx() -> Ctx:
    user = User.objects.create(username="alice", email="alice@example.com", password=password_hash())
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
        return ctx.authed() if self.auth else anon_client()

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
