"""Leaving a room, and kicking, banning and unbanning members (docs/security.md, "What they may
do"): who may, whom, and what each leaves behind."""

from __future__ import annotations

import pytest

from apps.accounts.models import User
from apps.audit.models import AuditEvent
from apps.core.tests.helpers import assert_error
from apps.permissions.flags import Perm
from apps.rooms.models import RoomMember
from apps.rooms.tests.conftest import (
    client,
    grant,
    join,
    person,
    room_url,
)
from apps.rooms.tests.membership.conftest import member_row

pytestmark = pytest.mark.django_db

# --- leave ---------------------------------------------------------------------------------------------


def test_leave(alice, room, bob):
    join(bob, room)
    assert bob.client.post(room_url(room, "leave")).status_code == 204
    assert member_row(room, bob) is None
    assert AuditEvent.objects.filter(action="member.leave", user_id=bob.user.pk).count() == 1
    assert_error(bob.client.post(room_url(room, "leave")), 403, "not_in_room")
    # The creator cannot leave.
    assert_error(alice.client.post(room_url(room, "leave")), 403, "permission_denied")
    assert member_row(room, alice).role == "creator"
    # Leaving does not undo a ban.
    join(bob, room)
    alice.client.post(room_url(room, f"members/{bob.user.pk}/ban"), {}, format="json")
    assert_error(bob.client.post(room_url(room, "leave")), 403, "not_in_room")
    assert member_row(room, bob).status == "banned"


# --- kick ------------------------------------------------------------------------------------------------


def test_kick(alice, room, bob):
    join(bob, room)
    carol = person()
    join(carol, room)
    # Without KICK_MEMBERS.
    assert_error(carol.client.post(room_url(room, f"members/{bob.user.pk}/kick")), 403, "permission_denied")
    assert member_row(room, bob) is not None

    r = alice.client.post(room_url(room, f"members/{bob.user.pk}/kick"))
    assert r.status_code == 204, r.content
    assert member_row(room, bob) is None
    event = AuditEvent.objects.get(action="member.kick")
    assert event.user_id == alice.user.pk and event.resource_id == bob.user.pk and event.room_id == room.pk
    # Kicked is not banned: rejoin works.
    assert bob.client.post(room_url(room, "join"), {}, format="json").status_code == 201
    assert_error(alice.client.post(room_url(room, "members/nosuchuser/kick")), 404, "not_found")


def test_kick_rules(alice, room, bob):
    join(bob, room)
    grant(room, bob, added=int(Perm.KICK_MEMBERS))
    carol = person()
    join(carol, room)
    grant(room, carol, added=int(Perm.KICK_MEMBERS))
    # Nobody kicks the creator, nor themselves, nor an equal.
    assert_error(bob.client.post(room_url(room, f"members/{alice.user.pk}/kick")), 403, "permission_denied")
    assert_error(bob.client.post(room_url(room, f"members/{bob.user.pk}/kick")), 403, "permission_denied")
    assert_error(bob.client.post(room_url(room, f"members/{carol.user.pk}/kick")), 403, "permission_denied")
    assert RoomMember.objects.filter(room=room).count() == 3
    assert not AuditEvent.objects.filter(action="member.kick").exists()


# --- ban / unban ---------------------------------------------------------------------------------------


def test_ban_and_unban(alice, room, bob):
    join(bob, room)
    carol = person()
    join(carol, room)
    assert_error(
        carol.client.post(room_url(room, f"members/{bob.user.pk}/ban"), {}, format="json"),
        403,
        "permission_denied",
    )
    r = alice.client.post(room_url(room, f"members/{bob.user.pk}/ban"), {"reason": "spoilers"}, format="json")
    assert r.status_code == 204, r.content
    row = member_row(room, bob)
    assert (row.status, row.ban_reason) == ("banned", "spoilers")
    event = AuditEvent.objects.get(action="member.ban")
    assert event.user_id == alice.user.pk and event.resource_id == bob.user.pk
    assert event.details["reason"] == "spoilers"

    # Banned: no reading, no joining, not counted, not on the active list.
    assert_error(bob.client.get(room_url(room, "playback")), 403, "not_in_room")
    assert_error(bob.client.get(room_url(room, "members/me")), 403, "not_in_room")
    assert_error(bob.client.post(room_url(room, "join"), {}, format="json"), 403, "permission_denied")
    assert client().get(room_url(room)).json()["member_count"] == 2
    banned = alice.client.get(room_url(room, "members"), {"status": "banned"}).json()["results"]
    assert [m["user"]["id"] for m in banned] == [bob.user.pk]

    # Unban needs BAN_MEMBERS too.
    assert_error(carol.client.post(room_url(room, f"members/{bob.user.pk}/unban")), 403, "permission_denied")
    assert member_row(room, bob).status == "banned"
    assert alice.client.post(room_url(room, f"members/{bob.user.pk}/unban")).status_code == 204
    assert member_row(room, bob) is None
    assert AuditEvent.objects.get(action="member.unban").resource_id == bob.user.pk
    r = bob.client.post(room_url(room, "join"), {}, format="json")
    assert r.status_code == 201 and r.json()["status"] == "active"
    # Unbanning someone not banned is a 400; banning a non-member a 404.
    assert_error(alice.client.post(room_url(room, f"members/{bob.user.pk}/unban")), 400, "invalid")
    assert_error(
        alice.client.post(room_url(room, f"members/{person().user.pk}/ban"), {}, format="json"),
        404,
        "not_found",
    )


def test_ban_reason_is_limited(alice, room, bob):
    join(bob, room)
    r = alice.client.post(room_url(room, f"members/{bob.user.pk}/ban"), {"reason": "x" * 501}, format="json")
    assert_error(r, 400, "invalid")
    assert member_row(room, bob).status == "active"


def test_site_admin_moderates_without_being_a_member(room, bob):
    join(bob, room)
    mod = person()
    User.objects.filter(pk=mod.user.pk).update(role="admin")
    assert (
        mod.client.post(
            room_url(room, f"members/{bob.user.pk}/ban"), {"reason": "x"}, format="json"
        ).status_code
        == 204
    )
    assert AuditEvent.objects.get(action="member.ban").user_id == mod.user.pk
