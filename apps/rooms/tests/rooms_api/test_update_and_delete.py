"""Changing and deleting a room over REST (docs/security.md, "What they may do"): info and
settings need different bits, site admins act on any room, only the creator or a site admin
deletes."""

from __future__ import annotations

import pytest
from django.contrib.auth.hashers import check_password

from apps.accounts.models import Role
from apps.audit.models import AuditEvent
from apps.core.tests.helpers import assert_error
from apps.permissions.flags import Perm
from apps.rooms.models import Invite, Room, RoomMember
from apps.rooms.tests.conftest import ROOMS, client, grant, join, make_room, person

pytestmark = pytest.mark.django_db

# --- update -----------------------------------------------------------------------------------------------


def test_creator_updates_info_and_settings(alice):
    room = make_room(alice)
    r = alice.client.patch(
        f"{ROOMS}/{room.pk}",
        {"name": "Renamed", "description": "new", "settings": {"hidden": True, "allow_guests": True}},
        format="json",
    )
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["name"] == "Renamed" and body["description"] == "new"
    assert body["settings"]["hidden"] is True and body["settings"]["allow_guests"] is True
    room.refresh_from_db()
    assert (room.name, room.hidden, room.allow_guests) == ("Renamed", True, True)
    event = AuditEvent.objects.get(action="room.settings_change")
    assert event.user_id == alice.user.pk and event.room_id == room.pk
    assert event.details["changes"]["name"] == ["Movie night", "Renamed"]


def test_edit_room_info_bit_allows_rename_but_not_settings(alice, bob):
    room = make_room(alice)
    join(bob, room)
    url = f"{ROOMS}/{room.pk}"

    # A plain member can do neither.
    assert_error(bob.client.patch(url, {"name": "Bob's"}, format="json"), 403, "permission_denied")
    assert_error(
        bob.client.patch(url, {"settings": {"hidden": True}}, format="json"), 403, "permission_denied"
    )

    grant(room, bob, added=int(Perm.EDIT_ROOM_INFO))
    r = bob.client.patch(url, {"name": "Bob's", "description": "d"}, format="json")
    assert r.status_code == 200, r.content
    assert r.json()["name"] == "Bob&#x27;s"
    room.refresh_from_db()
    assert room.name == "Bob's" and room.description == "d"
    assert AuditEvent.objects.filter(action="room.update", user_id=bob.user.pk).count() == 1

    for settings in ({"hidden": True}, {"member_permissions": 0}, {"allow_guests": True}):
        assert_error(bob.client.patch(url, {"settings": settings}, format="json"), 403, "permission_denied")
    # Mixing both is refused as a whole: the name is not changed either.
    r = bob.client.patch(url, {"name": "Both", "settings": {"hidden": True}}, format="json")
    assert_error(r, 403, "permission_denied")
    room.refresh_from_db()
    assert (room.name, room.hidden, room.allow_guests, room.member_permissions) == (
        "Bob's",
        False,
        False,
        519,
    )


def test_edit_room_settings_bit_allows_settings_but_not_rename(alice, bob):
    room = make_room(alice)
    join(bob, room)
    grant(room, bob, added=int(Perm.EDIT_ROOM_SETTINGS))
    url = f"{ROOMS}/{room.pk}"

    r = bob.client.patch(url, {"settings": {"hidden": True, "allow_guests": True}}, format="json")
    assert r.status_code == 200, r.content
    room.refresh_from_db()
    assert room.hidden and room.allow_guests
    assert AuditEvent.objects.filter(action="room.settings_change", user_id=bob.user.pk).count() == 1

    for info in ({"name": "x"}, {"description": "x"}, {"password": "secret-pw"}):
        assert_error(bob.client.patch(url, info, format="json"), 403, "permission_denied")
    room.refresh_from_db()
    assert room.name == "Movie night" and room.description == "" and not room.has_password

    # Moving a default is granting: only bits bob holds (he lacks PLAY_CONTROL).
    r = bob.client.patch(
        url, {"settings": {"member_permissions": 519 | int(Perm.PLAY_CONTROL)}}, format="json"
    )
    assert_error(r, 403, "permission_denied")
    # ... and the admin default is MANAGE_ADMINS' business.
    assert_error(
        bob.client.patch(url, {"settings": {"admin_permissions": 0}}, format="json"), 403, "permission_denied"
    )
    # Taking away a bit he holds is fine.
    r = bob.client.patch(url, {"settings": {"member_permissions": 519 & ~int(Perm.ADD_MOVIE)}}, format="json")
    assert r.status_code == 200, r.content
    room.refresh_from_db()
    assert room.member_permissions == 515 and room.admin_permissions == 49151


def test_update_by_outsiders(alice, bob):
    room = make_room(alice)
    url = f"{ROOMS}/{room.pk}"
    assert_error(client().patch(url, {"name": "x"}, format="json"), 401, "not_authenticated")
    assert_error(bob.client.patch(url, {"name": "x"}, format="json"), 403, "not_in_room")
    room.refresh_from_db()
    assert room.name == "Movie night"


def test_site_admin_updates_any_room(alice):
    room = make_room(alice)
    for role in (Role.ADMIN, Role.ROOT):
        mod = person(role)
        r = mod.client.patch(
            f"{ROOMS}/{room.pk}", {"name": f"by {role}", "settings": {"hidden": True}}, format="json"
        )
        assert r.status_code == 200, r.content
        room.refresh_from_db()
        assert room.name == f"by {role}" and room.hidden
        room.hidden = False
        room.save()


def test_password_set_and_removed_by_patch(alice):
    room = make_room(alice)
    url = f"{ROOMS}/{room.pk}"
    r = alice.client.patch(url, {"password": "hunter22"}, format="json")
    assert r.status_code == 200 and r.json()["has_password"] is True
    room.refresh_from_db()
    assert room.password != "hunter22" and check_password("hunter22", room.password)
    r = alice.client.patch(url, {"password": ""}, format="json")
    assert r.status_code == 200 and r.json()["has_password"] is False
    room.refresh_from_db()
    assert room.password == ""


# --- delete --------------------------------------------------------------------------------------------


def test_creator_deletes_room(alice):
    room = make_room(alice)
    Invite.objects.create(room=room, created_by=alice.user)
    r = alice.client.delete(f"{ROOMS}/{room.pk}")
    assert r.status_code == 204, r.content
    assert not Room.objects.filter(pk=room.pk).exists()
    assert not RoomMember.objects.filter(room_id=room.pk).exists()
    event = AuditEvent.objects.get(action="room.delete")
    assert event.user_id == alice.user.pk and event.room_id == room.pk
    assert_error(alice.client.get(f"{ROOMS}/{room.pk}"), 404, "not_found")


def test_only_creator_or_site_admin_deletes(alice, bob):
    room = make_room(alice)
    join(bob, room)
    # Even a room admin with every bit but being the creator cannot delete.
    grant(room, bob, role="admin", added=int(Perm.MANAGE_ADMINS))
    outsider = person()
    url = f"{ROOMS}/{room.pk}"
    assert_error(client().delete(url), 401, "not_authenticated")
    assert_error(bob.client.delete(url), 403, "permission_denied")
    assert outsider.client.delete(url).status_code == 403
    assert Room.objects.filter(pk=room.pk).exists()
    assert not AuditEvent.objects.filter(action="room.delete").exists()

    mod = person(Role.ADMIN)
    assert mod.client.delete(url).status_code == 204
    assert not Room.objects.filter(pk=room.pk).exists()
    assert AuditEvent.objects.get(action="room.delete").user_id == mod.user.pk
