"""The audit log (docs/security.md): audit events (who, action, resource type and id, IP, user agent) for the
account actions, with the IP and User-Agent taken from the request; django-auditlog history of
User changes that never includes the password."""

from __future__ import annotations

import pytest
from auditlog.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.test import override_settings
from rest_framework.test import APIClient

from apps.accounts import services
from apps.accounts.models import Role, User
from apps.accounts.tests.factories import PASSWORD, open_session, password_hash
from apps.audit.models import AuditEvent
from apps.core.context import Origin
from apps.core.tests.helpers import client_for

pytestmark = pytest.mark.django_db

IP = "203.0.113.7"
UA = "AuditTest/1.0 (+https://example.com)"
ORIGIN = Origin(ip="198.51.100.9", user_agent="moderator-console")


def client(access: str | None = None, *, ip: str = IP, ua: str = UA, **extra) -> APIClient:
    return client_for(access, raise_request_exception=False, REMOTE_ADDR=ip, HTTP_USER_AGENT=ua, **extra)


def only_event(action: str) -> AuditEvent:
    events = list(AuditEvent.objects.filter(action=action))
    assert len(events) == 1, [(e.action, e.resource_id) for e in AuditEvent.objects.all()]
    return events[0]


def assert_event(event, *, user, resource_type: str, resource_id: str, ip=IP, ua=UA) -> None:
    assert event.user_id == (user.pk if user is not None else None)
    assert event.resource_type == resource_type
    assert event.resource_id == str(resource_id)
    assert event.ip == ip
    assert event.user_agent == ua
    assert event.created_at is not None


# --- from the API: IP and User-Agent of the request ----------------------------------------------


def test_register(db):
    r = client().post(
        "/api/v1/auth/register", {"username": "newbie", "password": "N3w-passw0rd"}, format="json"
    )
    assert r.status_code == 201
    user = User.objects.get(username="newbie")
    assert_event(only_event("user.register"), user=user, resource_type="user", resource_id=user.pk)


def test_login_success(alice):
    r = client().post("/api/v1/auth/login", {"username": "alice", "password": PASSWORD}, format="json")
    assert r.status_code == 200
    assert_event(only_event("auth.login"), user=alice, resource_type="user", resource_id=alice.pk)


def test_login_failure_wrong_password(alice):
    r = client().post("/api/v1/auth/login", {"username": "alice", "password": "Wr0ng-pass"}, format="json")
    assert r.status_code == 401
    event = only_event("auth.login_failed")
    assert_event(event, user=alice, resource_type="user", resource_id=alice.pk)
    assert event.details["identifier"] == "alice"
    assert "Wr0ng-pass" not in str(event.details)  # the attempted password is never stored
    assert not AuditEvent.objects.filter(action="auth.login").exists()


def test_login_failure_unknown_user(db):
    r = client().post("/api/v1/auth/login", {"username": "ghost", "password": "Wr0ng-pass"}, format="json")
    assert r.status_code == 401
    event = only_event("auth.login_failed")
    assert_event(event, user=None, resource_type="user", resource_id="")
    assert event.details["identifier"] == "ghost"
    assert "Wr0ng-pass" not in str(event.details)


def test_login_refused_when_banned(alice):
    services.user_ban(actor=None, user=alice, reason="spam", origin=ORIGIN)
    r = client().post("/api/v1/auth/login", {"username": "alice", "password": PASSWORD}, format="json")
    assert r.status_code == 403
    event = only_event("auth.login_refused")
    assert_event(event, user=alice, resource_type="user", resource_id=alice.pk)
    assert event.details == {"reason": "banned"}


def test_logout(alice):
    pair = open_session(alice)
    r = client(pair.access).post("/api/v1/auth/logout", {"refresh": pair.refresh}, format="json")
    assert r.status_code == 204
    event = only_event("auth.logout")
    sid = alice.auth_sessions.get().pk
    assert_event(event, user=alice, resource_type="session", resource_id=sid)


def test_logout_all(alice):
    pair = open_session(alice)
    open_session(alice)
    r = client(pair.access).post("/api/v1/auth/logout-all")
    assert r.status_code == 204
    event = only_event("tokens.revoke_all")
    assert_event(event, user=alice, resource_type="user", resource_id=alice.pk)
    assert event.details == {"reason": "logout_all", "sessions": 2}


def test_refresh_reuse_is_audited_as_token_reuse(alice):
    pair = open_session(alice)
    assert client().post("/api/v1/auth/refresh", {"refresh": pair.refresh}, format="json").status_code == 200
    assert AuditEvent.objects.filter(action="token.refresh").count() == 1
    r = client().post("/api/v1/auth/refresh", {"refresh": pair.refresh}, format="json")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "token_revoked"
    event = only_event("token.reuse_detected")
    sid = alice.auth_sessions.get().pk
    assert_event(event, user=alice, resource_type="session", resource_id=sid)
    assert event.details["sessions_revoked"] == 1


def test_password_change(alice):
    pair = open_session(alice)
    r = client(pair.access).post(
        "/api/v1/auth/password/change",
        {"old_password": PASSWORD, "new_password": "N3w-passw0rd"},
        format="json",
    )
    assert r.status_code == 200
    event = only_event("auth.password_change")
    assert_event(event, user=alice, resource_type="user", resource_id=alice.pk)
    assert event.details == {"sessions_revoked": 1}
    assert "N3w-passw0rd" not in str(event.details)


def test_password_change_with_wrong_old_password(alice):
    pair = open_session(alice)
    r = client(pair.access).post(
        "/api/v1/auth/password/change",
        {"old_password": "Wr0ng-pass", "new_password": "N3w-passw0rd"},
        format="json",
    )
    assert r.status_code == 400
    assert_event(
        only_event("auth.password_change_failed"), user=alice, resource_type="user", resource_id=alice.pk
    )


def test_profile_update(alice):
    pair = open_session(alice)
    r = client(pair.access).patch(
        "/api/v1/users/me", {"email": "new@example.com", "current_password": PASSWORD}, format="json"
    )
    assert r.status_code == 200
    event = only_event("user.update")
    assert_event(event, user=alice, resource_type="user", resource_id=alice.pk)
    assert event.details == {"fields": ["email"]}


# --- IP from the request: X-Forwarded-For only through trusted proxies --------------------------


@override_settings(TRUSTED_PROXY_COUNT=0)
def test_forwarded_for_is_not_believed_without_a_trusted_proxy(alice):
    c = client(HTTP_X_FORWARDED_FOR="1.2.3.4")
    c.post("/api/v1/auth/login", {"username": "alice", "password": PASSWORD}, format="json")
    assert only_event("auth.login").ip == IP


@override_settings(TRUSTED_PROXY_COUNT=1)
def test_forwarded_for_through_one_trusted_proxy(alice):
    c = client(ip="10.0.0.1", HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.99")
    c.post("/api/v1/auth/login", {"username": "alice", "password": PASSWORD}, format="json")
    # The proxy appended the address it saw; what the client wrote before it is not believed.
    assert only_event("auth.login").ip == "203.0.113.99"


@override_settings(TRUSTED_PROXY_COUNT=1)
def test_unparsable_forwarded_for_falls_back_to_the_peer(alice):
    c = client(ip="10.0.0.1", HTTP_X_FORWARDED_FOR="not-an-ip")
    c.post("/api/v1/auth/login", {"username": "alice", "password": PASSWORD}, format="json")
    assert only_event("auth.login").ip == "10.0.0.1"


def test_long_user_agent_is_cut_not_refused(alice):
    r = client(ua="x" * 5000).post(
        "/api/v1/auth/login", {"username": "alice", "password": PASSWORD}, format="json"
    )
    assert r.status_code == 200
    assert only_event("auth.login").user_agent == "x" * 512


# --- moderation through the services -------------------------------------------------------------


def test_role_change(alice, root):
    services.user_set_role(actor=root, user=alice, role=Role.ADMIN, origin=ORIGIN)
    event = only_event("user.role_change")
    assert_event(
        event, user=root, resource_type="user", resource_id=alice.pk, ip=ORIGIN.ip, ua=ORIGIN.user_agent
    )
    assert event.details == {"from": "user", "to": "admin"}


def test_refused_role_change_leaves_no_event(alice):
    admin = User.objects.create(username="admin", role=Role.ADMIN, password=password_hash())
    from apps.core.errors import PermissionDenied

    with pytest.raises(PermissionDenied):
        services.user_set_role(actor=admin, user=alice, role=Role.ROOT, origin=ORIGIN)
    alice.refresh_from_db()
    assert alice.role == Role.USER
    assert not AuditEvent.objects.filter(action="user.role_change").exists()


def test_ban_and_unban(alice, root):
    open_session(alice)
    services.user_ban(actor=root, user=alice, reason="spam", origin=ORIGIN)
    event = only_event("user.ban")
    assert_event(
        event, user=root, resource_type="user", resource_id=alice.pk, ip=ORIGIN.ip, ua=ORIGIN.user_agent
    )
    assert event.details == {"reason": "spam", "previous_role": "user", "sessions_revoked": 1}

    services.user_unban(actor=root, user=alice, origin=ORIGIN)
    assert_event(
        only_event("user.unban"),
        user=root,
        resource_type="user",
        resource_id=alice.pk,
        ip=ORIGIN.ip,
        ua=ORIGIN.user_agent,
    )


def test_ban_through_set_role_is_audited_as_a_ban(alice, root):
    services.user_set_role(actor=root, user=alice, role=Role.BANNED, origin=ORIGIN)
    assert only_event("user.ban").resource_id == alice.pk
    assert not AuditEvent.objects.filter(action="user.role_change").exists()


def test_audit_row_is_part_of_the_change(alice, root, monkeypatch):
    """If the audit row cannot be written, the change does not happen either."""

    def broken(**kwargs):
        raise RuntimeError("audit store down")

    # Patched where user_ban looks it up: apps/accounts/services/moderation.py.
    monkeypatch.setattr(services.moderation, "audit_record", broken)
    with pytest.raises(RuntimeError):
        services.user_ban(actor=root, user=alice, reason="x", origin=ORIGIN)
    alice.refresh_from_db()
    assert alice.role == Role.USER


# --- django-auditlog ------------------------------------------------------------------------------


def _user_log(user: User):
    return LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(User), object_pk=str(user.pk)
    ).order_by("timestamp", "pk")


def test_auditlog_records_user_changes_without_the_password(alice, root):
    pair = open_session(alice)
    client(pair.access).post(
        "/api/v1/auth/password/change",
        {"old_password": PASSWORD, "new_password": "N3w-passw0rd"},
        format="json",
    )
    services.user_set_role(actor=root, user=alice, role=Role.ADMIN, origin=ORIGIN)
    alice.refresh_from_db()
    services.user_update_profile(
        user=alice, origin=ORIGIN, email="alice2@example.com", current_password="N3w-passw0rd"
    )

    entries = list(_user_log(alice))
    assert entries[0].action == LogEntry.Action.CREATE
    role_changes = [e for e in entries if "role" in (e.changes or {})]
    assert role_changes and role_changes[-1].changes["role"] == ["user", "admin"]
    assert any("email" in (e.changes or {}) for e in entries)
    for entry in entries:
        assert "password" not in (entry.changes or {}), entry.changes
        assert "password" not in entry.changes_text
        assert "argon2" not in str(entry.changes) and "argon2" not in str(entry.serialized_data)


def test_auditlog_password_only_save_leaves_no_password_trace(alice):
    before = _user_log(alice).count()
    alice.set_password("N3w-passw0rd")
    alice.save(update_fields=["password"])
    after = list(_user_log(alice))
    # Either no entry at all (nothing but the excluded field changed) or one without it.
    for entry in after[before:]:
        assert "password" not in (entry.changes or {})
    assert all("argon2" not in str(e.changes) for e in after)


@pytest.mark.parametrize(
    ("proxies", "forwarded_for", "address"),
    [
        (0, "6.6.6.6", IP),  # no proxy trusted: the spoofable header is not the address
        (1, "6.6.6.6, 192.0.2.44", "192.0.2.44"),  # what the one trusted proxy saw
    ],
)
def test_auditlog_names_the_bearer_token_user_and_the_client_address(alice, proxies, forwarded_for, address):
    pair = open_session(alice)
    with override_settings(TRUSTED_PROXY_COUNT=proxies):
        r = client(pair.access, HTTP_X_FORWARDED_FOR=forwarded_for).patch(
            "/api/v1/users/me",
            {"email": f"alice{proxies}@example.com", "current_password": PASSWORD},
            format="json",
        )
    assert r.status_code == 200, r.content
    entry = [e for e in _user_log(alice) if "email" in (e.changes or {})][-1]
    assert (entry.actor_id, entry.remote_addr) == (alice.pk, address)
