"""Helpers for the room tests of this package (the people and rooms come from
apps/rooms/tests/conftest.py)."""

from __future__ import annotations

from apps.accounts.tests.factories import TEST_ORIGIN
from apps.rooms import services
from apps.rooms.models import Room


def close(room: Room) -> Room:
    """The creator closes ``room`` (through the service)."""
    actor = services.actor_for_user(user=room.creator, room=room)
    return services.room_set_closed(actor=actor, room=room, closed=True, origin=TEST_ORIGIN)
