"""Guests (docs/security.md, "Guests and room bans"): a guest token opens one room for four hours, is not an
account, holds at most the guest permissions, and rooms with no guests, a password or
approval refuse guests."""

from __future__ import annotations

import jwt
import pytest

from apps.accounts.models import User
from apps.accounts.tests.factories import PASSWORD, TEST_ORIGIN
from apps.audit.models import AuditEvent
from apps.core.tests.helpers import assert_error
from apps.rooms import services
from apps.rooms.models import Room, RoomMember
from apps.rooms.tests.conftest import (
    ROOM_PASSWORD,
    ROOMS,
    client,
    make_room,
    room_url,
)

pytestmark = pytest.mark.django_db

# --- guests -------------------------------------------------------------------------------------------------


@pytest.fixture
def guest_room(alice) -> Room:
    return make_room(alice, name="Open house", settings={"allow_guests": True})


def become_guest(room: Room, name: str = "Gus"):
    r = client().post(room_url(room, "guest"), {"name": name}, format="json")
    assert r.status_code == 200, r.content
    return r.json()


def test_guest_token_bound_to_one_room_for_four_hours(guest_room):
    body = become_guest(guest_room)
    assert set(body) == {"access", "member"}
    assert body["member"]["role"] == "guest" and body["member"]["status"] == "active"
    assert body["member"]["user"]["username"] == "Gus"
    claims = jwt.decode(body["access"], options={"verify_signature": False})
    assert claims["rid"] == guest_room.pk
    assert claims["role"] == "guest"
    assert claims["exp"] - claims["iat"] == 14400
    guest = User.objects.get(pk=claims["sub"])
    assert guest.is_guest and not guest.has_usable_password()
    assert AuditEvent.objects.filter(action="member.guest_join", room_id=guest_room.pk).count() == 1

    g = client(body["access"])
    assert g.get(room_url(guest_room, "playback")).status_code == 200
    assert g.get(room_url(guest_room, "movies")).status_code == 200
    me = g.get(room_url(guest_room, "members/me")).json()
    assert me["role"] == "guest" and me["effective_permissions"] == 515
    assert client().get(room_url(guest_room)).json()["member_count"] == 2


def test_guest_cannot_leave_its_room(alice, guest_room):
    """A guest token opens its own room and nothing else."""
    other = make_room(alice, name="Other open house", settings={"allow_guests": True})
    g = client(become_guest(guest_room)["access"])
    assert_error(g.get(room_url(other, "playback")), 403, "not_in_room")
    assert_error(g.get(room_url(other, "members/me")), 403, "not_in_room")
    assert_error(g.get(room_url(other, "movies")), 403, "not_in_room")
    r = g.post(room_url(other, "join"), {}, format="json")
    assert r.status_code == 403
    assert not RoomMember.objects.filter(room=other, role="guest").exists()


def test_guest_is_not_an_account(guest_room):
    body = become_guest(guest_room)
    g = client(body["access"])
    guest = User.objects.get(pk=body["member"]["user"]["id"])
    before = Room.objects.count()
    assert_error(g.post(ROOMS, {"name": "guest room"}, format="json"), 403, "permission_denied")
    assert Room.objects.count() == before
    r = g.patch("/api/v1/users/me", {"email": "g@example.com", "username": "promoted"}, format="json")
    assert_error(r, 403, "permission_denied")
    r = g.post("/api/v1/auth/password/change", {"old_password": "x", "new_password": PASSWORD}, format="json")
    assert_error(r, 403, "permission_denied")
    fresh = User.objects.get(pk=guest.pk)
    assert (fresh.username, fresh.email, fresh.password) == (guest.username, guest.email, guest.password)
    assert not fresh.has_usable_password()
    assert_error(g.post(room_url(guest_room, "invites"), {}, format="json"), 403, "permission_denied")
    assert g.get(ROOMS).status_code == 200  # public reads stay public


def test_guest_permissions_are_capped(alice, guest_room):
    creator = services.actor_for_user(user=alice.user, room=guest_room)
    services.room_update(
        actor=creator, room=guest_room, changes={"settings": {"guest_permissions": 65535}}, origin=TEST_ORIGIN
    )
    g = client(become_guest(guest_room)["access"])
    assert g.get(room_url(guest_room, "members/me")).json()["effective_permissions"] == 515
    r = g.post(
        room_url(guest_room, "movies"), {"name": "m", "url": "https://example.com/m.mp4"}, format="json"
    )
    assert_error(r, 403, "permission_denied")
    assert_error(
        g.put(room_url(guest_room, "playback"), {"playing": True}, format="json"), 403, "permission_denied"
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"settings": {}},
        {"settings": {"allow_guests": True}, "password": ROOM_PASSWORD},
        {"settings": {"allow_guests": True, "join_requires_approval": True}},
    ],
    ids=["no-guests", "password", "approval"],
)
def test_guest_refused(alice, kwargs):
    room = make_room(alice, name="r", **kwargs)
    users = User.objects.count()
    r = client().post(room_url(room, "guest"), {"name": "Gus"}, format="json")
    assert_error(r, 403, "permission_denied")
    assert User.objects.count() == users
    assert RoomMember.objects.filter(room=room).count() == 1
