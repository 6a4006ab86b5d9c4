"""Rooms that need approval (docs/security.md, "What they may do"): the pending queue, who may
approve (KICK_MEMBERS or BAN_MEMBERS) and who may list pending and banned members."""

from __future__ import annotations

import pytest

from apps.accounts.tests.factories import TEST_ORIGIN
from apps.audit.models import AuditEvent
from apps.core.tests.helpers import assert_error
from apps.permissions.flags import Perm
from apps.rooms import services
from apps.rooms.models import Room
from apps.rooms.tests.conftest import (
    client,
    grant,
    join,
    make_room,
    person,
    room_url,
)
from apps.rooms.tests.membership.conftest import member_row

pytestmark = pytest.mark.django_db

# --- approval ---------------------------------------------------------------------------------------


@pytest.fixture
def approval_room(alice) -> Room:
    return make_room(alice, name="Club", settings={"join_requires_approval": True})


def test_approval_queue(alice, approval_room, bob):
    room = approval_room
    r = bob.client.post(room_url(room, "join"), {}, format="json")
    assert r.status_code == 202, r.content
    assert r.json()["status"] == "pending" and r.json()["effective_permissions"] == 0
    assert bob.client.post(room_url(room, "join"), {}, format="json").status_code == 202
    assert AuditEvent.objects.filter(action="member.request", user_id=bob.user.pk).count() == 1

    # Pending is not in.
    for path in ("playback", "movies", "members"):
        assert_error(bob.client.get(room_url(room, path)), 403, "not_in_room")
    assert_error(
        bob.client.put(room_url(room, "playback"), {"playing": True}, format="json"), 403, "not_in_room"
    )
    assert client().get(room_url(room)).json()["member_count"] == 1

    # A plain member cannot approve.
    carol = person()
    services.member_join(user=carol.user, room=room, origin=TEST_ORIGIN)
    services.member_approve(
        actor=services.actor_for_user(user=alice.user, room=room),
        room=room,
        target=member_row(room, carol),
        origin=TEST_ORIGIN,
    )
    assert_error(
        carol.client.post(room_url(room, f"members/{bob.user.pk}/approve")), 403, "permission_denied"
    )
    assert member_row(room, bob).status == "pending"

    # KICK_MEMBERS is enough.
    grant(room, carol, added=int(Perm.KICK_MEMBERS))
    r = carol.client.post(room_url(room, f"members/{bob.user.pk}/approve"))
    assert r.status_code == 200, r.content
    assert r.json()["status"] == "active"
    assert member_row(room, bob).status == "active"
    event = AuditEvent.objects.get(action="member.approve", user_id=carol.user.pk)
    assert event.resource_id == bob.user.pk
    assert bob.client.get(room_url(room, "playback")).status_code == 200
    # Approving someone who is not waiting is a 400.
    assert_error(carol.client.post(room_url(room, f"members/{bob.user.pk}/approve")), 400, "invalid")


def test_ban_members_holder_approves_too(alice, approval_room, bob):
    room = approval_room
    dave = person()
    join(dave, room)
    services.member_approve(
        actor=services.actor_for_user(user=alice.user, room=room),
        room=room,
        target=member_row(room, dave),
        origin=TEST_ORIGIN,
    )
    grant(room, dave, added=int(Perm.BAN_MEMBERS))
    join(bob, room)
    r = dave.client.post(room_url(room, f"members/{bob.user.pk}/approve"))
    assert r.status_code == 200, r.content
    assert member_row(room, bob).status == "active"


def test_pending_and_banned_lists_need_kick_or_ban(alice, approval_room, bob):
    room = approval_room
    carol = person()
    join(carol, room)
    services.member_approve(
        actor=services.actor_for_user(user=alice.user, room=room),
        room=room,
        target=member_row(room, carol),
        origin=TEST_ORIGIN,
    )
    join(bob, room)  # pending

    # Active list: VIEW_MEMBER_LIST, which members hold by default.
    r = carol.client.get(room_url(room, "members"))
    assert r.status_code == 200
    assert set(r.json()) == {"count", "next", "previous", "results"}
    assert {m["user"]["id"] for m in r.json()["results"]} == {alice.user.pk, carol.user.pk}
    for wanted in ("pending", "banned"):
        assert_error(
            carol.client.get(room_url(room, "members"), {"status": wanted}), 403, "permission_denied"
        )
    assert_error(carol.client.get(room_url(room, "members"), {"status": "everyone"}), 400, "invalid")

    for bit in (Perm.KICK_MEMBERS, Perm.BAN_MEMBERS):
        grant(room, carol, added=int(bit))
        r = carol.client.get(room_url(room, "members"), {"status": "pending"})
        assert r.status_code == 200, r.content
        assert [m["user"]["id"] for m in r.json()["results"]] == [bob.user.pk]
        assert r.json()["results"][0]["status"] == "pending"
    r = alice.client.get(room_url(room, "members"), {"status": "pending"})
    assert [m["user"]["id"] for m in r.json()["results"]] == [bob.user.pk]

    # Without VIEW_MEMBER_LIST, not even the active list.
    grant(room, carol, removed=int(Perm.VIEW_MEMBER_LIST))
    assert_error(carol.client.get(room_url(room, "members")), 403, "permission_denied")
    assert_error(person().client.get(room_url(room, "members")), 403, "not_in_room")
