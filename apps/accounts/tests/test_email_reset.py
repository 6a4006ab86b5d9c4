"""The password reset (issue 12, item 2): ``auth/password/reset`` mails a link valid 1 h and
single use; ``auth/password/reset/confirm`` sets the password under the password rule and ends
every session, as a password change does (open sockets close with 4401)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from asgiref.testing import ApplicationCommunicator
from django.contrib.auth.tokens import PasswordResetTokenGenerator

from apps.accounts.models import AuthSession, Role, User
from apps.accounts.tests.email_support import (
    LOGIN,
    ME,
    NEW_PASSWORD,
    RESET,
    RESET_CONFIRM,
    last_key,
    templates_sent,
    texts,
)
from apps.accounts.tests.factories import PASSWORD, TEST_ORIGIN, make_user
from apps.audit.models import AuditEvent
from apps.core.tests.helpers import assert_error, client_for
from apps.rooms import consumers
from apps.rooms import services as room_services
from apps.rooms.tests.conftest import fresh_socket_limits, local_hub  # noqa: F401 (fixtures)
from apps.rooms.tests.inprocess_ws import ws_scope


def ask(email: str):
    return client_for(raise_request_exception=False).post(RESET, {"email": email}, format="json")


def confirm(key, password=NEW_PASSWORD):
    return client_for(raise_request_exception=False).post(
        RESET_CONFIRM, {"key": key, "password": password}, format="json"
    )


def can_login(username: str, password: str) -> bool:
    r = client_for(raise_request_exception=False).post(
        LOGIN, {"username": username, "password": password}, format="json"
    )
    return r.status_code == 200


@pytest.mark.django_db
def test_reset_end_to_end(settings):
    settings.PUBLIC_URL = "https://tv.example.com"
    user, pair = make_user("alice", email="alice@example.com")
    r = ask("ALICE@example.com")
    assert r.status_code == 202, r.content
    assert "reset_password" in templates_sent("alice@example.com")
    assert "https://tv.example.com/reset-password/?key=" in texts("alice@example.com", "reset_password")[0]
    key = last_key("alice@example.com", "reset-password")
    assert key.startswith(f"{user.pk}-")

    r = confirm(key)
    assert r.status_code == 200, r.content
    assert r.json()["user"]["id"] == user.pk
    assert can_login("alice", NEW_PASSWORD) and not can_login("alice", PASSWORD)
    # Every session that was open ended (only the logins above opened new ones), the old access
    # token included.
    assert AuthSession.objects.filter(user=user, revoked_reason="password_reset").count() == 1
    assert_error(client_for(pair.access, raise_request_exception=False).get(ME), 401)
    actions = list(AuditEvent.objects.filter(resource_id=user.pk).values_list("action", flat=True))
    assert "auth.password_reset_request" in actions and "auth.password_reset" in actions
    # Single use: the password it hashed has changed.
    assert_error(confirm(key, "An0ther-passw0rd"), 400, "invalid")
    assert can_login("alice", NEW_PASSWORD)


@pytest.mark.django_db
def test_the_password_rule_applies_and_a_refused_password_keeps_the_key():
    make_user("alice", email="alice@example.com")
    ask("alice@example.com")
    key = last_key("alice@example.com", "reset-password")
    error = assert_error(confirm(key, "short"), 400, "invalid")
    assert set(error["details"]) == {"password"}
    error = assert_error(confirm(key, "alice-alice"), 400, "invalid")
    assert set(error["details"]) == {"password"}
    assert User.objects.get(username="alice").check_password(PASSWORD)
    assert confirm(key).status_code == 200
    assert can_login("alice", NEW_PASSWORD)


@pytest.mark.django_db
def test_a_login_after_the_request_voids_the_key():
    """Django's token hashes the last login too: the owner who remembered the password and logged
    in has no use for the link, and whoever else holds it loses it."""
    make_user("alice", email="alice@example.com")
    ask("alice@example.com")
    key = last_key("alice@example.com", "reset-password")
    assert can_login("alice", PASSWORD)
    assert_error(confirm(key), 400, "invalid")


@pytest.mark.django_db
def test_the_key_is_valid_one_hour(monkeypatch):
    make_user("alice", email="alice@example.com")
    ask("alice@example.com")
    key = last_key("alice@example.com", "reset-password")
    real_now = PasswordResetTokenGenerator._now

    def later(seconds):
        return lambda self: real_now(self) + timedelta(seconds=seconds)

    monkeypatch.setattr(PasswordResetTokenGenerator, "_now", later(3600 + 5))
    assert_error(confirm(key), 400, "invalid")
    monkeypatch.setattr(PasswordResetTokenGenerator, "_now", later(3600 - 60))
    assert confirm(key).status_code == 200


@pytest.mark.django_db
def test_changing_the_address_voids_an_outstanding_key():
    _, pair = make_user("alice", email="alice@example.com")
    ask("alice@example.com")
    key = last_key("alice@example.com", "reset-password")
    r = client_for(pair.access).patch(
        ME, {"email": "new@example.com", "current_password": PASSWORD}, format="json"
    )
    assert r.status_code == 200
    assert_error(confirm(key), 400, "invalid")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "key",
    ["", "nodash", "a-b", "a-b-c", "x" * 300, "-1-2", "unknownuser-cj0k2p-0123456789abcdef0123456789abcdef"],
)
def test_bad_keys_are_400_invalid(key):
    make_user("alice", email="alice@example.com")
    error = assert_error(confirm(key), 400, "invalid")
    assert "key" in error["details"] or "password" in error["details"]


@pytest.mark.django_db
def test_a_key_of_another_user_with_the_right_shape_is_refused():
    alice, _ = make_user("alice", email="alice@example.com")
    bob, _ = make_user("bob", email="bob@example.com")
    ask("alice@example.com")
    key = last_key("alice@example.com", "reset-password")
    forged = f"{bob.pk}-{key[len(alice.pk) + 1 :]}"
    assert_error(confirm(forged), 400, "invalid")
    assert can_login("bob", PASSWORD)


@pytest.mark.django_db
def test_no_mail_for_unknown_guests_or_banned(settings):
    ask("nobody@example.com")
    assert templates_sent("nobody@example.com") == []
    banned, _ = make_user("mallory", email="mallory@example.com")
    User.objects.filter(pk=banned.pk).update(role=Role.BANNED)
    ask("mallory@example.com")
    assert "reset_password" not in templates_sent("mallory@example.com")


# --- a reset ends every session: an open socket closes with 4401 -----------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("local_hub", "fresh_socket_limits")
def test_a_reset_closes_an_open_websocket_with_4401():
    from synctv.asgi import application

    user, pair = make_user("alice", email="alice@example.com")
    room = room_services.room_create(creator=user, name="movie night", origin=TEST_ORIGIN)

    async def scenario() -> int | None:
        comm = ApplicationCommunicator(application, ws_scope(room.pk, pair.access))
        await comm.send_input({"type": "websocket.connect"})
        assert (await comm.receive_output(timeout=10))["type"] == "websocket.accept"
        await sync_to_async(ask)("alice@example.com")
        key = await sync_to_async(last_key)("alice@example.com", "reset-password")
        r = await sync_to_async(confirm)(key)
        assert r.status_code == 200, r.content
        async with asyncio.timeout(10):
            while True:
                out = await comm.receive_output(timeout=10)
                if out["type"] == "websocket.close":
                    return out.get("code")

    assert async_to_sync(scenario)() == consumers.CLOSE_UNAUTHORIZED == 4401


@pytest.mark.django_db
def test_a_reset_proves_the_address_and_frees_a_pending_account(settings):
    """Mandatory verification, the link expired: the account cannot log in to ask for another,
    but a reset link reaches the same mailbox, so using it verifies the address."""
    settings.ACCOUNT_EMAIL_VERIFICATION = "mandatory"
    user, pair = make_user("alice", email="alice@example.com")
    assert pair is None and user.role == Role.PENDING
    assert not can_login("alice", PASSWORD)
    ask("alice@example.com")
    r = confirm(last_key("alice@example.com", "reset-password"))
    assert r.status_code == 200, r.content
    assert (r.json()["user"]["role"], r.json()["user"]["email_verified"]) == ("user", True)
    event = AuditEvent.objects.get(action="email.verified", resource_id=user.pk)
    assert event.details == {"via": "password_reset", "activated": True}
    assert can_login("alice", NEW_PASSWORD)


@pytest.mark.django_db
def test_a_reset_does_not_activate_an_account_awaiting_review(settings):
    settings.ACCOUNT_REVIEW_REQUIRED = True
    make_user("alice", email="alice@example.com")
    ask("alice@example.com")
    r = confirm(last_key("alice@example.com", "reset-password"))
    assert r.status_code == 200
    assert (r.json()["user"]["role"], r.json()["user"]["email_verified"]) == ("pending", True)
