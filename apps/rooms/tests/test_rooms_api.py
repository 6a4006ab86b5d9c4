"""Rooms over REST (docs/api.md, "REST"; docs/security.md, "What they may do" and "Checks on
what comes in"): create, list with search and pagination, read, update (info and settings need
different bits), delete, the input rules, escaping on output, and closed rooms."""

from __future__ import annotations

import pytest
from django.contrib.auth.hashers import check_password

from apps.accounts.models import Role
from apps.accounts.tests.factories import TEST_ORIGIN
from apps.audit.models import AuditEvent
from apps.core.errors import PermissionDenied
from apps.core.tests.helpers import assert_error
from apps.permissions.flags import ALL_BITS, Perm
from apps.rooms import services
from apps.rooms.models import Invite, Movie, PlaybackState, Room, RoomMember
from apps.rooms.tests.conftest import Person, client, grant, join, make_room, person

pytestmark = pytest.mark.django_db

ROOMS = "/api/v1/rooms"


# --- helpers -------------------------------------------------------------------------------------


def close(room: Room) -> Room:
    actor = services.actor_for_user(user=room.creator, room=room)
    return services.room_set_closed(actor=actor, room=room, closed=True, origin=TEST_ORIGIN)


def field_error(response, *path: str):
    """400 ``invalid`` with ``details`` naming the field (nested for settings): messages as a
    list of strings, or, for a nested object that was not an object, its own error map."""
    details = assert_error(response, 400, "invalid")["details"]
    for key in path:
        assert key in details, (path, details)
        details = details[key]
    if isinstance(details, dict):
        details = [m for messages in details.values() for m in messages]
    assert isinstance(details, list) and details and all(isinstance(m, str) and m for m in details)
    return details


def listed_names(response) -> list[str]:
    assert response.status_code == 200, response.content[:300]
    return [r["name"] for r in response.json()["results"]]


@pytest.fixture
def alice() -> Person:
    return person()


@pytest.fixture
def bob() -> Person:
    return person()


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


# --- input rules -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 51}, "name"),
        ({"name": 5}, "name"),
        ({"name": None}, "name"),
        ({"name": "ok", "description": "d" * 501}, "description"),
        ({"name": "ok", "description": 5}, "description"),
        ({"name": "ok", "password": "12345"}, "password"),
        ({"name": "ok", "password": "p" * 33}, "password"),
        ({"name": "ok", "password": 123456}, "password"),
        ({"name": "ok", "settings": "hidden"}, "settings"),
        ({"name": "ok", "settings": [1]}, "settings"),
    ],
)
def test_create_validation(alice, body, field):
    field_error(alice.client.post(ROOMS, body, format="json"), field)
    assert not Room.objects.exists()


@pytest.mark.parametrize("name", ["x", "x" * 50, "名" * 50, "🎬" * 50])
def test_name_boundaries_accepted(alice, name):
    r = alice.client.post(ROOMS, {"name": name, "description": "d" * 500}, format="json")
    assert r.status_code == 201, r.content
    assert Room.objects.get().name == name


@pytest.mark.parametrize("password", ["123456", "p" * 32, "  spaces  "])
def test_password_is_stored_hashed(alice, password):
    r = alice.client.post(ROOMS, {"name": "locked", "password": password}, format="json")
    assert r.status_code == 201, r.content
    assert r.json()["has_password"] is True
    assert "password" not in r.json()
    room = Room.objects.get()
    assert room.password != password and password not in room.password
    assert room.password.startswith("argon2")
    assert check_password(password, room.password)
    assert not check_password(password.strip() + "x", room.password)


def test_unknown_setting_is_refused_by_name(alice):
    r = alice.client.post(ROOMS, {"name": "x", "settings": {"hidden": True, "bogus_key": 1}}, format="json")
    field_error(r, "settings", "bogus_key")
    assert "bogus_key" in r.json()["error"]["message"]
    assert not Room.objects.exists()

    room = make_room(alice)
    r = alice.client.patch(f"{ROOMS}/{room.pk}", {"settings": {"is_public": True}}, format="json")
    field_error(r, "settings", "is_public")
    r = alice.client.patch(f"{ROOMS}/{room.pk}", {"creator": "someone"}, format="json")
    field_error(r, "creator")


@pytest.mark.parametrize("field", ["member_permissions", "admin_permissions", "guest_permissions"])
@pytest.mark.parametrize(
    "value", [True, False, "519", "", -1, ALL_BITS + 1, 1 << 63, 1 << 64, 1.5, 519.0, None, [1], {"a": 1}]
)
def test_masks_must_be_ints_in_range(alice, field, value):
    r = alice.client.post(ROOMS, {"name": "x", "settings": {field: value}}, format="json")
    field_error(r, "settings", field)
    assert not Room.objects.exists()

    room = make_room(alice)
    r = alice.client.patch(f"{ROOMS}/{room.pk}", {"settings": {field: value}}, format="json")
    field_error(r, "settings", field)
    room.refresh_from_db()
    assert (room.member_permissions, room.admin_permissions, room.guest_permissions) == (519, 49151, 515)


@pytest.mark.parametrize("field", ["hidden", "allow_guests", "join_requires_approval"])
@pytest.mark.parametrize("value", ["yes", "true", 1, 0, None, [], {}])
def test_boolean_settings_must_be_booleans(alice, field, value):
    r = alice.client.post(ROOMS, {"name": "x", "settings": {field: value}}, format="json")
    field_error(r, "settings", field)
    assert not Room.objects.exists()


@pytest.mark.parametrize("value", [0, ALL_BITS])
def test_mask_edges_are_accepted(alice, value):
    r = alice.client.post(ROOMS, {"name": "x", "settings": {"member_permissions": value}}, format="json")
    assert r.status_code == 201, r.content
    assert Room.objects.get().member_permissions == value


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"name": ""}, ("name",)),
        ({"name": "x" * 51}, ("name",)),
        ({"description": "d" * 501}, ("description",)),
        ({"password": "short"}, ("password",)),
        ({"password": "p" * 33}, ("password",)),
        ({"settings": {"guest_permissions": -1}}, ("settings", "guest_permissions")),
        ({"settings": {"hidden": "no"}}, ("settings", "hidden")),
    ],
)
def test_update_validation(alice, body, path):
    room = make_room(alice)
    field_error(alice.client.patch(f"{ROOMS}/{room.pk}", body, format="json"), *path)
    room.refresh_from_db()
    assert (room.name, room.description, room.password, room.hidden) == ("Movie night", "", "", False)
    assert not AuditEvent.objects.filter(action__in=["room.update", "room.settings_change"]).exists()


# --- escaping ---------------------------------------------------------------------------------------------


def test_name_and_description_are_escaped_on_output(alice):
    raw_name = '<b>Tom & "Jerry" \'s</b>'
    raw_desc = "<script>alert('x')</script> & more"
    r = alice.client.post(ROOMS, {"name": raw_name, "description": raw_desc}, format="json")
    assert r.status_code == 201, r.content
    escaped_name = "&lt;b&gt;Tom &amp; &quot;Jerry&quot; &#x27;s&lt;/b&gt;"
    escaped_desc = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more"
    assert r.json()["name"] == escaped_name
    assert r.json()["description"] == escaped_desc
    room = Room.objects.get()
    # Stored as typed; escaped when it leaves.
    assert room.name == raw_name and room.description == raw_desc

    assert client().get(f"{ROOMS}/{room.pk}").json()["name"] == escaped_name
    [item] = client().get(ROOMS).json()["results"]
    assert (item["name"], item["description"]) == (escaped_name, escaped_desc)
    r = alice.client.patch(f"{ROOMS}/{room.pk}", {"name": "a<b"}, format="json")
    assert r.json()["name"] == "a&lt;b"
    assert "<" not in client().get(ROOMS).content.decode()


# --- closed rooms -----------------------------------------------------------------------------------------


def test_closed_room_refuses_joins_and_writes(alice, bob):
    room = make_room(alice, settings={"allow_guests": True})
    member = person()
    join(member, room)
    movie = services.movies_add(
        actor=services.actor_for_user(user=alice.user, room=room),
        room=room,
        items=[{"name": "m", "url": "https://example.com/a.mp4"}],
        origin=TEST_ORIGIN,
    )[0]
    close(room)
    assert AuditEvent.objects.filter(action="room.close", room_id=room.pk).exists()
    before = (AuditEvent.objects.count(), RoomMember.objects.count(), Movie.objects.count())

    base = f"{ROOMS}/{room.pk}"
    c = alice.client
    attempts = [
        (bob.client.post(f"{base}/join", {}, format="json"), "join"),
        (client().post(f"{base}/guest", {"name": "g"}, format="json"), "guest"),
        (c.patch(base, {"name": "x"}, format="json"), "rename"),
        (c.patch(base, {"settings": {"hidden": True}}, format="json"), "settings"),
        (c.post(f"{base}/invites", {}, format="json"), "invite"),
        (c.post(f"{base}/movies", {"name": "n", "url": "https://example.com/b.mp4"}, format="json"), "add"),
        (c.patch(f"{base}/movies/{movie.pk}", {"name": "x"}, format="json"), "edit"),
        (c.delete(f"{base}/movies/{movie.pk}"), "delete movie"),
        (c.delete(f"{base}/movies"), "clear"),
        (c.post(f"{base}/movies/reorder", {"order": [movie.pk]}, format="json"), "reorder"),
        (c.put(f"{base}/playback", {"playing": True}, format="json"), "playback"),
        (
            c.patch(f"{base}/members/{member.user.pk}", {"permissions_added": 64}, format="json"),
            "member update",
        ),
    ]
    for response, what in attempts:
        assert response.status_code == 403, (what, response.content)
        assert response.json()["error"]["code"] == "room_closed", what
    assert (AuditEvent.objects.count(), RoomMember.objects.count(), Movie.objects.count()) == before
    room.refresh_from_db()
    assert room.name == "Movie night" and not room.hidden

    # Still readable, marked closed, not listed.
    r = client().get(base)
    assert r.status_code == 200 and r.json()["closed"] is True
    assert client().get(ROOMS).json()["count"] == 0

    # Reopened, it works again.
    actor = services.actor_for_user(user=alice.user, room=room)
    services.room_set_closed(actor=actor, room=room, closed=False, origin=TEST_ORIGIN)
    assert bob.client.post(f"{base}/join", {}, format="json").status_code == 201
    assert client().get(ROOMS).json()["count"] == 1


def test_only_creator_or_site_admin_closes(alice, bob):
    room = make_room(alice)
    join(bob, room)
    grant(room, bob, role="admin", added=int(Perm.MANAGE_ADMINS))
    with pytest.raises(PermissionDenied):
        services.room_set_closed(
            actor=services.actor_for_user(user=bob.user, room=room),
            room=room,
            closed=True,
            origin=TEST_ORIGIN,
        )
    room.refresh_from_db()
    assert not room.is_closed
    mod = person(Role.ADMIN)
    services.room_set_closed(
        actor=services.actor_for_user(user=mod.user, room=room), room=room, closed=True, origin=TEST_ORIGIN
    )
    room.refresh_from_db()
    assert room.is_closed
