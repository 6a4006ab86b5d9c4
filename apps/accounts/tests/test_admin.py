"""The Django admin for moderators: user search and filters, bans and role changes through the
services (audit, sessions ended), staff only, the audit log read-only."""

from __future__ import annotations

import pytest
from auditlog.models import LogEntry
from django.contrib.admin.sites import site
from django.test import Client
from django.test.client import RequestFactory
from rest_framework.test import APIClient

from apps.accounts import services
from apps.accounts.models import AuthSession, Role, SigningKey, User
from apps.accounts.tests.conftest import me
from apps.accounts.tests.factories import PASSWORD, create_user, open_session, password_hash
from apps.audit.models import AuditEvent
from apps.core.context import Origin
from apps.core.tests.helpers import admin_client_fixture, admin_url

pytestmark = pytest.mark.django_db

USERS = "/admin/accounts/user/"
ADMIN_IP = "192.0.2.200"
ADMIN_UA = "ModeratorBrowser/1.0"


admin_client = admin_client_fixture(ADMIN_IP, ADMIN_UA)


def listed(response) -> set[str]:
    return {u.username for u in response.context["cl"].result_list}


# --- who gets in ---------------------------------------------------------------------------------


def test_root_sees_the_admin_and_the_user_list(admin_client):
    assert admin_client.get("/admin/").status_code == 200
    r = admin_client.get(USERS)
    assert r.status_code == 200
    assert "root" in listed(r)


def test_site_admin_gets_in_too(db):
    c = Client()
    c.force_login(create_user("moderator", Role.ADMIN))
    assert c.get(USERS).status_code == 200


@pytest.mark.parametrize("role", [Role.USER, Role.PENDING])
def test_ordinary_user_is_sent_to_the_login_page(role):
    c = Client()
    c.force_login(create_user("plain", role))
    for path in ("/admin/", USERS, "/admin/audit/auditevent/"):
        r = c.get(path)
        assert r.status_code == 302, (path, r.status_code)
        assert r["Location"].startswith("/admin/login/")


def test_anonymous_is_sent_to_the_login_page(db):
    r = Client().get(USERS)
    assert r.status_code == 302 and r["Location"].startswith("/admin/login/")


def test_banned_root_is_logged_out(admin_client, root):
    """A ban takes effect on the next admin request too (is_active follows the role)."""
    User.objects.filter(pk=root.pk).update(role=Role.BANNED)
    r = admin_client.get(USERS)
    assert r.status_code == 302 and r["Location"].startswith("/admin/login/")


def test_admin_login_form_refuses_ordinary_user(root):
    create_user("plain")
    c = Client()
    r = c.post("/admin/login/", {"username": "plain", "password": PASSWORD, "next": "/admin/"})
    assert r.status_code == 200  # the form again, with an error
    assert "_auth_user_id" not in c.session
    # The same form lets root in.
    r = c.post("/admin/login/", {"username": "root", "password": PASSWORD, "next": "/admin/"})
    assert r.status_code == 302 and c.session["_auth_user_id"] == root.pk


# --- the admin login shares the API's limits and audit (issue 10, finding 1) -------------------------

WRONG = "Wr0ng-passw0rd"


@pytest.fixture
def frozen_clock(monkeypatch):
    """django-ratelimit's windows on a frozen clock, so no test straddles a window edge."""
    import types

    from django_ratelimit import core as ratelimit_core

    monkeypatch.setattr(ratelimit_core, "time", types.SimpleNamespace(time=lambda: 1_800_000_000.0))


def admin_login_page(ip: str = "198.51.100.90") -> tuple[Client, str]:
    c = Client(enforce_csrf_checks=True, raise_request_exception=False, REMOTE_ADDR=ip)
    page = c.get("/admin/login/")
    assert page.status_code == 200
    return c, page.cookies["csrftoken"].value


def admin_login(c: Client, token: str, username: str, password: str):
    return c.post(
        "/admin/login/?next=/admin/",
        {"username": username, "password": password, "csrfmiddlewaretoken": token},
    )


def api_login(username: str, password: str, ip: str = "198.51.100.91"):
    return APIClient(raise_request_exception=False, REMOTE_ADDR=ip).post(
        "/api/v1/auth/login", {"username": username, "password": password}, format="json"
    )


def test_admin_login_counts_against_the_accounts_login_limit(root, settings, frozen_clock, monkeypatch):
    from django.contrib.auth.hashers import Argon2PasswordHasher

    settings.RATELIMITS = {**settings.RATELIMITS, "login_ip": "100/m", "login_user": "3/15m"}
    c, token = admin_login_page()
    for _ in range(3):
        r = admin_login(c, token, "root", WRONG)
        assert r.status_code == 200 and "_auth_user_id" not in c.session
    # The account's budget is spent: the right password is refused on both paths, before hashing.
    hashes: list = []
    real_verify = Argon2PasswordHasher.verify
    monkeypatch.setattr(
        Argon2PasswordHasher, "verify", lambda self, p, e: hashes.append(p) or real_verify(self, p, e)
    )
    r = admin_login(c, token, "root", PASSWORD)
    assert r.status_code == 200, r.content[:300]
    assert "_auth_user_id" not in c.session
    assert "Too many login attempts" in r.content.decode()
    assert api_login("root", PASSWORD).status_code == 429
    assert hashes == []
    assert AuditEvent.objects.filter(action="auth.login_failed", resource_id=root.pk).count() == 3
    assert not AuditEvent.objects.filter(action="auth.login").exists()


def test_api_login_attempts_count_against_the_admin_login(root, settings, frozen_clock):
    settings.RATELIMITS = {**settings.RATELIMITS, "login_ip": "2/m", "login_user": "100/m"}
    ip = "198.51.100.92"
    for _ in range(2):
        assert api_login("root", WRONG, ip=ip).status_code == 401
    c, token = admin_login_page(ip)
    r = admin_login(c, token, "root", PASSWORD)
    assert r.status_code == 200 and "_auth_user_id" not in c.session
    assert "Too many login attempts" in r.content.decode()
    # Another address still gets in.
    c, token = admin_login_page("198.51.100.93")
    r = admin_login(c, token, "root", PASSWORD)
    assert r.status_code == 302 and c.session["_auth_user_id"] == root.pk


def test_admin_login_writes_the_login_audit_events(root):
    create_user("plain")
    banned = create_user("banned-admin", Role.BANNED)
    c, token = admin_login_page("198.51.100.94")
    assert admin_login(c, token, "root", WRONG).status_code == 200
    assert admin_login(c, token, "plain", PASSWORD).status_code == 200
    assert admin_login(c, token, banned.username, PASSWORD).status_code == 200
    assert admin_login(c, token, "root", PASSWORD).status_code == 302
    events = list(AuditEvent.objects.filter(action__startswith="auth.").order_by("seq"))
    assert [(e.action, e.details.get("reason"), e.details.get("via")) for e in events] == [
        ("auth.login_failed", None, "admin"),
        ("auth.login_refused", "not_staff", "admin"),
        ("auth.login_refused", "banned", "admin"),
        ("auth.login", None, "admin"),
    ]
    assert events[-1].user_id == root.pk and events[-1].ip == "198.51.100.94"


# --- the user list ---------------------------------------------------------------------------------


def test_search_and_role_filter(admin_client):
    create_user("bob", email="bob@example.com")
    create_user("carol", email="carol@corp.example")
    create_user("mallory", Role.BANNED)
    create_user("adam", Role.ADMIN)

    assert listed(admin_client.get(USERS, {"q": "bob"})) == {"bob"}
    assert listed(admin_client.get(USERS, {"q": "corp.example"})) == {"carol"}
    assert listed(admin_client.get(USERS, {"q": "nobody-at-all"})) == set()
    assert listed(admin_client.get(USERS, {"role__exact": "banned"})) == {"mallory"}
    assert listed(admin_client.get(USERS, {"role__exact": "admin"})) == {"adam"}
    assert listed(admin_client.get(USERS, {"role__exact": "root"})) == {"root"}
    assert listed(admin_client.get(USERS, {"role__exact": "user", "q": "carol"})) == {"carol"}
    assert listed(admin_client.get(USERS, {"role__exact": "banned", "q": "carol"})) == set()


def test_users_cannot_be_added_in_the_admin(admin_client):
    """Accounts come from registration or create_root, where the password rule applies."""
    assert admin_client.get(USERS + "add/").status_code == 403
    r = admin_client.post(USERS + "add/", {"username": "sneaky", "role": "root"})
    assert r.status_code == 403
    assert not User.objects.filter(username="sneaky").exists()


# --- the ban action ----------------------------------------------------------------------------------


def test_ban_action_bans_audits_and_ends_sessions(admin_client, root):
    bob, carol, dave = create_user("bob"), create_user("carol"), create_user("dave")
    bob_pair, carol_pair, dave_pair = open_session(bob), open_session(carol), open_session(dave)
    assert me(bob_pair.access).status_code == 200

    r = admin_client.post(USERS, {"action": "ban_users", "_selected_action": [bob.pk, carol.pk]})
    assert r.status_code == 302, r.content[:300]

    for user, pair in ((bob, bob_pair), (carol, carol_pair)):
        user.refresh_from_db()
        assert user.role == Role.BANNED
        assert not AuthSession.objects.filter(user=user, revoked_at__isnull=True).exists()
        r = me(pair.access)
        assert r.status_code == 403 and r.json()["error"]["code"] == "user_banned"
        r = APIClient().post("/api/v1/auth/refresh", {"refresh": pair.refresh}, format="json")
        assert r.status_code in (401, 403)
        event = AuditEvent.objects.get(action="user.ban", resource_id=user.pk)
        assert event.user_id == root.pk
        assert (event.ip, event.user_agent) == (ADMIN_IP, ADMIN_UA)
        assert event.details["sessions_revoked"] == 1

    # The one not selected is untouched.
    dave.refresh_from_db()
    assert dave.role == Role.USER and me(dave_pair.access).status_code == 200


def test_ban_action_respects_the_rules(db):
    """A site admin cannot ban another admin or root; the action reports it and changes nothing."""
    moderator, other_admin, top = (
        create_user("moderator", Role.ADMIN),
        create_user("other", Role.ADMIN),
        create_user("top", Role.ROOT),
    )
    c = Client(raise_request_exception=False)
    c.force_login(moderator)
    r = c.post(
        USERS,
        {"action": "ban_users", "_selected_action": [other_admin.pk, top.pk, moderator.pk]},
        follow=True,
    )
    assert r.status_code == 200
    for user in (moderator, other_admin, top):
        user.refresh_from_db()
        assert user.role != Role.BANNED
    assert not AuditEvent.objects.filter(action="user.ban").exists()
    assert any("root can change" in str(m) or "own role" in str(m) for m in r.context["messages"])


def test_unban_and_end_sessions_actions(admin_client, root):
    bob = create_user("bob")
    pair = open_session(bob)
    admin_client.post(USERS, {"action": "end_sessions", "_selected_action": [bob.pk]})
    assert me(pair.access).status_code == 401
    assert AuditEvent.objects.get(action="tokens.revoke_all").user_id == root.pk

    services.user_ban(actor=root, user=bob, reason="x", origin=Origin())
    admin_client.post(USERS, {"action": "unban_users", "_selected_action": [bob.pk]})
    bob.refresh_from_db()
    assert bob.role == Role.USER
    assert AuditEvent.objects.get(action="user.unban").user_id == root.pk


# --- the change form ------------------------------------------------------------------------------


def change_form_data(response, **overrides) -> dict:
    """What the browser would post back: the form's current values (inlines included)."""
    data: dict = {}
    form = response.context["adminform"].form
    for name in form.fields:
        value = form[name].value()
        if value is not None:
            data[name] = value
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        management = formset.management_form
        for name in management.fields:
            data[management.add_prefix(name)] = management[name].value()
        for inline_form in formset.forms:
            for name in inline_form.fields:
                value = inline_form[name].value()
                if value is not None:
                    data[inline_form.add_prefix(name)] = value
    data.update(overrides)
    return data


def test_role_change_goes_through_the_services(admin_client, root):
    bob = create_user("bob", email="bob@example.com")
    url = admin_url(bob)
    r = admin_client.get(url)
    assert r.status_code == 200
    r = admin_client.post(url, change_form_data(r, role=Role.ADMIN))
    assert r.status_code == 302, r.context["adminform"].form.errors if r.context else r.content[:300]
    bob.refresh_from_db()
    assert bob.role == Role.ADMIN
    event = AuditEvent.objects.get(action="user.role_change")
    assert event.user_id == root.pk and event.resource_id == bob.pk
    assert event.details == {"from": "user", "to": "admin"}
    assert (event.ip, event.user_agent) == (ADMIN_IP, ADMIN_UA)
    # django-auditlog's history names the moderator and the address too.
    entry = LogEntry.objects.get_for_object(bob).filter(changes__has_key="role").latest("timestamp")
    assert (entry.actor_id, entry.remote_addr) == (root.pk, ADMIN_IP)


def test_ban_in_the_change_form_ends_sessions_and_records_the_reason(admin_client, root):
    bob = create_user("bob")
    pair = open_session(bob)
    url = admin_url(bob)
    r = admin_client.post(url, change_form_data(admin_client.get(url), role=Role.BANNED, ban_reason="spam"))
    assert r.status_code == 302
    bob.refresh_from_db()
    assert bob.role == Role.BANNED and bob.banned_reason == "spam"
    assert me(pair.access).json()["error"]["code"] == "user_banned"
    event = AuditEvent.objects.get(action="user.ban")
    assert event.user_id == root.pk and event.details["reason"] == "spam"


def test_change_form_refused_role_change_is_not_written(db):
    """A site admin may not make someone root: the service refuses and the form's value is not saved."""
    moderator, bob = create_user("moderator", Role.ADMIN), create_user("bob")
    c = Client(raise_request_exception=False)
    c.force_login(moderator)
    url = admin_url(bob)
    r = c.post(url, change_form_data(c.get(url), role=Role.ROOT), follow=True)
    assert r.status_code == 200
    assert ("error", "Only root can change the role of an admin.") in {
        (m.level_tag, str(m)) for m in r.context["messages"]
    }
    bob.refresh_from_db()
    assert bob.role == Role.USER
    assert not AuditEvent.objects.filter(action="user.role_change").exists()


# --- profile edits of staff accounts follow the moderation rule (issue 10, finding 2) ----------------


def _edit(c: Client, target: User, **overrides):
    url = admin_url(target)
    return c.post(url, change_form_data(c.get(url), **overrides), follow=True)


def _messages(response) -> set[tuple[str, str]]:
    return {(m.level_tag, str(m)) for m in response.context["messages"]}


@pytest.mark.parametrize("target_role", [Role.ROOT, Role.ADMIN])
def test_site_admin_cannot_edit_a_staff_accounts_username_or_email(db, target_role):
    moderator = create_user("moderator", Role.ADMIN)
    target = create_user("boss", target_role, email="boss@example.com")
    c = Client(raise_request_exception=False)
    c.force_login(moderator)
    r = _edit(c, target, username="mallory", email="mallory@evil.example")
    assert r.status_code == 200
    assert ("error", "Only root can change the role of an admin.") not in _messages(r)
    assert any(level == "error" and "root" in text for level, text in _messages(r)), _messages(r)
    assert not any(level == "success" for level, _ in _messages(r)), _messages(r)
    target.refresh_from_db()
    assert (target.username, target.email) == ("boss", "boss@example.com")
    assert not AuditEvent.objects.filter(action="user.update").exists()


def test_root_may_edit_an_admin_and_an_admin_a_plain_user(admin_client, root):
    adam = create_user("adam", Role.ADMIN, email="adam@example.com")
    r = _edit(admin_client, adam, email="adam@corp.example")
    assert not any(level == "error" for level, _ in _messages(r)), _messages(r)
    adam.refresh_from_db()
    assert adam.email == "adam@corp.example"
    bob = create_user("bob", email="bob@example.com")
    c = Client(raise_request_exception=False)
    c.force_login(adam)
    r = _edit(c, bob, username="robert")
    assert not any(level == "error" for level, _ in _messages(r)), _messages(r)
    bob.refresh_from_db()
    assert bob.username == "robert"
    event = AuditEvent.objects.filter(action="user.update").order_by("-seq").first()
    assert event.user_id == adam.pk and event.resource_id == bob.pk


def test_staff_change_their_own_email_in_the_admin_with_their_password(admin_client, root):
    """Editing your own address needs your password, as on the API (users/me): the admin's own
    account form asks for it; without it, or with a wrong one, nothing changes."""
    assert 'name="current_password"' in admin_client.get(admin_url(root)).content.decode()
    for given in ("", "Wr0ng-passw0rd"):
        r = _edit(admin_client, root, email="root@corp.example", current_password=given)
        assert any(level == "error" and "password" in text for level, text in _messages(r)), _messages(r)
        root.refresh_from_db()
        assert root.email != "root@corp.example"
    r = _edit(admin_client, root, email="root@corp.example", current_password=PASSWORD)
    assert not any(level == "error" for level, _ in _messages(r)), _messages(r)
    root.refresh_from_db()
    assert root.email == "root@corp.example"
    # Someone else's account form does not ask for it.
    assert 'name="current_password"' not in admin_client.get(admin_url(create_user("bob"))).content.decode()


def test_change_form_does_not_offer_the_password(admin_client):
    bob = create_user("bob")
    r = admin_client.get(admin_url(bob))
    assert "password" not in r.context["adminform"].form.fields
    assert password_hash() not in r.content.decode()


# --- read-only admins ---------------------------------------------------------------------------------


def test_audit_log_admin_is_read_only(admin_client, root):
    services.user_set_role(
        actor=root, user=create_user("bob"), role=Role.ADMIN, origin=Origin(ip="127.0.0.1")
    )
    event = AuditEvent.objects.get(action="user.role_change")
    base = "/admin/audit/auditevent/"

    r = admin_client.get(base)
    assert r.status_code == 200 and event in r.context["cl"].result_list
    assert r.context["action_form"] is None  # no bulk actions at all, delete included
    assert admin_client.get(base + "?q=role_change").status_code == 200

    assert admin_client.get(base + "add/").status_code == 403
    assert admin_client.post(base + "add/", {"action": "forged"}).status_code == 403
    assert admin_client.get(admin_url(event)).status_code == 200  # a view page
    r = admin_client.post(admin_url(event), {"action": "forged", "resource_id": "x"})
    assert r.status_code == 403
    assert admin_client.post(admin_url(event, "delete"), {"post": "yes"}).status_code == 403
    r = admin_client.post(base, {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"})
    event.refresh_from_db()
    assert event.action == "user.role_change"
    assert AuditEvent.objects.filter(pk=event.pk).exists()

    model_admin = site._registry[AuditEvent]
    request = RequestFactory().get(base)
    request.user = root
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, event)
    assert not model_admin.has_delete_permission(request, event)
    assert "delete_selected" not in model_admin.get_actions(request)


# "ab_5Fcd": the admin reads "_5F" in a URL as an escaped "_", so this key's raw id in a URL
# names "ab_cd" (fresh key ids hold such a sequence now and then: apps/core/tests/helpers.py).
@pytest.mark.parametrize("kid", [None, "ab_5Fcd"])
def test_signing_keys_are_read_only_in_the_admin(admin_client, kid):
    open_session(create_user("bob"))  # seeds the key store
    if kid:
        SigningKey.objects.update(kid=kid)
    key = SigningKey.objects.get()
    base = "/admin/accounts/signingkey/"
    assert admin_client.get(base).status_code == 200
    assert admin_client.get(base + "add/").status_code == 403
    assert admin_client.post(admin_url(key, "delete"), {"post": "yes"}).status_code == 403
    if kid:  # the raw id: "no such key", back to the admin's index
        assert admin_client.get(f"{base}{key.pk}/change/").status_code == 302
    r = admin_client.get(admin_url(key))
    assert r.status_code == 200
    assert b"PRIVATE KEY" not in r.content
    assert SigningKey.objects.filter(pk=key.pk, is_signing=True).exists()
