"""A guest's join is audited with the guest as the actor, and a refused change leaves no event
(docs/security.md, "The audit log")."""

from __future__ import annotations

import pytest

from apps.accounts.tests.factories import TEST_ORIGIN, make_user
from apps.audit.tests.conftest import api_as, events_since, last_seq
from apps.rooms import services
from apps.rooms.tests.conftest import ROOMS


@pytest.mark.django_db
def test_guest_join_is_audited_with_the_guest_as_actor():
    creator, _ = make_user()
    room = services.room_create(
        creator=creator, name="guests", settings={"allow_guests": True}, origin=TEST_ORIGIN
    )
    before = last_seq()
    r = api_as(None, ip="198.51.100.9", ua="guest-browser").post(
        f"{ROOMS}/{room.pk}/guest", {"name": "Visitor"}, format="json"
    )
    assert r.status_code == 200, r.content
    [event] = events_since(before)
    guest_id = r.json()["member"]["user"]["id"]
    assert (event.action, event.user_id, event.resource_type, event.resource_id) == (
        "member.guest_join",
        guest_id,
        "member",
        guest_id,
    )
    assert (event.ip, event.user_agent, event.room_id) == ("198.51.100.9", "guest-browser", room.pk)
    assert event.details == {"name": "Visitor"}


@pytest.mark.django_db
def test_refused_changes_leave_no_event():
    creator, _ = make_user()
    member, member_pair = make_user()
    room = services.room_create(creator=creator, name="r", origin=TEST_ORIGIN)
    services.member_join(user=member, room=room, origin=TEST_ORIGIN)
    mem = api_as(member_pair.access)
    before = last_seq()
    base = f"{ROOMS}/{room.pk}"
    assert mem.delete(f"{base}/movies").status_code == 403
    assert mem.put(f"{base}/playback", {"playing": True}, format="json").status_code == 403
    assert mem.patch(base, {"name": "x"}, format="json").status_code == 403
    assert mem.post(f"{base}/movies", {"name": "x", "url": "javascript:1"}, format="json").status_code == 400
    assert events_since(before) == []
