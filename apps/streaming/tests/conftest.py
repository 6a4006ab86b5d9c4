"""Fixtures of the streams tests (helpers in streams_helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from apps.core.redis import get_redis
from apps.rooms.tests.conftest import RoomWorld, build_world
from apps.streaming import cluster, publishers
from apps.streaming.models import Stream
from apps.streaming.tests.streams_helpers import clean_registry


@pytest.fixture
def world(db) -> Iterator[RoomWorld]:
    """A fresh room world (apps/rooms/tests/conftest.py); the publisher registry entries of its
    streams go with it (stream ids are random, but nothing should outlive its test)."""
    yield build_world()
    for stream_id in Stream.objects.values_list("pk", flat=True):
        publishers.forget(stream_id)


@pytest.fixture
def registry(request, settings):
    """The cluster and publisher registries on Redis (``redis``) or on the embedded default's
    process memory (``local``), empty before and after. Parametrised by
    ``streams_helpers.both_registries``."""
    if request.param == "local":
        settings.REDIS_URL = ""
        publishers._local.values.clear()
        publishers._local.index.clear()
        cluster._local.clear()
        yield None
        cluster._local.clear()
        return
    client = get_redis()
    assert client is not None  # the redis marker skipped (or failed, in CI) the test otherwise
    clean_registry(client)
    yield client
    clean_registry(client)
