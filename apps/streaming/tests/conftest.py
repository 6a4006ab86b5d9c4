"""Fixtures of the streams tests (helpers in streams_helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from apps.rooms.tests.conftest import RoomWorld, build_world
from apps.streaming import publishers
from apps.streaming.models import Stream


@pytest.fixture
def world(db) -> Iterator[RoomWorld]:
    """A fresh room world (apps/rooms/tests/conftest.py); the publisher registry entries of its
    streams go with it (stream ids are random, but nothing should outlive its test)."""
    yield build_world()
    for stream_id in Stream.objects.values_list("pk", flat=True):
        publishers.forget(stream_id)
