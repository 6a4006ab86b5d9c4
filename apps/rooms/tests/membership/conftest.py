"""Fixtures and helpers of the membership tests: rooms owned by ``alice`` (the people, ``alice``
and ``bob``, come from apps/rooms/tests/conftest.py), a member's row, and django-ratelimit's
clock frozen for the room password limits."""

from __future__ import annotations

import pytest

from apps.core.tests.helpers import ratelimit_clock_fixture
from apps.rooms.models import Room, RoomMember
from apps.rooms.tests.conftest import ROOM_PASSWORD, Person, make_room


def member_row(room: Room, p: Person) -> RoomMember | None:
    return RoomMember.objects.filter(room=room, user=p.user).first()


@pytest.fixture
def room(alice) -> Room:
    return make_room(alice)


@pytest.fixture
def locked(alice) -> Room:
    return make_room(alice, name="Locked", password=ROOM_PASSWORD)


# ``clock``: django-ratelimit's fixed windows on a frozen clock (the room password limits).
clock = ratelimit_clock_fixture()
