"""Rooms over REST (docs/api.md, "REST"): create (the caller becomes the creator, the default
settings), the public list with search and pagination, and reading one room."""

from __future__ import annotations

import pytest

from apps.audit.models import AuditEvent
from apps.core.tests.helpers import assert_error
from apps.permissions.flags import ALL_BITS
from apps.rooms.models import PlaybackState, Room, RoomMember
from apps.rooms.tests.conftest import ROOMS, client, join, make_room
from apps.rooms.tests.rooms_api.conftest import close

pytestmark = pytest.mark.django_db


def listed_names(response) -> list[str]:
    assert response.status_code == 200, response.content[:300]
    return [r["name"] for r in response.json()["results"]]


# --- create ------------------------------------------------------------------------------------------


def test_create_room_caller_is_creator_with_default_settings(alice):
    r = alice.client.post(ROOMS, {"name": "Movie night", "description": "Fridays"}, format="json")
    assert r.status_code == 201, r.content
    body = r.json()
    assert set(body) >= {
        "id",
        "name",
        "description",
        "creator",
        "has_password",
        "member_count",
        "created_at",
        "settings",
    }
    assert body["name"] == "Movie night" and body["description"] == "Fridays"
    assert body["creator"] == {"id": alice.user.pk, "username": alice.user.username, "guest": False}
    assert body["member_count"] == 1
    assert body["has_password"] is False
    # The specified defaults, as numbers: the bit layout is a contract.
    assert body["settings"] == {
        "hidden": False,
        "allow_guests": False,
        "join_requires_approval": False,
        "member_permissions": 519,
        "admin_permissions": 49151,
        "guest_permissions": 515,
    }
    room = Room.objects.get(pk=body["id"])
    assert room.creator_id == alice.user.pk
    member = RoomMember.objects.get(room=room)
    assert (member.user_id, member.role, member.status) == (alice.user.pk, "creator", "active")
    assert PlaybackState.objects.filter(room=room).exists()
    event = AuditEvent.objects.get(action="room.create")
    assert event.user_id == alice.user.pk and event.room_id == room.pk

    me = alice.client.get(f"{ROOMS}/{room.pk}/members/me").json()
    assert me["role"] == "creator" and me["effective_permissions"] == ALL_BITS


def test_create_room_with_settings(alice):
    settings = {
        "hidden": True,
        "allow_guests": True,
        "join_requires_approval": True,
        "member_permissions": 3,
        "admin_permissions": 1023,
        "guest_permissions": 1,
    }
    r = alice.client.post(ROOMS, {"name": "Secret", "settings": settings}, format="json")
    assert r.status_code == 201, r.content
    assert r.json()["settings"] == settings
    room = Room.objects.get(pk=r.json()["id"])
    assert (room.hidden, room.allow_guests, room.join_requires_approval) == (True, True, True)
    assert (room.member_permissions, room.admin_permissions, room.guest_permissions) == (3, 1023, 1)


def test_create_room_needs_a_registered_account():
    r = client().post(ROOMS, {"name": "x"}, format="json")
    assert_error(r, 401, "not_authenticated")
    r = client("not-a-token").post(ROOMS, {"name": "x"}, format="json")
    assert r.status_code == 401
    assert not Room.objects.exists()


def test_room_ids_are_opaque(alice):
    ids = {make_room(alice, name=f"r{i}").pk for i in range(3)}
    assert len(ids) == 3
    assert all(not i.isdigit() and len(i) >= 16 for i in ids)


# --- list ------------------------------------------------------------------------------------------


def test_list_public_rooms_with_search(alice, bob):
    make_room(alice, name="Movie night", description="Popcorn")
    make_room(bob, name="Anime club", description="Weekly movie marathon")
    make_room(alice, name="Movie secret", settings={"hidden": True})
    close(make_room(alice, name="Movie closed"))
    make_room(bob, name="Music")

    anonymous = client()
    r = anonymous.get(ROOMS)
    assert set(r.json()) == {"count", "next", "previous", "results"}
    assert sorted(listed_names(r)) == ["Anime club", "Movie night", "Music"]
    assert r.json()["count"] == 3

    # Name or description, case-insensitive; hidden and closed never listed.
    assert sorted(listed_names(anonymous.get(ROOMS, {"search": "MOVIE"}))) == ["Anime club", "Movie night"]
    assert listed_names(anonymous.get(ROOMS, {"search": "popcorn"})) == ["Movie night"]
    assert listed_names(anonymous.get(ROOMS, {"search": "secret"})) == []
    assert listed_names(anonymous.get(ROOMS, {"search": "closed"})) == []
    # Logged in users (even the creator) see the same public list.
    assert listed_names(alice.client.get(ROOMS, {"search": "secret"})) == []
    # Wildcards are literal text, not patterns.
    assert listed_names(anonymous.get(ROOMS, {"search": "%"})) == []
    assert listed_names(anonymous.get(ROOMS, {"search": "_"})) == []


def test_list_items_have_the_room_shape(alice, bob):
    room = make_room(alice)
    join(bob, room)
    [item] = client().get(ROOMS).json()["results"]
    assert item["id"] == room.pk
    assert item["member_count"] == 2
    assert item["creator"] == {"id": alice.user.pk, "username": alice.user.username, "guest": False}
    assert item["settings"]["member_permissions"] == 519


def test_list_is_paginated(alice):
    for i in range(51):
        make_room(alice, name=f"room {i:02d}")
    r = client().get(ROOMS)
    body = r.json()
    assert body["count"] == 51
    assert len(body["results"]) == 50
    assert body["previous"] is None
    assert body["next"] and "page=2" in body["next"]
    # Newest first.
    assert body["results"][0]["name"] == "room 50"

    body2 = client().get(ROOMS, {"page": 2}).json()
    assert [x["name"] for x in body2["results"]] == ["room 00"]
    assert body2["next"] is None and body2["previous"]
    assert_error(client().get(ROOMS, {"page": 3}), 404, "not_found")
    assert_error(client().get(ROOMS, {"page": "x"}), 404, "not_found")


# --- read ------------------------------------------------------------------------------------------------


def test_read_room(alice, bob):
    room = make_room(alice, description="hello")
    join(bob, room)
    for c in (client(), bob.client, alice.client):
        r = c.get(f"{ROOMS}/{room.pk}")
        assert r.status_code == 200, r.content
        body = r.json()
        assert body["id"] == room.pk and body["member_count"] == 2 and body["description"] == "hello"
        assert "password" not in body


def test_read_unknown_room_is_404(alice):
    assert_error(client().get(f"{ROOMS}/nosuchroom"), 404, "not_found")
    assert_error(alice.client.get(f"{ROOMS}/{'x' * 40}"), 404, "not_found")
