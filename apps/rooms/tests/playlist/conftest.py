"""The playlist tests' world: a room (guests allowed) with its creator, a member and an
outsider, each with an API client, and helpers to add movies, change bits and play."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from rest_framework.test import APIClient

from apps.accounts.models import User
from apps.accounts.tests.factories import TEST_ORIGIN, make_user
from apps.core.tests.helpers import client_for
from apps.rooms import services
from apps.rooms.models import Movie, Room, RoomMember


@dataclass
class World:
    room: Room
    creator: User
    creator_api: APIClient
    member: User
    member_api: APIClient
    outsider_api: APIClient

    @property
    def movies_url(self) -> str:
        return f"/api/v1/rooms/{self.room.pk}/movies"

    def movie_url(self, movie_id: str) -> str:
        return f"{self.movies_url}/{movie_id}"

    @property
    def reorder_url(self) -> str:
        return f"{self.movies_url}/reorder"

    @property
    def current_url(self) -> str:
        return f"{self.movies_url}/current"

    def version(self) -> int:
        return Room.objects.values_list("playlist_version", flat=True).get(pk=self.room.pk)

    def positions(self) -> list[tuple[str, int]]:
        return list(Movie.objects.filter(room=self.room).order_by("position").values_list("id", "position"))

    def add(self, *names: str, by: User | None = None) -> list[Movie]:
        actor = services.actor_for_user(user=by or self.creator, room=self.room)
        items = [{"name": n, "url": f"https://media.example/{n}.mp4"} for n in names]
        return services.movies_add(actor=actor, room=self.room, items=items, origin=TEST_ORIGIN)

    def set_bits(self, user: User, *, added: int = 0, removed: int = 0) -> None:
        """The creator changes ``user``'s overrides through the service (its rules apply)."""
        target = RoomMember.objects.get(room=self.room, user=user)
        services.member_update(
            actor=services.actor_for_user(user=self.creator, room=self.room),
            room=self.room,
            target=target,
            permissions_added=added,
            permissions_removed=removed,
            origin=TEST_ORIGIN,
        )

    def play(self, movie: Movie) -> None:
        services.playback_update(
            actor=services.actor_for_user(user=self.creator, room=self.room),
            room=self.room,
            movie_id=movie.pk,
            playing=True,
            origin=TEST_ORIGIN,
        )


@pytest.fixture
def world(db) -> World:
    creator, creator_pair = make_user()
    member, member_pair = make_user()
    _outsider, outsider_pair = make_user()
    room = services.room_create(
        creator=creator, name="playlist", settings={"allow_guests": True}, origin=TEST_ORIGIN
    )
    services.member_join(user=member, room=room, origin=TEST_ORIGIN)
    return World(
        room=room,
        creator=creator,
        creator_api=client_for(creator_pair.access),
        member=member,
        member_api=client_for(member_pair.access),
        outsider_api=client_for(outsider_pair.access),
    )


def movie_body(name: str = "Movie", **extra) -> dict:
    return {"name": name, "url": f"https://media.example/{name}.mp4", **extra}


def snapshot(world: World):
    """The room's movies and its playlist version, to compare before and after."""
    return (
        list(
            Movie.objects.filter(room=world.room)
            .order_by("pk")
            .values_list("pk", "name", "url", "type", "position")
        ),
        world.version(),
    )
