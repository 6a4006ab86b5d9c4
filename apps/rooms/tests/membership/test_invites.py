"""Invites (docs/api.md, "REST"; docs/security.md, "What they may do"): who may create one, and
how one lets a user in (past a password or approval) until it expires or is used up."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.core.tests.helpers import assert_error
from apps.permissions.flags import Perm
from apps.rooms.models import Invite, Room, invite_ref
from apps.rooms.tests.conftest import (
    ROOM_PASSWORD,
    Person,
    client,
    grant,
    join,
    make_room,
    person,
    room_url,
)
from apps.rooms.tests.membership.conftest import member_row

pytestmark = pytest.mark.django_db

# --- invites ------------------------------------------------------------------------------------------


def create_invite(p: Person, room: Room, **body):
    return p.client.post(room_url(room, "invites"), body, format="json")


def test_invite_creation_needs_invite_members(room, bob):
    join(bob, room)
    assert_error(create_invite(bob, room), 403, "permission_denied")
    assert_error(create_invite(person(), room), 403, "not_in_room")
    assert_error(client().post(room_url(room, "invites"), {}, format="json"), 401, "not_authenticated")
    assert not Invite.objects.exists()

    grant(room, bob, added=int(Perm.INVITE_MEMBERS))
    r = create_invite(bob, room, max_uses=3, expires_in=3600)
    assert r.status_code == 201, r.content
    body = r.json()
    invite = Invite.objects.get(code=body["code"])
    assert invite.room_id == room.pk and invite.created_by_id == bob.user.pk and invite.max_uses == 3
    assert room.pk in body["url"] and body["code"] in body["url"]
    assert body["expires_at"]
    assert abs((invite.expires_at - timezone.now()) - timedelta(hours=1)) < timedelta(seconds=30)
    assert AuditEvent.objects.filter(action="invite.create", user_id=bob.user.pk).count() == 1


def test_invite_joins_a_password_room_without_the_password(alice, locked, bob):
    code = create_invite(alice, locked).json()["code"]
    r = bob.client.post(room_url(locked, "join"), {"invite": code}, format="json")
    assert r.status_code == 201, r.content
    assert r.json()["status"] == "active"
    assert Invite.objects.get(code=code).uses == 1
    # The log names the invite by its reference, never by the code (test_invite_audit.py).
    assert AuditEvent.objects.get(action="member.join", user_id=bob.user.pk).details["invite"] == invite_ref(
        code
    )


def test_invite_skips_approval(alice, bob):
    room = make_room(alice, settings={"join_requires_approval": True})
    code = create_invite(alice, room).json()["code"]
    r = bob.client.post(room_url(room, "join"), {"invite": code}, format="json")
    assert r.status_code == 201 and r.json()["status"] == "active"


def test_expired_invite_is_refused(alice, locked, bob):
    body = create_invite(alice, locked, expires_in=60).json()
    Invite.objects.filter(code=body["code"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    r = bob.client.post(room_url(locked, "join"), {"invite": body["code"]}, format="json")
    assert_error(r, 403, "permission_denied")
    assert member_row(locked, bob) is None
    assert Invite.objects.get(code=body["code"]).uses == 0


def test_invite_expires_with_time(alice, locked, bob, monkeypatch):
    code = create_invite(alice, locked, expires_in=60).json()["code"]
    later = timezone.now() + timedelta(seconds=61)
    monkeypatch.setattr(timezone, "now", lambda: later)
    assert_error(
        bob.client.post(room_url(locked, "join"), {"invite": code}, format="json"), 403, "permission_denied"
    )
    assert member_row(locked, bob) is None


def test_invite_max_uses(alice, locked):
    code = create_invite(alice, locked, max_uses=2).json()["code"]
    first, second, third = person(), person(), person()
    for p in (first, second):
        assert p.client.post(room_url(locked, "join"), {"invite": code}, format="json").status_code == 201
    # A member rejoining does not spend a use.
    assert first.client.post(room_url(locked, "join"), {"invite": code}, format="json").status_code == 200
    assert_error(
        third.client.post(room_url(locked, "join"), {"invite": code}, format="json"), 403, "permission_denied"
    )
    assert member_row(locked, third) is None
    assert Invite.objects.get(code=code).uses == 2


def test_invite_for_another_room_is_refused(alice, room, locked, bob):
    code = create_invite(alice, room).json()["code"]
    assert_error(
        bob.client.post(room_url(locked, "join"), {"invite": code}, format="json"), 403, "permission_denied"
    )
    assert_error(
        bob.client.post(room_url(locked, "join"), {"invite": "made-up-code"}, format="json"),
        403,
        "permission_denied",
    )
    assert member_row(locked, bob) is None
    assert Invite.objects.get(code=code).uses == 0


def test_banned_member_cannot_rejoin_nor_use_an_invite(alice, locked, bob):
    join(bob, locked, password=ROOM_PASSWORD)
    assert (
        alice.client.post(room_url(locked, f"members/{bob.user.pk}/ban"), {}, format="json").status_code
        == 204
    )
    code = create_invite(alice, locked).json()["code"]
    for body in ({"password": ROOM_PASSWORD}, {"invite": code}, {}):
        r = bob.client.post(room_url(locked, "join"), body, format="json")
        assert_error(r, 403, "permission_denied")
    assert member_row(locked, bob).status == "banned"
    assert Invite.objects.get(code=code).uses == 0
