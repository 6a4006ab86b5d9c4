"""The playback tests' world: a room with two movies, its creator, a member and an outsider,
each with an API client; ``put`` sends a change to the room's playback."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from rest_framework.test import APIClient

from apps.accounts.models import User
from apps.accounts.tests.factories import TEST_ORIGIN, make_user
from apps.core.tests.helpers import client_for
from apps.rooms import services
from apps.rooms.models import Movie, PlaybackState, Room, RoomMember


@dataclass
class World:
    room: Room
    creator: User
    creator_api: APIClient
    creator_token: str
    member: User
    member_api: APIClient
    outsider_api: APIClient
    movies: list[Movie]

    @property
    def url(self) -> str:
        return f"/api/v1/rooms/{self.room.pk}/playback"

    def state(self) -> PlaybackState:
        return PlaybackState.objects.get(room=self.room)

    def grant(self, user: User, bits: int) -> None:
        target = RoomMember.objects.get(room=self.room, user=user)
        services.member_update(
            actor=services.actor_for_user(user=self.creator, room=self.room),
            room=self.room,
            target=target,
            permissions_added=target.permissions_added | bits,
            origin=TEST_ORIGIN,
        )


def make_world(*, with_guests: bool = True) -> World:
    creator, creator_pair = make_user()
    member, member_pair = make_user()
    _outsider, outsider_pair = make_user()
    room = services.room_create(
        creator=creator, name="playback", settings={"allow_guests": with_guests}, origin=TEST_ORIGIN
    )
    services.member_join(user=member, room=room, origin=TEST_ORIGIN)
    movies = services.movies_add(
        actor=services.actor_for_user(user=creator, room=room),
        room=room,
        items=[{"name": n, "url": f"https://media.example/{n}.mp4"} for n in ("a", "b")],
        origin=TEST_ORIGIN,
    )
    return World(
        room=room,
        creator=creator,
        creator_api=client_for(creator_pair.access),
        creator_token=creator_pair.access,
        member=member,
        member_api=client_for(member_pair.access),
        outsider_api=client_for(outsider_pair.access),
        movies=movies,
    )


@pytest.fixture
def world(db) -> World:
    return make_world()


def put(api: APIClient, world: World, body) -> object:
    return api.put(world.url, body, format="json")


def put_raw(api: APIClient, world: World, raw: str) -> object:
    return api.put(world.url, raw, content_type="application/json")


STATE_KEYS = {
    "movie_id",
    "playing",
    "position",
    "rate",
    "updated_at",
    "version",
    "server_time",
    "server_time_ms",
}
