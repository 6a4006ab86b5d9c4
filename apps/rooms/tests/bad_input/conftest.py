"""The world every bad-input case runs in: a room (guests allowed) with two movies and an
invite, its creator, a member and an outsider; ``snapshot`` is every row a refusal must leave
as it was. The matrices send hundreds of requests, so hashing is cheap, the seed key is parsed
once and the API-wide rate limit is out of the way.

"Nothing changed" compares every row of the rooms tables, the users count and the audit log
before and after. Clients are built with ``raise_request_exception=False`` so a server error
shows as a 500 answer instead of an exception."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import pytest

from apps.accounts import keystore as keystore_module
from apps.accounts.models import User
from apps.accounts.tests.factories import TEST_ORIGIN, make_user
from apps.audit.models import AuditEvent
from apps.rooms import services
from apps.rooms.models import Invite, Movie, PlaybackState, Room, RoomMember

HUGE = "x" * 100_000


@dataclass
class World:
    creator: User
    creator_access: str
    member: User
    outsider_access: str
    room: Room
    movie1: Movie
    movie2: Movie
    invite: str

    def ids(self) -> dict[str, str]:
        return {
            "room": self.room.pk,
            "member": self.member.pk,
            "movie": self.movie1.pk,
            "movie1": self.movie1.pk,
            "movie2": self.movie2.pk,
            "invite": self.invite,
        }

    def access_for(self, who: str) -> str | None:
        return {"creator": self.creator_access, "outsider": self.outsider_access, "anon": None}[who]


_seed_private_key_once = functools.cache(keystore_module._seed_private_key)


@pytest.fixture(autouse=True)
def _fast(settings, monkeypatch):
    """The matrix has hundreds of cases: cheap password hashing (Argon2id is not under test
    here) and the seed key parsed once (same key)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Each test sends dozens of requests from one address; the API-wide limit is not under test.
    settings.RATELIMITS = {**settings.RATELIMITS, "api": "100000/m"}
    monkeypatch.setattr(keystore_module, "_seed_private_key", _seed_private_key_once)


@pytest.fixture
def world() -> World:
    creator, creator_pair = make_user()
    member, _ = make_user()
    _outsider, outsider_pair = make_user()
    room = services.room_create(
        creator=creator, name="Movie night", settings={"allow_guests": True}, origin=TEST_ORIGIN
    )
    services.member_join(user=member, room=room, origin=TEST_ORIGIN)
    actor = services.actor_for_user(user=creator, room=room)
    movie1, movie2 = services.movies_add(
        actor=actor,
        room=room,
        items=[
            {"name": "one", "url": "https://example.com/1.mp4"},
            {"name": "two", "url": "https://example.com/2.mp4"},
        ],
        origin=TEST_ORIGIN,
    )
    invite = services.invite_create(
        actor=actor, room=room, max_uses=None, expires_in=None, origin=TEST_ORIGIN
    )
    return World(
        creator=creator,
        creator_access=creator_pair.access,
        member=member,
        outsider_access=outsider_pair.access,
        room=room,
        movie1=movie1,
        movie2=movie2,
        invite=invite.code,
    )


def snapshot() -> dict[str, Any]:
    return {
        "audit": list(AuditEvent.objects.order_by("seq").values_list("seq", "hash")),
        "users": User.objects.count(),
        "rooms": list(Room.objects.order_by("pk").values()),
        "members": list(RoomMember.objects.order_by("pk").values()),
        "movies": list(Movie.objects.order_by("pk").values()),
        "playback": list(PlaybackState.objects.order_by("pk").values()),
        "invites": list(Invite.objects.order_by("pk").values()),
    }
