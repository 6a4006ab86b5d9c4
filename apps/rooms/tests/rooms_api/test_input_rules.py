"""What a room body may hold (docs/security.md, "Checks on what comes in"): names, descriptions,
passwords and settings refused by field, passwords stored hashed, and names and descriptions
escaped on output."""

from __future__ import annotations

import pytest
from django.contrib.auth.hashers import check_password

from apps.audit.models import AuditEvent
from apps.core.tests.helpers import assert_error
from apps.permissions.flags import ALL_BITS
from apps.rooms.models import Room
from apps.rooms.tests.conftest import ROOMS, client, make_room

pytestmark = pytest.mark.django_db


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
