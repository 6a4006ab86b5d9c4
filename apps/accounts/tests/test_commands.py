"""Operator commands: key generation and rotation, create_root, ban/unban, revoke_tokens."""

from __future__ import annotations

import io

import jwt
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from apps.accounts import revocation
from apps.accounts.keystore import keystore
from apps.accounts.models import AuthSession, Role, SigningKey, User
from apps.accounts.tests.conftest import me
from apps.accounts.tests.factories import PASSWORD, create_user, open_session
from apps.audit.models import AuditEvent
from apps.core.tests.helpers import error_code

pytestmark = pytest.mark.django_db

ROOT_PASSWORD = "R00t-passw0rd!"


def run(*args, **kwargs) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO(), **kwargs)
    return out.getvalue()


def kid_of(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


# --- keys -------------------------------------------------------------------------------------------


def test_generate_jwt_keys_seeds_once():
    assert not SigningKey.objects.exists()
    out = run("generate_jwt_keys")
    key = SigningKey.objects.get()
    assert key.is_signing and key.kid in out
    assert b"PRIVATE KEY" not in bytes(key.private_key_encrypted)  # encrypted at rest
    # Safe to run on every deploy: nothing new the second time.
    assert key.kid in run("generate_jwt_keys")
    assert SigningKey.objects.count() == 1


def test_rotate_jwt_keys_adds_a_signing_key_and_old_tokens_keep_working():
    bob = create_user("bob")
    old_pair = open_session(bob)
    old_kid = kid_of(old_pair.access)

    out = run("rotate_jwt_keys")
    new_key = SigningKey.objects.get(is_signing=True)
    assert new_key.kid != old_kid and new_key.kid in out and old_kid in out
    old_key = SigningKey.objects.get(kid=old_kid)
    assert not old_key.is_signing and old_key.retired_at is not None

    # Tokens signed with the old key still verify; new ones are signed with the new key.
    assert me(old_pair.access).status_code == 200
    new_pair = open_session(bob)
    assert kid_of(new_pair.access) == new_key.kid
    assert me(new_pair.access).status_code == 200
    kids = {k["kid"] for k in APIClient().get("/api/v1/auth/jwks").json()["keys"]}
    assert kids == {old_kid, new_key.kid}

    run("rotate_jwt_keys")
    assert SigningKey.objects.filter(is_signing=True).count() == 1
    assert SigningKey.objects.count() == 3


def test_rotate_jwt_keys_on_an_empty_store():
    out = run("rotate_jwt_keys")
    assert SigningKey.objects.get().kid in out
    keystore.invalidate()
    assert keystore.signing_key().kid == SigningKey.objects.get().kid


# --- create_root ------------------------------------------------------------------------------------


def test_create_root():
    out = run("create_root", "boss", "--password", ROOT_PASSWORD, "--email", "boss@example.com")
    user = User.objects.get(username="boss")
    assert user.role == Role.ROOT and user.is_superuser and user.email == "boss@example.com"
    assert user.pk in out
    assert user.password.startswith("argon2$argon2id$v=19$m=19456,t=2,p=1$")
    assert user.check_password(ROOT_PASSWORD)
    event = AuditEvent.objects.get(action="user.create_root")
    assert event.resource_id == user.pk and event.user_agent == "manage.py"


@pytest.mark.parametrize(
    ("password", "says"),
    [
        ("Sh0rt!", "too short"),
        ("alllowercaseletters", "lacks"),
        ("Aa1!" * 40, "too long"),
    ],
)
def test_create_root_enforces_the_password_rule(password, says):
    with pytest.raises(CommandError, match=says):
        run("create_root", "boss", "--password", password)
    assert not User.objects.filter(username="boss").exists()


def test_create_root_password_from_environment(monkeypatch):
    monkeypatch.setenv("SYNCTV_ROOT_PASSWORD", ROOT_PASSWORD)
    run("create_root", "boss")
    assert User.objects.get(username="boss").check_password(ROOT_PASSWORD)


def test_create_root_without_a_password_and_no_terminal(monkeypatch):
    monkeypatch.delenv("SYNCTV_ROOT_PASSWORD", raising=False)
    monkeypatch.setattr("os.isatty", lambda fd: False)
    with pytest.raises(CommandError, match="password"):
        run("create_root", "boss")
    assert not User.objects.filter(username="boss").exists()


def test_create_root_if_missing():
    create_user("boss", Role.USER)
    before = User.objects.get(username="boss").password
    # Without --if-missing an existing name is an error ...
    with pytest.raises(CommandError, match="taken"):
        run("create_root", "BOSS", "--password", ROOT_PASSWORD)
    # ... with it, nothing happens (the existing account is not promoted or changed).
    out = run("create_root", "BOSS", "--password", ROOT_PASSWORD, "--if-missing")
    assert "nothing to do" in out
    user = User.objects.get(username="boss")
    assert user.role == Role.USER and user.password == before
    assert User.objects.count() == 1
    # --if-missing still creates a missing one (and still applies the rule).
    with pytest.raises(CommandError):
        run("create_root", "boss2", "--password", "weak", "--if-missing")
    run("create_root", "boss2", "--password", ROOT_PASSWORD, "--if-missing")
    assert User.objects.get(username="boss2").role == Role.ROOT


def test_create_root_refuses_a_bad_username():
    """The command goes through the service; a taken email is refused like in registration."""
    create_user("someone", email="taken@example.com")
    with pytest.raises(CommandError, match="email"):
        run("create_root", "boss", "--password", ROOT_PASSWORD, "--email", "TAKEN@example.com")


# --- ban_user / unban_user --------------------------------------------------------------------------


def test_ban_user_and_unban_user():
    bob = create_user("bob", email="bob@example.com")
    pair = open_session(bob)
    assert me(pair.access).status_code == 200

    out = run("ban_user", "bob", "--reason", "spam")
    assert "banned bob" in out
    bob.refresh_from_db()
    assert bob.role == Role.BANNED and bob.banned_reason == "spam"
    assert not AuthSession.objects.filter(user=bob, revoked_at__isnull=True).exists()
    r = me(pair.access)
    assert r.status_code == 403 and error_code(r) == "user_banned"
    r = APIClient().post("/api/v1/auth/login", {"username": "bob", "password": PASSWORD}, format="json")
    assert r.status_code == 403 and error_code(r) == "user_banned"
    event = AuditEvent.objects.get(action="user.ban")
    assert event.user_id is None and event.user_agent == "manage.py" and event.resource_id == bob.pk
    assert event.details["reason"] == "spam"

    out = run("unban_user", "bob@example.com")  # by email this time
    assert "unbanned bob" in out
    bob.refresh_from_db()
    assert bob.role == Role.USER and bob.banned_reason == ""
    assert AuditEvent.objects.filter(action="user.unban", resource_id=bob.pk).exists()
    r = APIClient().post("/api/v1/auth/login", {"username": "bob", "password": PASSWORD}, format="json")
    assert r.status_code == 200
    # The old session stays ended after the unban.
    assert me(pair.access).status_code == 401


def test_ban_user_by_id_and_unknown_user():
    bob = create_user("bob")
    run("ban_user", bob.pk)
    bob.refresh_from_db()
    assert bob.role == Role.BANNED
    with pytest.raises(CommandError, match="no such user"):
        run("ban_user", "nobody")
    with pytest.raises(CommandError, match="no such user"):
        run("unban_user", "nobody")


def test_unban_user_never_restores_a_staff_role():
    boss = create_user("boss", Role.ROOT)
    run("ban_user", "boss")
    run("unban_user", "boss")
    boss.refresh_from_db()
    assert boss.role == Role.USER


# --- revoke_tokens ------------------------------------------------------------------------------------


def test_revoke_tokens_ends_every_session_of_the_user():
    bob, carol = create_user("bob"), create_user("carol")
    first, second, other = open_session(bob), open_session(bob), open_session(carol)

    out = run("revoke_tokens", "bob")
    assert "ended 2 session(s) of bob" in out
    for pair in (first, second):
        r = me(pair.access)
        assert r.status_code == 401 and error_code(r) == "token_revoked"
        r = APIClient().post("/api/v1/auth/refresh", {"refresh": pair.refresh}, format="json")
        assert r.status_code == 401
    assert me(other.access).status_code == 200  # someone else's session is untouched
    event = AuditEvent.objects.get(action="tokens.revoke_all")
    assert event.resource_id == bob.pk and event.details == {"reason": "operator", "sessions": 2}
    # bob can log in again afterwards: a new session works.
    assert me(open_session(bob).access).status_code == 200


def test_revoke_tokens_one_jti(django_capture_on_commit_callbacks):
    bob = create_user("bob")
    first, second = open_session(bob), open_session(bob)
    jti = jwt.decode(first.access, options={"verify_signature": False})["jti"]

    with django_capture_on_commit_callbacks(execute=True):
        out = run("revoke_tokens", "--jti", jti)
    assert jti in out
    assert revocation.is_revoked(jti)
    r = me(first.access)
    assert r.status_code == 401 and error_code(r) == "token_revoked"
    assert me(second.access).status_code == 200  # only that one token
    assert AuditEvent.objects.get(action="token.revoke").resource_id == jti


def test_revoke_tokens_needs_a_user_or_a_jti():
    with pytest.raises(CommandError, match="give a user or --jti"):
        run("revoke_tokens")
    with pytest.raises(CommandError, match="no such user"):
        run("revoke_tokens", "nobody")
