"""The optimistic ``version`` of a playback change (docs/architecture.md, "A playback change, end
to end"): a stale one is a 409 with the current state, none means the last writer wins, and
of concurrent writers of one version exactly one wins (over REST and at the service)."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from rest_framework.fields import DateTimeField
from rest_framework.test import APIRequestFactory

from apps.accounts.tests.factories import TEST_ORIGIN, make_user
from apps.audit.models import AuditEvent
from apps.core.errors import Conflict
from apps.core.tests.helpers import assert_error, retry_if_sqlite_locked, run_at_once
from apps.permissions.flags import Perm
from apps.rooms import services
from apps.rooms.api import PlaybackView
from apps.rooms.models import PlaybackState
from apps.rooms.tests.playback.conftest import STATE_KEYS, make_world, put

# --- optimistic version -------------------------------------------------------------------------------------------


def test_matching_version_applies_and_stale_version_is_a_conflict(world):
    a = world.movies[0]
    r = put(world.creator_api, world, {"movie_id": a.pk, "position": 10, "version": 0})
    assert r.status_code == 200 and r.json()["version"] == 1

    current = world.creator_api.get(world.url).json()
    for stale in (0, 5, -1):
        error = assert_error(
            put(world.creator_api, world, {"playing": True, "version": stale}), 409, "conflict"
        )
        got = error["details"]["current"]
        assert set(got) == STATE_KEYS
        for key in ("movie_id", "playing", "position", "rate", "version", "updated_at"):
            assert got[key] == current[key], key
        assert got["version"] == 1
        # The current state in the same wire format as GET (times as ISO strings).
        assert got["updated_at"] == DateTimeField().to_representation(world.state().updated_at)
    state = world.state()
    assert state.version == 1 and state.playing is False

    r = put(world.creator_api, world, {"playing": True, "version": 1})
    assert r.status_code == 200 and r.json()["version"] == 2


def test_conflict_current_is_extrapolated_like_get(world):
    put(
        world.creator_api, world, {"movie_id": world.movies[0].pk, "playing": True, "position": 10, "rate": 2}
    )
    PlaybackState.objects.filter(room=world.room).update(
        updated_at=world.state().updated_at - timedelta(seconds=5)
    )
    error = assert_error(put(world.creator_api, world, {"playing": False, "version": 0}), 409, "conflict")
    assert error["details"]["current"]["position"] == pytest.approx(20, abs=0.5)


def test_without_version_the_last_writer_wins(world):
    assert put(world.creator_api, world, {"position": 1}).status_code == 200
    assert put(world.creator_api, world, {"position": 2}).status_code == 200
    assert world.state().version == 2 and world.state().position == 2


def test_every_change_bumps_the_version_once_and_is_audited(world):
    for i in range(3):
        assert put(world.creator_api, world, {"position": i}).json()["version"] == i + 1
    events = list(AuditEvent.objects.filter(room_id=world.room.pk, action="playback.update").order_by("seq"))
    assert [e.details["version"] for e in events] == [1, 2, 3]
    assert [e.details["position"] for e in events] == [0, 1, 2]


# --- concurrent writers ----------------------------------------------------------------------------------------------


def _race(tokens: list[str], room_id: str, bodies: list[dict]) -> list:
    """Each contender PUTs at once. The view is called through APIRequestFactory (bearer auth,
    DRF's parsing, throttling and error handling all run): Django's test client cannot be used
    from several threads, its got_request_exception hook is process-wide and hands one
    request's exception to every client waiting at that moment."""
    view = PlaybackView.as_view()
    factory = APIRequestFactory()

    def call(i: int):
        request = factory.put(
            f"/api/v1/rooms/{room_id}/playback",
            bodies[i],
            format="json",
            HTTP_AUTHORIZATION=f"Bearer {tokens[i]}",
        )
        response = view(request, room_id=room_id)
        response.render()
        return response

    return run_at_once(lambda i: retry_if_sqlite_locked(lambda: call(i), seconds=2.0), len(tokens))


@pytest.mark.parametrize("widen_window", [False, True], ids=["natural", "widened"])
@pytest.mark.django_db(transaction=True)
def test_concurrent_writes_of_one_version_exactly_one_wins(settings, monkeypatch, widen_window):
    """Several members send a change based on the same version at the same moment: one is
    applied, every other gets 409 with the winner's state. "widened" holds each writer inside
    its transaction for a moment after the version check, so writers that were not serialized
    by the row lock would both pass the check and both win."""
    settings.RATELIMITS = {**settings.RATELIMITS, "api": "100000/m"}
    world = make_world(with_guests=False)
    contenders = 3
    tokens = [world.creator_token]
    for _ in range(contenders - 1):
        user, pair = make_user()
        services.member_join(user=user, room=world.room, origin=TEST_ORIGIN)
        world.grant(user, Perm.PLAY_CONTROL)
        tokens.append(pair.access)

    if widen_window:
        original = PlaybackState.position_at

        def slow_position_at(self, when):
            time.sleep(0.05)
            return original(self, when)

        monkeypatch.setattr(PlaybackState, "position_at", slow_position_at)

    rounds = 6
    for round_no in range(rounds):
        version = world.state().version
        bodies = [
            {"position": 10 * round_no + i, "playing": bool(i % 2), "version": version}
            for i in range(contenders)
        ]
        results = _race(tokens, world.room.pk, bodies)
        assert not any(isinstance(r, Exception) for r in results), (round_no, results)
        statuses = sorted(r.status_code for r in results)
        assert statuses == [200] + [409] * (contenders - 1), (round_no, [r.content for r in results])
        winner = next(i for i, r in enumerate(results) if r.status_code == 200)
        state = world.state()
        assert state.version == version + 1, round_no
        assert state.position == pytest.approx(bodies[winner]["position"])
        for r in results:
            if r.status_code == 409:
                current = json.loads(r.content)["error"]["details"]["current"]
                assert current["version"] == version + 1
                assert current["playing"] == bodies[winner]["playing"]
    # One audit event per applied change, none for the refused ones.
    assert AuditEvent.objects.filter(room_id=world.room.pk, action="playback.update").count() == rounds


@pytest.mark.django_db(transaction=True)
def test_concurrent_service_writes_exactly_one_wins():
    """The same race at the service the WebSocket consumer calls."""
    world = make_world(with_guests=False)
    actor = services.actor_for_user(user=world.creator, room=world.room)
    contenders = 4
    for round_no in range(5):
        version = world.state().version

        def change(i: int, version=version) -> PlaybackState:
            return retry_if_sqlite_locked(
                lambda: services.playback_update(
                    actor=actor,
                    room=world.room,
                    position=float(i),
                    expected_version=version,
                    origin=TEST_ORIGIN,
                ),
                seconds=2.0,
            )

        results = run_at_once(change, contenders)
        winners = [r for r in results if isinstance(r, PlaybackState)]
        losers = [r for r in results if isinstance(r, Conflict)]
        assert len(winners) == 1 and len(losers) == contenders - 1, (round_no, results)
        assert world.state().version == version + 1
