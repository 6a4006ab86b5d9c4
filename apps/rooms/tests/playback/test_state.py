"""The room's playback state over REST (docs/api.md, "REST"; docs/architecture.md, "A playback
change, end to end"): what GET shows, what PUT changes, the position extrapolated while
playing, and changing or stopping the movie."""

from __future__ import annotations

from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest

from apps.rooms import selectors
from apps.rooms.models import PlaybackState
from apps.rooms.tests.playback.conftest import STATE_KEYS, put


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- the state --------------------------------------------------------------------------------------------


def test_initial_state(world):
    r = world.member_api.get(world.url)
    assert r.status_code == 200, r.content
    body = r.json()
    assert set(body) == STATE_KEYS
    assert body["movie_id"] is None and body["playing"] is False
    assert body["position"] == 0 and body["rate"] == 1 and body["version"] == 0
    server_time = parse_time(body["server_time"])
    assert abs(body["server_time_ms"] - server_time.timestamp() * 1000) < 1


def test_put_changes_the_state_row(world):
    a = world.movies[0]
    r = put(world.creator_api, world, {"movie_id": a.pk, "playing": True, "position": 12.5, "rate": 1.5})
    assert r.status_code == 200, r.content
    body = r.json()
    assert set(body) == STATE_KEYS
    assert body["movie_id"] == a.pk and body["playing"] is True and body["rate"] == 1.5
    assert body["version"] == 1
    assert 12.5 <= body["position"] < 12.5 + 1.5  # position at server_time, a moment later
    state = world.state()
    assert (state.movie_id, state.playing, state.position, state.rate, state.version) == (
        a.pk,
        True,
        12.5,
        1.5,
        1,
    )
    assert parse_time(body["updated_at"]) == state.updated_at

    r = put(world.creator_api, world, {"playing": False, "position": 30})
    assert r.status_code == 200
    assert r.json()["version"] == 2 and r.json()["position"] == 30 and r.json()["playing"] is False
    assert r.json()["movie_id"] == a.pk  # unchanged fields stay


def _freeze_selector_clock(monkeypatch, when: datetime) -> None:
    """GET computes the position at ``selectors.timezone.now()``: pin it."""
    monkeypatch.setattr(selectors, "timezone", SimpleNamespace(now=lambda: when))


def test_get_extrapolates_while_playing(world, monkeypatch):
    put(
        world.creator_api,
        world,
        {"movie_id": world.movies[0].pk, "playing": True, "position": 12.5, "rate": 1.5},
    )
    state = world.state()
    later = state.updated_at + timedelta(seconds=8)
    _freeze_selector_clock(monkeypatch, later)
    body = world.member_api.get(world.url).json()
    assert body["position"] == pytest.approx(12.5 + 8 * 1.5)
    assert parse_time(body["server_time"]) == later
    assert body["server_time_ms"] == int(later.timestamp() * 1000)
    assert parse_time(body["updated_at"]) == state.updated_at  # when it last changed, not now
    assert body["version"] == state.version  # reading changes nothing


def test_get_does_not_move_a_paused_position(world, monkeypatch):
    put(
        world.creator_api,
        world,
        {"movie_id": world.movies[0].pk, "playing": False, "position": 40, "rate": 2},
    )
    _freeze_selector_clock(monkeypatch, world.state().updated_at + timedelta(minutes=10))
    assert world.member_api.get(world.url).json()["position"] == 40


def test_a_clock_behind_updated_at_never_moves_backwards(world, monkeypatch):
    put(world.creator_api, world, {"movie_id": world.movies[0].pk, "playing": True, "position": 5})
    _freeze_selector_clock(monkeypatch, world.state().updated_at - timedelta(seconds=30))
    assert world.member_api.get(world.url).json()["position"] == 5


def test_a_change_while_playing_starts_from_where_the_room_is(world):
    put(
        world.creator_api,
        world,
        {"movie_id": world.movies[0].pk, "playing": True, "position": 100, "rate": 2},
    )
    PlaybackState.objects.filter(room=world.room).update(
        updated_at=world.state().updated_at - timedelta(seconds=10)
    )
    r = put(world.creator_api, world, {"rate": 1})
    assert r.status_code == 200
    state = world.state()
    assert state.position == pytest.approx(100 + 10 * 2, abs=0.5)  # materialised, then the new rate
    assert state.rate == 1 and state.playing


def test_changing_the_movie_starts_it_paused_at_zero(world):
    a, b = world.movies
    put(world.creator_api, world, {"movie_id": a.pk, "playing": True, "position": 50})
    r = put(world.creator_api, world, {"movie_id": b.pk})
    assert r.status_code == 200
    assert r.json()["movie_id"] == b.pk and r.json()["position"] == 0 and r.json()["playing"] is False
    r = put(world.creator_api, world, {"movie_id": a.pk, "playing": True, "position": 7})
    assert r.json()["movie_id"] == a.pk and r.json()["playing"] is True and r.json()["position"] >= 7


def test_movie_id_null_stops_playback(world):
    put(world.creator_api, world, {"movie_id": world.movies[0].pk, "playing": True})
    r = put(world.creator_api, world, {"movie_id": None})
    assert r.status_code == 200 and r.json()["movie_id"] is None and r.json()["playing"] is False
