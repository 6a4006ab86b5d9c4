"""Fixtures and helpers of the membership tests: rooms owned by ``alice`` (the people, ``alice``
and ``bob``, come from apps/rooms/tests/conftest.py), a member's row, and django-ratelimit's
clock frozen for the room password limits."""

from __future__ import annotations

import types

import pytest
from django.conf import settings
from django_ratelimit import core as ratelimit_core

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


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    """django-ratelimit's fixed windows on a frozen clock: no test straddles a window edge."""
    c = Clock(1_800_000_000.0)
    monkeypatch.setattr(ratelimit_core, "time", types.SimpleNamespace(time=c.time))
    return c


def limits(**overrides) -> dict:
    return {**settings.RATELIMITS, **overrides}
