"""What a playback change may hold (docs/security.md, "Checks on what comes in"): positions
clamped, rates in range, types, non-finite numbers, unknown fields, bodies that are not
objects, foreign movies and closed rooms refused, in the same words on REST and the socket."""

from __future__ import annotations

import pytest

from apps.accounts.tests.factories import TEST_ORIGIN
from apps.core.errors import InvalidInput
from apps.core.tests.helpers import assert_error
from apps.rooms import messages, services
from apps.rooms.messages import POSITION_MAX
from apps.rooms.serializers import playback_change
from apps.rooms.tests.playback.conftest import put, put_raw

# --- clamping and validation -------------------------------------------------------------------------------


# Tables run in one test each (one set-up, one request per row): a set-up mints an RSA key and
# hashes three passwords, which would dominate the run if every row paid for it.

POSITIONS = [
    (-5, 0.0),
    (-0.001, 0.0),
    (-1e308, 0.0),
    (0, 0.0),
    (3, 3.0),
    (1234.5678, 1234.5678),
    (1e12, POSITION_MAX),
]
RATES_IN_RANGE = [0.25, 0.5, 1, 2, 4, 4.0]
RATES_OUT_OF_RANGE = [0.2, 0.24999, 4.5, 4.0001, 0, -1, 1e308]
WRONG_TYPES = [
    ("rate", True),
    ("rate", False),
    ("rate", "1"),
    ("rate", "fast"),
    ("rate", [1]),
    ("rate", {"value": 1}),
    ("position", True),
    ("position", "10"),
    ("position", [10]),
    ("position", {"s": 10}),
    ("playing", "true"),
    ("playing", 1),
    ("playing", 0),
    ("playing", "false"),
    ("playing", []),
    ("playing", {}),
    ("version", "0"),
    ("version", True),
    ("version", 0.0),
    ("version", 1.5),
    ("version", [0]),
    ("movie_id", 1),
    ("movie_id", True),
    ("movie_id", ["x"]),
    ("movie_id", {"id": "x"}),
    ("movie_id", ""),
    ("movie_id", "x" * 200_000),
]
NON_FINITE_RAW = [
    ('{"rate": NaN}', None),
    ('{"rate": Infinity}', None),
    ('{"position": -Infinity}', None),
    ('{"position": NaN}', None),
    # Out-of-range literals parse to inf in Python's json: the service must refuse them.
    ('{"position": 1e999}', "position"),
    ('{"position": -1e999}', "position"),
    ('{"rate": 1e999}', "rate"),
]
UNKNOWN_FIELDS = [
    {"volume": 1},
    {"playing": True, "updated_at": "2020-01-01T00:00:00Z"},
    {"playing": True, "server_time": 0},
    {"room": "x"},
    {"version": 0, "position": 1, "seek": 1},
]
NOT_OBJECTS = ["[]", '[{"playing": true}]', '"play"', "1", "true", "null", "{", '{"a":' * 5000]


def test_position_is_clamped(world):
    for given, stored in POSITIONS:
        r = put(world.creator_api, world, {"position": given})
        assert r.status_code == 200, (given, r.content)
        assert world.state().position == stored, given
        assert r.json()["position"] == pytest.approx(stored, abs=0.001), given


def test_rates_in_range_are_accepted(world):
    for rate in RATES_IN_RANGE:
        put(world.creator_api, world, {"rate": 3 if rate != 3 else 1})  # start elsewhere
        r = put(world.creator_api, world, {"rate": rate})
        assert r.status_code == 200, (rate, r.content)
        assert r.json()["rate"] == rate and world.state().rate == rate


def test_rates_out_of_range_are_refused(world):
    for rate in RATES_OUT_OF_RANGE:
        error = assert_error(put(world.creator_api, world, {"rate": rate}), 400, "invalid")
        assert "rate" in error["details"], rate
        assert world.state().version == 0 and world.state().rate == 1, rate


def test_wrong_types_are_refused(world):
    for field, value in WRONG_TYPES:
        error = assert_error(put(world.creator_api, world, {field: value}), 400, "invalid")
        assert field in error["details"], (field, value, error)
        assert world.state().version == 0, (field, value)


def test_non_finite_numbers_are_refused(world):
    for raw, field in NON_FINITE_RAW:
        error = assert_error(put_raw(world.creator_api, world, raw), 400, "invalid")
        if field:
            assert field in error["details"], (raw, error)
        assert world.state().version == 0 and world.state().position == 0, raw


def test_the_one_definition_refuses_non_finite_numbers():
    """The WebSocket reaches the service without DRF's strict JSON parser in front: the change
    both transports parse (messages.PlaybackChange) refuses what JSON can still smuggle in."""
    assert issubclass(messages.Playback, messages.PlaybackChange)  # the socket's is the same model
    for field in ("position", "rate"):
        for value in (float("nan"), float("inf"), float("-inf")):
            with pytest.raises(InvalidInput) as caught:
                playback_change({field: value})
            assert field in caught.value.details, (field, value)
        with pytest.raises(messages.BadMessage) as frame:  # 1e999: valid JSON, an infinite float
            messages.parse(f'{{"type": "playback", "{field}": 1e999}}')
        assert frame.value.message.startswith(f"{field}: "), frame.value.message


def test_changes_are_the_services_keyword_arguments():
    """null is "not given", except movie_id: null, no movie; version is the expected version."""
    change = messages.PlaybackChange.model_validate
    assert change({}).changes() == {}
    assert change({"playing": None, "position": None, "rate": None, "version": None}).changes() == {}
    assert change({"movie_id": None}).changes() == {"movie_id": None}
    assert change({"movie_id": "m1", "playing": True, "position": -3, "rate": 2, "version": 4}).changes() == {
        "movie_id": "m1",
        "playing": True,
        "position": 0.0,  # clamped
        "rate": 2.0,
        "expected_version": 4,
    }
    frame = messages.parse('{"type": "playback", "position": 1e12, "ref": "r"}')
    assert frame.changes() == {"position": POSITION_MAX}  # type and ref are the frame's, not the change's


def test_both_transports_answer_a_bad_rate_in_the_same_words():
    with pytest.raises(InvalidInput) as caught:
        playback_change({"rate": 9})
    assert caught.value.message == "rate: From 0.25 to 4.0."
    assert caught.value.details == {"rate": ["From 0.25 to 4.0."]}
    with pytest.raises(messages.BadMessage) as frame:
        messages.parse('{"type": "playback", "rate": 9}')
    assert frame.value.message == "rate: From 0.25 to 4.0."


def test_a_socket_version_is_bounded_where_rest_answers_409():
    """Kept as each transport has always answered: a version no room can have is a malformed
    frame on the socket (tests/test_ws_isolation.py); PUT answers 409 with the current state."""
    for version in (-1, 2**62 + 1):
        with pytest.raises(messages.BadMessage):
            messages.parse(f'{{"type": "playback", "playing": true, "version": {version}}}')
        assert playback_change({"playing": True, "version": version}).changes()["expected_version"] == version


def test_unknown_fields_are_refused(world):
    for body in UNKNOWN_FIELDS:
        error = assert_error(put(world.creator_api, world, body), 400, "invalid")
        unknown = (set(body) - {"movie_id", "playing", "position", "rate", "version"}).pop()
        assert unknown in error["details"], body
        assert world.state().version == 0 and world.state().playing is False, body


def test_a_body_that_is_not_an_object_is_refused(world):
    for raw in NOT_OBJECTS:
        assert_error(put_raw(world.creator_api, world, raw), 400, "invalid")
        assert world.state().version == 0, raw[:40]


def test_movie_from_another_room_is_refused(world):
    other = services.room_create(creator=world.creator, name="other", origin=TEST_ORIGIN)
    foreign = services.movies_add(
        actor=services.actor_for_user(user=world.creator, room=other),
        room=other,
        items=[{"name": "foreign", "url": "https://media.example/f.mp4"}],
        origin=TEST_ORIGIN,
    )[0]
    for movie_id in (foreign.pk, "does-not-exist"):
        error = assert_error(
            put(world.creator_api, world, {"movie_id": movie_id, "playing": True}), 400, "invalid"
        )
        assert "movie_id" in error["details"]
    assert world.state().movie_id is None and world.state().version == 0


def test_a_closed_room_refuses_playback_changes(world):
    services.room_set_closed(
        actor=services.actor_for_user(user=world.creator, room=world.room),
        room=world.room,
        closed=True,
        origin=TEST_ORIGIN,
    )
    assert_error(put(world.creator_api, world, {"playing": True}), 403, "room_closed")
    assert world.member_api.get(world.url).status_code == 200
