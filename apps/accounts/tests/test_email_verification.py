"""E-mail verification (issue 12, item 1): the link sent on sign-up, ``auth/email/verify``,
``auth/email/resend``, ``email_verified`` on ``users/me`` and re-verification after a change of
address; ``ACCOUNT_EMAIL_VERIFICATION`` none / optional / mandatory."""

from __future__ import annotations

import time

import pytest
from allauth.account.models import EmailAddress
from django.core import signing

from apps.accounts.models import Role, User
from apps.accounts.tests.email_support import (
    LOGIN,
    ME,
    NEW_PASSWORD,
    REGISTER,
    RESEND,
    VERIFY,
    key_from,
    last_key,
    templates_sent,
    texts,
)
from apps.accounts.tests.factories import PASSWORD, make_user
from apps.audit.models import AuditEvent
from apps.core.tests.helpers import assert_error, client_for
from apps.mail.models import OutboundEmail

pytestmark = pytest.mark.django_db


def register(username: str, email: str | None = None):
    body = {"username": username, "password": NEW_PASSWORD}
    if email is not None:
        body["email"] = email
    return client_for(raise_request_exception=False).post(REGISTER, body, format="json")


def verify(key):
    return client_for(raise_request_exception=False).post(VERIFY, {"key": key}, format="json")


def test_optional_sign_up_sends_a_link_that_verifies_the_address_once(settings):
    settings.PUBLIC_URL = "https://tv.example.com"
    r = register("alice", "alice@example.com")
    assert r.status_code == 201, r.content
    assert r.json()["user"]["email_verified"] is False
    assert templates_sent("alice@example.com") == ["verify_email"]
    (text,) = texts("alice@example.com")
    assert "https://tv.example.com/verify-email/?key=" in text
    key = key_from(text, "verify-email")
    me = client_for(r.json()["access"])
    assert me.get(ME).json()["email_verified"] is False

    r = verify(key)
    assert r.status_code == 200, r.content
    assert r.json()["user"]["username"] == "alice"
    assert r.json()["user"]["email_verified"] is True
    assert me.get(ME).json()["email_verified"] is True
    assert AuditEvent.objects.filter(action="email.verified", resource_id=r.json()["user"]["id"]).count() == 1
    # Used up: the same key again is refused.
    assert_error(verify(key), 400, "invalid")


def test_mail_is_html_and_text_without_remote_resources():
    register("alice", "alice@example.com")
    row = OutboundEmail.objects.get(to="alice@example.com")
    from apps.mail.services import email_bodies

    text, html = email_bodies(row)
    assert "/verify-email/?key=" in text and "/verify-email/?key=" in html
    assert "<img" not in html and "<script" not in html and "<link" not in html
    assert row.subject == "Confirm your e-mail address for SyncTV"


def test_none_sends_no_mail(settings):
    settings.ACCOUNT_EMAIL_VERIFICATION = "none"
    r = register("alice", "alice@example.com")
    assert r.status_code == 201
    assert OutboundEmail.objects.count() == 0
    assert r.json()["user"]["email_verified"] is False


def test_without_an_address_nothing_is_sent():
    assert register("alice").status_code == 201
    assert OutboundEmail.objects.count() == 0


@pytest.mark.parametrize("key", ["", "x", "not-a-key", "MQ:1abc:def", "a" * 400])
def test_bad_keys_are_400_invalid(key):
    make_user("alice", email="alice@example.com")
    error = assert_error(verify(key), 400, "invalid")
    assert "key" in error["details"]


def test_a_key_expires_after_24_hours(monkeypatch):
    make_user("alice", email="alice@example.com")
    key = last_key("alice@example.com", "verify-email")
    now = time.time()
    monkeypatch.setattr(signing.time, "time", lambda: now + 24 * 3600 + 5)
    assert_error(verify(key), 400, "invalid")
    monkeypatch.setattr(signing.time, "time", lambda: now + 24 * 3600 - 60)
    assert verify(key).status_code == 200


def test_a_key_for_a_replaced_address_verifies_nothing():
    user, pair = make_user("alice", email="old@example.com")
    old_key = last_key("old@example.com", "verify-email")
    r = client_for(pair.access).patch(
        ME, {"email": "new@example.com", "current_password": PASSWORD}, format="json"
    )
    assert r.status_code == 200, r.content
    assert r.json()["email_verified"] is False
    assert_error(verify(old_key), 400, "invalid")
    # The new address got its own link, which works.
    assert verify(last_key("new@example.com", "verify-email")).status_code == 200
    assert list(EmailAddress.objects.filter(user=user).values_list("email", "verified", "primary")) == [
        ("new@example.com", True, True)
    ]


def test_changing_a_verified_address_re_verifies():
    user, pair = make_user("alice", email="alice@example.com")
    assert verify(last_key("alice@example.com", "verify-email")).status_code == 200
    me = client_for(pair.access)
    assert me.get(ME).json()["email_verified"] is True
    r = me.patch(ME, {"email": "alice2@example.com", "current_password": PASSWORD}, format="json")
    assert r.status_code == 200 and r.json()["email_verified"] is False
    assert templates_sent("alice2@example.com") == ["verify_email"]
    assert not EmailAddress.objects.filter(user=user, email="alice@example.com").exists()
    # Removing the address leaves no row.
    r = me.patch(ME, {"email": None, "current_password": PASSWORD}, format="json")
    assert r.status_code == 200 and r.json()["email"] is None and r.json()["email_verified"] is False
    assert not EmailAddress.objects.filter(user=user).exists()


def test_mandatory_sign_up_is_pending_until_verified(settings):
    settings.ACCOUNT_EMAIL_VERIFICATION = "mandatory"
    r = register("alice", "alice@example.com")
    assert r.status_code == 202, r.content
    assert set(r.json()) == {"user"}
    assert r.json()["user"]["role"] == "pending"
    login = client_for(raise_request_exception=False).post(
        LOGIN, {"username": "alice", "password": NEW_PASSWORD}, format="json"
    )
    assert_error(login, 403, "account_pending")
    r = verify(last_key("alice@example.com", "verify-email"))
    assert r.status_code == 200 and r.json()["user"]["role"] == "user"
    assert User.objects.get(username="alice").role == Role.USER
    event = AuditEvent.objects.get(action="email.verified")
    assert event.details == {"activated": True}
    login = client_for().post(LOGIN, {"username": "alice", "password": NEW_PASSWORD}, format="json")
    assert login.status_code == 200


def test_mandatory_with_review_stays_pending_after_verification(settings):
    settings.ACCOUNT_EMAIL_VERIFICATION = "mandatory"
    settings.ACCOUNT_REVIEW_REQUIRED = True
    assert register("alice", "alice@example.com").status_code == 202
    r = verify(last_key("alice@example.com", "verify-email"))
    assert r.status_code == 200 and r.json()["user"]["role"] == "pending"


def test_mandatory_needs_an_address(settings):
    settings.ACCOUNT_EMAIL_VERIFICATION = "mandatory"
    error = assert_error(register("alice"), 400, "invalid")
    assert set(error["details"]) == {"email"}
    assert not User.objects.filter(username="alice").exists()


def test_resend_sends_a_new_link_only_when_there_is_something_to_verify():
    _, pair = make_user("alice", email="alice@example.com")
    me = client_for(pair.access)
    r = me.post(RESEND, format="json")
    assert r.status_code == 202, r.content
    assert templates_sent("alice@example.com") == ["verify_email", "verify_email"]
    assert verify(last_key("alice@example.com", "verify-email")).status_code == 200
    again = me.post(RESEND, format="json")
    assert (again.status_code, again.content) == (r.status_code, r.content)
    assert templates_sent("alice@example.com") == ["verify_email", "verify_email"]
    # No address at all: the same answer, nothing sent.
    _, bare = make_user("bob")
    none = client_for(bare.access).post(RESEND, format="json")
    assert (none.status_code, none.content) == (r.status_code, r.content)


def test_resend_needs_a_login():
    assert_error(client_for(raise_request_exception=False).post(RESEND, format="json"), 401)


def test_an_account_from_before_verification_gets_its_row_on_resend():
    user, pair = make_user("alice", email="alice@example.com")
    EmailAddress.objects.filter(user=user).delete()
    OutboundEmail.objects.all().delete()
    assert client_for(pair.access).get(ME).json()["email_verified"] is False
    assert client_for(pair.access).post(RESEND, format="json").status_code == 202
    assert verify(last_key("alice@example.com", "verify-email")).status_code == 200
    assert client_for(pair.access).get(ME).json()["email_verified"] is True
