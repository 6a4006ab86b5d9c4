"""A room's audit log over the API (docs/security.md, "The audit log"): only that room's events,
newest first, paginated, never an IP or user agent; members need VIEW_AUDIT_LOG, site admins
may read any room's, guests none."""

from __future__ import annotations

import pytest

from apps.accounts import services as account_services
from apps.accounts.tests.factories import TEST_ORIGIN, login, make_user
from apps.audit.models import AuditEvent
from apps.audit.tests.conftest import api_as
from apps.core.context import Origin
from apps.permissions.flags import Perm
from apps.rooms import services
from apps.rooms.models import Room, RoomMember
from apps.rooms.tests.conftest import ROOMS

# --- the room's audit log over the API ----------------------------------------------------------------------


@pytest.fixture
def audited_rooms(db):
    creator, creator_pair = make_user()
    member, member_pair = make_user()
    room = services.room_create(creator=creator, name="mine", origin=TEST_ORIGIN)
    other = services.room_create(creator=creator, name="theirs", origin=TEST_ORIGIN)
    services.member_join(user=member, room=room, origin=Origin(ip="192.0.2.44", user_agent="secret-agent"))
    actor = services.actor_for_user(user=creator, room=room)
    other_actor = services.actor_for_user(user=creator, room=other)
    for i in range(3):
        services.playback_update(actor=actor, room=room, position=float(i), origin=Origin(ip="192.0.2.44"))
        services.playback_update(actor=other_actor, room=other, position=float(i), origin=TEST_ORIGIN)
    return room, other, creator, creator_pair, member, member_pair


def test_audit_log_lists_only_this_rooms_events_without_ips(audited_rooms):
    room, other, _creator, creator_pair, member, _member_pair = audited_rooms
    r = api_as(creator_pair.access).get(f"{ROOMS}/{room.pk}/audit-log")
    assert r.status_code == 200, r.content
    body = r.json()
    assert set(body) >= {"count", "next", "previous", "results"}
    expected = list(AuditEvent.objects.filter(room_id=room.pk).order_by("-seq").values_list("seq", flat=True))
    assert body["count"] == len(expected) == 5  # create, join, 3 playback
    assert [e["seq"] for e in body["results"]] == expected  # newest first
    other_seqs = set(AuditEvent.objects.filter(room_id=other.pk).values_list("seq", flat=True))
    assert other_seqs and not other_seqs & {e["seq"] for e in body["results"]}
    for event in body["results"]:
        assert set(event) == {
            "seq",
            "created_at",
            "user",
            "action",
            "resource_type",
            "resource_id",
            "details",
        }
    join = next(e for e in body["results"] if e["action"] == "member.join")
    assert join["user"] == {"id": member.pk, "username": member.username, "guest": False}
    # Where members connect from is not the room admins' business.
    assert "192.0.2.44" not in r.content.decode() and "secret-agent" not in r.content.decode()
    assert "127.0.0.1" not in r.content.decode()


def test_audit_log_is_paginated(audited_rooms):
    room, _other, creator, creator_pair, *_ = audited_rooms
    actor = services.actor_for_user(user=creator, room=room)
    for i in range(55):
        services.playback_update(actor=actor, room=room, position=10.0 + i, origin=TEST_ORIGIN)
    api = api_as(creator_pair.access)
    first = api.get(f"{ROOMS}/{room.pk}/audit-log").json()
    assert first["count"] == 60 and len(first["results"]) == 50
    assert first["previous"] is None and first["next"]
    second = api.get(f"{ROOMS}/{room.pk}/audit-log", {"page": 2}).json()
    assert len(second["results"]) == 10 and second["next"] is None
    seqs = [e["seq"] for e in first["results"] + second["results"]]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == 60
    assert api.get(f"{ROOMS}/{room.pk}/audit-log", {"page": 9}).status_code == 404
    assert api.get(f"{ROOMS}/{room.pk}/audit-log", {"page": "x' OR 1=1"}).status_code == 404


def test_audit_log_needs_view_audit_log(audited_rooms):
    room, _other, creator, _creator_pair, member, member_pair = audited_rooms
    url = f"{ROOMS}/{room.pk}/audit-log"
    mem = api_as(member_pair.access)
    r = mem.get(url)
    assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied"
    _outsider, outsider_pair = make_user()
    r = api_as(outsider_pair.access).get(url)
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_in_room"
    r = api_as(None).get(url)
    assert r.status_code == 401 and r.json()["error"]["code"] == "not_authenticated"

    owner_actor = services.actor_for_user(user=creator, room=room)
    target = RoomMember.objects.get(room=room, user=member)
    services.member_update(
        actor=owner_actor,
        room=room,
        target=target,
        permissions_added=int(Perm.VIEW_AUDIT_LOG),
        origin=TEST_ORIGIN,
    )
    assert mem.get(url).status_code == 200
    # Taking the bit back (from an admin's default set) closes it again.
    target.refresh_from_db()
    services.member_update(
        actor=owner_actor, room=room, target=target, role="admin", permissions_added=0, origin=TEST_ORIGIN
    )
    assert mem.get(url).status_code == 200  # admins hold it by default
    target.refresh_from_db()
    services.member_update(
        actor=owner_actor,
        room=room,
        target=target,
        permissions_removed=int(Perm.VIEW_AUDIT_LOG),
        origin=TEST_ORIGIN,
    )
    assert mem.get(url).status_code == 403


def test_audit_log_for_site_admins_and_not_for_guests(audited_rooms):
    room, *_ = audited_rooms
    url = f"{ROOMS}/{room.pk}/audit-log"
    admin, _ = make_user()
    account_services.user_set_role(actor=None, user=admin, role="admin", origin=TEST_ORIGIN)
    assert api_as(login(admin).access).get(url).status_code == 200
    Room.objects.filter(pk=room.pk).update(allow_guests=True)
    room.refresh_from_db()
    _member, guest_token = services.guest_join(room=room, name="g", origin=TEST_ORIGIN)
    r = api_as(guest_token).get(url)
    assert r.status_code == 403, r.content
