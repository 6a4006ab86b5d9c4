"""Lists keep a constant number of queries as they grow (no N+1): the public room list, a
room's members, its playlist and its audit log. Each list is measured with 2 items and with
20, every item by a different user (so a missing select_related on a user shows)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from apps.accounts.tests.factories import TEST_ORIGIN, make_user
from apps.audit.models import AuditEvent
from apps.core.tests.helpers import client_for
from apps.permissions.flags import Perm
from apps.rooms import services
from apps.rooms.models import Movie, Room, RoomMember

SMALL, LARGE = 2, 20
# Generous, but a per-item query would pass it at LARGE: auth, session, room, actor, count, page.
CEILING = 12


def measure(api: APIClient, url: str) -> tuple[int, dict]:
    api.get(url)  # warm-up: key store, content types and the like load once per process
    with CaptureQueriesContext(connection) as ctx:
        r = api.get(url)
    assert r.status_code == 200, r.content
    return len(ctx.captured_queries), r.json()


class Growing:
    """A room that gains members; each newcomer joins (an audit event by them), adds a movie
    (added_by them), gets a permission override, and creates a public room of their own."""

    def __init__(self) -> None:
        self.creator, pair = make_user()
        self.token = pair.access
        self.room = services.room_create(creator=self.creator, name="big", origin=TEST_ORIGIN)
        self.owner_actor = services.actor_for_user(user=self.creator, room=self.room)

    def grow_to(self, size: int) -> None:
        while RoomMember.objects.filter(room=self.room).count() < size:
            user, _ = make_user()
            services.member_join(user=user, room=self.room, origin=TEST_ORIGIN)
            services.member_update(
                actor=self.owner_actor,
                room=self.room,
                target=RoomMember.objects.get(room=self.room, user=user),
                permissions_added=int(Perm.PLAY_CONTROL),
                origin=TEST_ORIGIN,
            )
            services.movies_add(
                actor=services.actor_for_user(user=user, room=self.room),
                room=self.room,
                items=[{"name": f"by {user.username}", "url": "https://m.example/x.mp4"}],
                origin=TEST_ORIGIN,
            )
            own = services.room_create(creator=user, name=f"{user.username}'s", origin=TEST_ORIGIN)
            services.member_join(user=self.creator, room=own, origin=TEST_ORIGIN)


@pytest.fixture
def growing(db) -> Growing:
    return Growing()


@pytest.mark.parametrize(
    ("label", "path", "size_of"),
    [
        ("rooms", "/api/v1/rooms", lambda g: Room.objects.filter(hidden=False).count()),
        ("members", "/api/v1/rooms/{room}/members", lambda g: RoomMember.objects.filter(room=g.room).count()),
        ("movies", "/api/v1/rooms/{room}/movies", lambda g: Movie.objects.filter(room=g.room).count()),
        (
            "audit-log",
            "/api/v1/rooms/{room}/audit-log",
            lambda g: AuditEvent.objects.filter(room_id=g.room.pk).count(),
        ),
    ],
)
def test_list_query_count_does_not_grow(growing, label, path, size_of):
    url = path.format(room=growing.room.pk)
    api = client_for(growing.token)

    growing.grow_to(SMALL)
    small_count, small_body = measure(api, url)
    small_items = size_of(growing)

    growing.grow_to(LARGE)
    large_count, large_body = measure(api, url)
    large_items = size_of(growing)

    assert large_items >= small_items + LARGE - SMALL, label
    assert len(large_body["results"]) == min(large_items, 50) > len(small_body["results"]), label
    assert large_count == small_count, (
        f"{label}: {small_count} queries for {small_items}, {large_count} for {large_items}"
    )
    assert large_count <= CEILING, label


def test_anonymous_room_list_query_count_does_not_grow(growing):
    api = client_for(None)
    growing.grow_to(SMALL)
    small_count, small_body = measure(api, "/api/v1/rooms")
    growing.grow_to(LARGE)
    large_count, large_body = measure(api, "/api/v1/rooms")
    assert large_body["count"] > small_body["count"]
    assert large_count == small_count
    # member_count is real, from the one annotated query.
    big = next(r for r in large_body["results"] if r["id"] == growing.room.pk)
    assert big["member_count"] == LARGE


def test_guest_member_list_query_count_does_not_grow(db):
    """Guests (their own accounts, display names) in the member list, read by a guest."""
    creator, _ = make_user()
    room = services.room_create(
        creator=creator, name="guests", settings={"allow_guests": True}, origin=TEST_ORIGIN
    )
    _member, token = services.guest_join(room=room, name="reader", origin=TEST_ORIGIN)
    api = client_for(token)
    url = f"/api/v1/rooms/{room.pk}/members"
    counts = []
    for size in (SMALL, LARGE):
        while RoomMember.objects.filter(room=room).count() < size:
            services.guest_join(room=room, name=f"g{RoomMember.objects.count()}", origin=TEST_ORIGIN)
        count, body = measure(api, url)
        assert body["count"] == size
        counts.append(count)
    assert counts[0] == counts[1]
