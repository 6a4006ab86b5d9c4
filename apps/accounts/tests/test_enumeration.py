"""Issue 10, finding 9: registration does not tell whether an e-mail address is registered, and
changing the address on ``users/me`` needs the current password (so only the account's owner can
try addresses, a few an hour).

With ``ACCOUNT_EMAIL_VERIFICATION`` optional (the default), registering with an address that
belongs to another account creates the account without an address and answers exactly as for a
free address; the owner is told by mail (docs/security.md, "Accounts and staff"). The mandatory
mode, where no account is created at all, is in test_email_enumeration.py.
"""

from __future__ import annotations

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from apps.accounts.models import User
from apps.accounts.tests.factories import PASSWORD, make_user
from apps.audit.models import AuditEvent

pytestmark = pytest.mark.django_db

REGISTER = "/api/v1/auth/register"
ME = "/api/v1/users/me"
NEW_PASSWORD = "N3w-passw0rd"


def register(username: str, email: str | None, ip: str = "198.51.100.120"):
    body = {"username": username, "password": NEW_PASSWORD}
    if email is not None:
        body["email"] = email
    return APIClient(raise_request_exception=False, REMOTE_ADDR=ip).post(REGISTER, body, format="json")


def shape(value):
    """The JSON's structure and types, not its values."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value).__name__


def test_register_answers_the_same_for_a_known_and_an_unknown_address():
    owner, _ = make_user("owner", email="owner@example.com")
    known = register("newbie1", "Owner@Example.com")
    unknown = register("newbie2", "fresh@example.com")
    assert known.status_code == unknown.status_code == 201, (known.content, unknown.content)
    assert shape(known.json()) == shape(unknown.json())
    assert set(known.headers) == set(unknown.headers)
    # As asked, its domain lower-cased as a stored address would be.
    assert known.json()["user"]["email"] == "Owner@example.com"
    assert unknown.json()["user"]["email"] == "fresh@example.com"
    # The address stays its owner's; the new account has none and works.
    owner.refresh_from_db()
    assert owner.email == "owner@example.com"
    assert User.objects.get(username="newbie1").email is None
    assert User.objects.get(username="newbie2").email == "fresh@example.com"
    access = known.json()["access"]
    r = APIClient().get(ME, HTTP_AUTHORIZATION=f"Bearer {access}")
    assert r.status_code == 200 and r.json()["email"] is None


def test_register_still_says_when_a_username_is_taken():
    """Usernames are public (room members, chat): saying it is taken reveals nothing new."""
    make_user("owner")
    r = register("OWNER", None)
    assert r.status_code == 400
    assert r.json()["error"]["details"]["username"] == ["This username is taken."]


def _me(access: str) -> APIClient:
    c = APIClient(raise_request_exception=False)
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return c


def test_changing_the_address_needs_the_current_password():
    user, pair = make_user("alice", email="alice@example.com")
    c = _me(pair.access)
    r = c.patch(ME, {"email": "new@example.com"}, format="json")
    assert r.status_code == 400, r.content
    assert set(r.json()["error"]["details"]) == {"current_password"}
    r = c.patch(ME, {"email": "new@example.com", "current_password": "Wr0ng-passw0rd"}, format="json")
    assert r.status_code == 400
    assert set(r.json()["error"]["details"]) == {"current_password"}
    user.refresh_from_db()
    assert user.email == "alice@example.com"
    assert AuditEvent.objects.filter(action="user.update_refused", resource_id=user.pk).count() == 1
    r = c.patch(ME, {"email": "new@example.com", "current_password": PASSWORD}, format="json")
    assert r.status_code == 200, r.content
    assert r.json()["email"] == "new@example.com"
    # Removing the address is a change of address too.
    assert c.patch(ME, {"email": None}, format="json").status_code == 400
    # The username alone needs no password.
    r = c.patch(ME, {"username": "alice2"}, format="json")
    assert r.status_code == 200 and r.json()["username"] == "alice2"


@override_settings(RATELIMIT_ENABLE=True)
def test_address_attempts_share_the_password_check_limit(settings):
    settings.RATELIMITS = {**settings.RATELIMITS, "password_change_user": "2/h"}
    make_user("bob", email="bob@example.com")
    _, pair = make_user("alice", email="alice@example.com")
    c = _me(pair.access)
    # A taken address still cannot be had, and says so, but only to the account's owner after
    # the password, a few times an hour (the residual: docs/security.md).
    r = c.patch(ME, {"email": "bob@example.com", "current_password": PASSWORD}, format="json")
    assert r.status_code == 400 and set(r.json()["error"]["details"]) == {"email"}
    r = c.patch(ME, {"email": "carol@example.com", "current_password": "Wr0ng-passw0rd"}, format="json")
    assert r.status_code == 400
    r = c.patch(ME, {"email": "carol@example.com", "current_password": PASSWORD}, format="json")
    assert r.status_code == 429, r.content
    assert r.json()["error"]["code"] == "rate_limited"
