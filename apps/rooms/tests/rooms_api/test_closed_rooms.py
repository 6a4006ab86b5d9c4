"""Closed rooms (docs/api.md, "REST"): no joins and no writes, still readable, not listed, and
only the creator or a site admin closes one."""

from __future__ import annotations

import pytest

from apps.accounts.models import Role
from apps.accounts.tests.factories import TEST_ORIGIN
from apps.audit.models import AuditEvent
from apps.core.errors import PermissionDenied
from apps.permissions.flags import Perm
from apps.rooms import services
from apps.rooms.models import Movie, RoomMember
from apps.rooms.tests.conftest import ROOMS, client, grant, join, make_room, person
from apps.rooms.tests.rooms_api.conftest import close

pytestmark = pytest.mark.django_db

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
