"""Shared fixtures for the rooms tests.

``room_world`` builds one room with every kind of actor the permission rules know about, each
with a token and an API client, plus the targets that moderation endpoints need (a plain member
to kick/ban/change, a member banned in the room to unban, a member waiting for approval) and a
two-movie playlist. Everything is built through the services, so the rows are what the real
rules produce.

Fixtures: ``room_world`` (fresh per test), ``shared_room_world`` (built once per module, every
test's changes rolled back; much faster when many tests need the same world), and the raw
``module_room_world``. Actors are ``world.actors[name]`` (or ``world.member``, ``world.admin``...)
with ``.user``, ``.token``, ``.client``, ``.member``; ``world.target`` is a plain member to act on.
For tests that build their own rooms: ``alice`` and ``bob``, a new ``Person`` each (``person``,
``make_room``, ``join``, ``grant``; ``ROOM_PASSWORD`` for password rooms).

Import the helpers freely from other test modules::

    from apps.rooms.tests.conftest import ROOMS, build_world, db_state

The API helpers they use with it (``client_for``, ``error_code``, ``assert_error``) are in
apps.core.tests.helpers.

Speed: registering a user costs one Argon2id hash (~25 ms with the production parameters). The
world registers a dozen users, so it is built with a cheap Argon2id (same algorithm and
encoding, tiny memory/time cost): the hashes still verify with the real hasher afterwards (and
would be upgraded on a login), and nothing here tests password hashing.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.conf import settings
from django.db import transaction
from django.test import override_settings
from rest_framework.test import APIClient

from apps.accounts import services as account_services
from apps.accounts.hashers import Argon2idHasher
from apps.accounts.models import AuthSession, Role, User
from apps.accounts.tests.factories import TEST_ORIGIN, make_user
from apps.audit.models import AuditEvent
from apps.core import ratelimit, realtime
from apps.core.tests.helpers import client_for
from apps.permissions.flags import Perm
from apps.rooms import consumers, dbthreads, greeting, services
from apps.rooms.hub import RoomHub
from apps.rooms.models import Invite, Movie, PlaybackState, Room, RoomMember
from apps.rooms.moderation import word_filter

ROOMS = "/api/v1/rooms"
ROOM_PASSWORD = "open-sesame"  # the password of the password rooms the tests make


class CheapArgon2idHasher(Argon2idHasher):
    """Argon2id with a trivial cost, for building test users quickly."""

    memory_cost = 8
    time_cost = 1
    parallelism = 1


@contextmanager
def cheap_passwords() -> Iterator[None]:
    """Hash passwords cheaply inside the block (Argon2id still; the real hasher verifies them)."""
    hashers = [f"{__name__}.CheapArgon2idHasher", *settings.PASSWORD_HASHERS]
    with override_settings(PASSWORD_HASHERS=hashers):
        yield


# --- people: a user with an access token; rooms made and joined through the services ---------------


@dataclass
class Person:
    user: User
    access: str

    @property
    def client(self) -> APIClient:
        return client(self.access)


def client(access: str | None = None, **defaults: Any) -> APIClient:
    """An API client for ``access`` that hands a server error back as a 500 response."""
    return client_for(access, raise_request_exception=False, **defaults)


def person(role: str | None = None) -> Person:
    """A new registered user (with the site ``role`` if given) and an access token."""
    user, pair = make_user()
    if role is not None:
        User.objects.filter(pk=user.pk).update(role=role)
        user.refresh_from_db()
    return Person(user=user, access=pair.access)


def make_room(owner: Person, name: str = "Movie night", **kwargs: Any) -> Room:
    return services.room_create(creator=owner.user, name=name, origin=TEST_ORIGIN, **kwargs)


def join(p: Person, room: Room, **kwargs: Any) -> RoomMember:
    return services.member_join(user=p.user, room=room, origin=TEST_ORIGIN, **kwargs)[0]


def grant(room: Room, p: Person, *, added: int = 0, removed: int = 0, role: str | None = None) -> None:
    """The creator changes a member's overrides (through the service, as the API would)."""
    creator = services.actor_for_user(user=room.creator, room=room)
    target = RoomMember.objects.get(room=room, user=p.user)
    services.member_update(
        actor=creator,
        room=room,
        target=target,
        role=role,
        permissions_added=added,
        permissions_removed=removed,
        origin=TEST_ORIGIN,
    )


@pytest.fixture
def alice() -> Person:
    return person()


@pytest.fixture
def bob() -> Person:
    return person()


# --- urls, snapshots and the room world ------------------------------------------------------------


def room_url(room_or_id, suffix: str = "") -> str:
    room_id = getattr(room_or_id, "pk", room_or_id)
    return f"{ROOMS}/{room_id}{'/' + suffix if suffix else ''}"


@contextmanager
def rolled_back() -> Iterator[None]:
    """Run the block in a savepoint and roll it back, whatever happened in it."""
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def db_state() -> dict[str, Any]:
    """Everything a room endpoint could change, as comparable values. Two equal snapshots mean
    nothing room-related, no account, session or audit row changed in between."""
    return {
        "audit": list(AuditEvent.objects.order_by("seq").values_list("seq", "action")),
        "rooms": list(
            Room.objects.order_by("pk").values_list(
                "pk",
                "name",
                "description",
                "password",
                "hidden",
                "allow_guests",
                "join_requires_approval",
                "member_permissions",
                "admin_permissions",
                "guest_permissions",
                "playlist_version",
                "closed_at",
            )
        ),
        "members": list(
            RoomMember.objects.order_by("pk").values_list(
                "pk",
                "room_id",
                "user_id",
                "role",
                "status",
                "permissions_added",
                "permissions_removed",
                "ban_reason",
            )
        ),
        "movies": list(
            Movie.objects.order_by("pk").values_list("pk", "room_id", "name", "url", "type", "position")
        ),
        "playback": list(
            PlaybackState.objects.order_by("pk").values_list(
                "pk", "movie_id", "playing", "position", "rate", "version"
            )
        ),
        "invites": list(Invite.objects.order_by("pk").values_list("pk", "room_id", "uses")),
        "users": list(User.objects.order_by("pk").values_list("pk", "role", "is_guest")),
        "sessions": list(AuthSession.objects.order_by("pk").values_list("pk", "revoked_at")),
    }


@dataclass
class Actor:
    """One caller: ``user`` is None for anonymous; ``member`` their row in the world's room."""

    name: str
    user: User | None
    token: str | None
    member: RoomMember | None = None

    @property
    def client(self) -> APIClient:
        return client_for(self.token)

    @property
    def id(self) -> str | None:
        return self.user.pk if self.user is not None else None


# The callers of the permission matrix, in table column order.
ACTOR_NAMES = (
    "anon",  # no token
    "banned",  # site-banned account (was a member of the room before the ban)
    "outsider",  # registered, not a member
    "guest",  # guest token of this room
    "foreign_guest",  # guest token of another room
    "room_banned",  # banned from this room (the world's banned_target)
    "pending",  # waiting for approval (the world's pending_target)
    "member",  # the room's default member mask
    "member_plus",  # member with PLAY_CONTROL added
    "member_minus",  # member with ADD_MOVIE removed
    "admin",  # room admin with the room's default admin mask
    "creator",
    "site_admin",  # User.role admin, not a member
)


@dataclass
class RoomWorld:
    room: Room
    other_room: Room
    actors: dict[str, Actor]
    target: Actor  # a plain active member to kick, ban or change
    movies: list[Movie] = field(default_factory=list)
    snapshot: dict[str, Any] | None = None  # db_state() right after building (module world only)

    def __getattr__(self, name: str) -> Actor:
        actors = self.__dict__.get("actors") or {}
        if name in actors:
            return actors[name]
        raise AttributeError(name)

    @property
    def banned_target(self) -> Actor:
        return self.actors["room_banned"]

    @property
    def pending_target(self) -> Actor:
        return self.actors["pending"]

    def actor(self, name: str) -> Actor:
        """An actor by column name, or ``"target"``."""
        return self.target if name == "target" else self.actors[name]

    def client(self, name: str) -> APIClient:
        return self.actor(name).client

    def url(self, suffix: str = "") -> str:
        return room_url(self.room, suffix)

    def refresh(self) -> None:
        """Reload the room and the member rows (after requests changed them)."""
        self.room.refresh_from_db()
        for actor in [*self.actors.values(), self.target]:
            if actor.member is not None:
                actor.member = RoomMember.objects.filter(pk=actor.member.pk).first()

    def effective_permissions(self, name: str) -> int:
        """``name``'s effective permissions in the room, as ``members/me`` answers them."""
        response = self.client(name).get(self.url("members/me"))
        assert response.status_code == 200, response.content
        return response.json()["effective_permissions"]

    def actor_of(self, name: str):
        """The rules' RoomActor for ``name`` in the world's room (as the services see it)."""
        return services.actor_for_user(user=self.actor(name).user, room=self.room)


_names = itertools.count()


def _register(name: str) -> tuple[User, str]:
    user, pair = make_user(f"{name.replace('_', '')}{next(_names)}")
    return user, pair.access


def _world_rooms(creator: User, defaults: dict[str, int | None]) -> tuple[Room, Room]:
    """The world's room (guests allowed, no approval, the given default masks) and another room."""
    room_settings: dict[str, Any] = {"allow_guests": True, "join_requires_approval": False}
    room_settings.update({key: value for key, value in defaults.items() if value is not None})
    room = services.room_create(creator=creator, name="World", settings=room_settings, origin=TEST_ORIGIN)
    other_room = services.room_create(
        creator=creator, name="Other", settings={"allow_guests": True}, origin=TEST_ORIGIN
    )
    return room, other_room


def _joined(room: Room, as_creator, name: str, **change) -> Actor:
    """A new user who joined ``room``, their membership then changed by the creator if asked."""
    user, token = _register(name)
    member, _ = services.member_join(user=user, room=room, origin=TEST_ORIGIN)
    if change:
        member = services.member_update(
            actor=as_creator, room=room, target=member, origin=TEST_ORIGIN, **change
        )
    return Actor(name, user, token, member)


def _members(room: Room, as_creator) -> dict[str, Actor]:
    """The actors with a member row: the active ones, the room-banned one and the site-banned one
    (plus ``target``, the world's plain member to act on)."""
    actors = {
        "admin": _joined(room, as_creator, "admin", role="admin"),
        "member": _joined(room, as_creator, "member"),
        "member_plus": _joined(room, as_creator, "member_plus", permissions_added=int(Perm.PLAY_CONTROL)),
        "member_minus": _joined(room, as_creator, "member_minus", permissions_removed=int(Perm.ADD_MOVIE)),
        "target": _joined(room, as_creator, "target"),
    }
    room_banned = _joined(room, as_creator, "room_banned")
    room_banned.member = services.member_ban(
        actor=as_creator, room=room, target=room_banned.member, reason="test", origin=TEST_ORIGIN
    )
    actors["room_banned"] = room_banned
    banned = _joined(room, as_creator, "banned")
    account_services.user_ban(actor=None, user=banned.user, reason="test", origin=TEST_ORIGIN)
    actors["banned"] = banned
    return actors


def _set_approval(room: Room, as_creator, required: bool) -> None:
    services.room_update(
        actor=as_creator,
        room=room,
        changes={"settings": {"join_requires_approval": required}},
        origin=TEST_ORIGIN,
    )
    room.refresh_from_db()


def _pending(room: Room, as_creator) -> Actor:
    """A pending member: approval on, join, approval off again (guests cannot join approval rooms)."""
    _set_approval(room, as_creator, True)
    pending_user, pending_token = _register("pending")
    pending_member, _ = services.member_join(user=pending_user, room=room, origin=TEST_ORIGIN)
    assert pending_member.status == "pending"
    _set_approval(room, as_creator, False)
    return Actor("pending", pending_user, pending_token, pending_member)


def _non_members(room: Room, other_room: Room) -> dict[str, Actor]:
    """The registered outsider, the site admin, this room's guest and another room's guest."""
    outsider, outsider_token = _register("outsider")
    site_admin, site_admin_token = _register("siteadmin")
    account_services.user_set_role(actor=None, user=site_admin, role=Role.ADMIN, origin=TEST_ORIGIN)
    guest_member, guest_token = services.guest_join(room=room, name="Guest", origin=TEST_ORIGIN)
    foreign_member, foreign_token = services.guest_join(room=other_room, name="Foreign", origin=TEST_ORIGIN)
    return {
        "outsider": Actor("outsider", outsider, outsider_token),
        "site_admin": Actor("site_admin", site_admin, site_admin_token),
        "guest": Actor("guest", guest_member.user, guest_token, guest_member),
        "foreign_guest": Actor("foreign_guest", foreign_member.user, foreign_token),
    }


def _two_movies_playing_the_first(room: Room, as_creator) -> list[Movie]:
    movies = services.movies_add(
        actor=as_creator,
        room=room,
        items=[
            {"name": "First", "url": "https://media.example.com/first.mp4"},
            {"name": "Second", "url": "https://media.example.com/second.m3u8", "type": "hls"},
        ],
        origin=TEST_ORIGIN,
    )
    services.playback_update(actor=as_creator, room=room, movie_id=movies[0].pk, origin=TEST_ORIGIN)
    room.refresh_from_db()
    return movies


def build_world(
    *,
    member_permissions: int | None = None,
    admin_permissions: int | None = None,
    guest_permissions: int | None = None,
) -> RoomWorld:
    """One room (guests allowed, no password, no approval) with every actor of ACTOR_NAMES."""
    with cheap_passwords():
        creator, creator_token = _register("creator")
        room, other_room = _world_rooms(
            creator,
            {
                "member_permissions": member_permissions,
                "admin_permissions": admin_permissions,
                "guest_permissions": guest_permissions,
            },
        )
        as_creator = services.actor_for_user(user=creator, room=room)
        actors: dict[str, Actor] = {
            "anon": Actor("anon", None, None),
            "creator": Actor(
                "creator", creator, creator_token, RoomMember.objects.get(room=room, user=creator)
            ),
        }
        actors.update(_members(room, as_creator))
        target = actors.pop("target")
        actors["pending"] = _pending(room, as_creator)
        actors.update(_non_members(room, other_room))
        movies = _two_movies_playing_the_first(room, as_creator)
    assert set(actors) == set(ACTOR_NAMES)
    return RoomWorld(room=room, other_room=other_room, actors=actors, target=target, movies=movies)


@pytest.fixture
def room_world(db) -> RoomWorld:
    """A fresh world for one test."""
    return build_world()


@pytest.fixture(scope="module")
def module_room_world(django_db_setup, django_db_blocker) -> Iterator[RoomWorld]:
    """One world for a whole test module, like Django's ``setUpTestData``: built once inside an
    outer transaction that is rolled back after the module. Each test using it runs in its own
    transaction nested in that one (request ``db`` or mark the test ``django_db``, not
    ``transactional_db``), so whatever a test changes is undone before the next test. Do not
    mutate the Python objects of the world (they are shared); reload what you need."""
    with django_db_blocker.unblock():
        outer = transaction.atomic()
        outer.__enter__()
        try:
            world = build_world()
            world.snapshot = db_state()
            yield world
        finally:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)


@pytest.fixture
def shared_room_world(module_room_world: RoomWorld, db) -> RoomWorld:
    """``module_room_world`` for one test, checked to be exactly as built (so no earlier test's
    changes leaked); this test's changes are rolled back after it."""
    assert db_state() == module_room_world.snapshot, "the shared world was changed by an earlier test"
    return module_room_world


@pytest.fixture
def world(shared_room_world: RoomWorld) -> RoomWorld:
    """``shared_room_world`` under the short name (the subfolders' conftests have worlds of their
    own)."""
    return shared_room_world


@pytest.fixture
def fresh_word_filter():
    """The sensitive-word filter caches its pattern per process (for a few seconds): the test
    starts with it forced to reload and leaves no edited list behind."""
    word_filter.invalidate()
    yield
    word_filter.invalidate()


@pytest.fixture
def local_hub(monkeypatch, settings):
    """A hub of this test's own, delivering in this process (tests with in-process sockets,
    apps/rooms/tests/inprocess_ws.py)."""
    settings.REDIS_URL = ""
    # Database calls on the test's own thread and connection (channels' shared thread): no
    # connections left open in other threads when the test database goes.
    monkeypatch.setattr(dbthreads, "db_executor", lambda: None)
    hub = RoomHub()
    monkeypatch.setattr(consumers, "hub", hub)
    greeting.readings.clear()  # a room read by an earlier test's hub is not this one's
    monkeypatch.setattr(realtime, "_local_hub", None)
    monkeypatch.setattr(realtime, "get_redis", lambda: None)
    return hub


@pytest.fixture
def fresh_socket_limits(monkeypatch):
    """This test's own WebSocket allowances and socket counts (per-process state in
    apps.core.ratelimit), so no earlier test's sockets count against it."""
    monkeypatch.setattr(ratelimit, "local_buckets", ratelimit.LocalBuckets())
    monkeypatch.setattr(ratelimit, "socket_slots", ratelimit.LocalSlots(ratelimit.MAX_SOCKETS_PER_USER_ROOM))


@pytest.fixture
def room_with_bob():
    """A room, its creator, and bob, a member, with bob's access token."""
    creator, _ = make_user()
    bob, tokens = make_user()
    room = services.room_create(creator=creator, name="window", origin=TEST_ORIGIN)
    services.member_join(user=bob, room=room, origin=TEST_ORIGIN)
    return room, creator, bob, tokens.access
