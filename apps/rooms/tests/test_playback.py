"""Playback over REST (docs/api.md, "REST"): the server-authoritative state row,
position extrapolation, clamping and validation, PLAY_CONTROL / CHANGE_CURRENT_MOVIE, the
optimistic ``version`` (409 with the current state), and concurrent writers of one version:
exactly one wins."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest
from django.db import connection
from rest_framework.fields import DateTimeField
from rest_framework.test import APIClient, APIRequestFactory

from apps.accounts.models import User
from apps.accounts.tests.factories import TEST_ORIGIN, make_user
from apps.audit.models import AuditEvent
from apps.core.errors import Conflict, InvalidInput
from apps.core.tests.helpers import assert_error, client_for, retry_if_sqlite_locked
from apps.permissions.flags import Perm
from apps.rooms import messages, selectors, services
from apps.rooms.api import PlaybackView
from apps.rooms.messages import POSITION_MAX
from apps.rooms.models import Movie, PlaybackState, Room, RoomMember
from apps.rooms.serializers import playback_change

# --- helpers -------------------------------------------------------------------------------------------


@dataclass
class World:
    room: Room
    creator: User
    creator_api: APIClient
    creator_token: str
    member: User
    member_api: APIClient
    outsider_api: APIClient
    movies: list[Movie]

    @property
    def url(self) -> str:
        return f"/api/v1/rooms/{self.room.pk}/playback"

    def state(self) -> PlaybackState:
        return PlaybackState.objects.get(room=self.room)

    def grant(self, user: User, bits: int) -> None:
        target = RoomMember.objects.get(room=self.room, user=user)
        services.member_update(
            actor=services.actor_for_user(user=self.creator, room=self.room),
            room=self.room,
            target=target,
            permissions_added=target.permissions_added | bits,
            origin=TEST_ORIGIN,
        )


def make_world(*, with_guests: bool = True) -> World:
    creator, creator_pair = make_user()
    member, member_pair = make_user()
    _outsider, outsider_pair = make_user()
    room = services.room_create(
        creator=creator, name="playback", settings={"allow_guests": with_guests}, origin=TEST_ORIGIN
    )
    services.member_join(user=member, room=room, origin=TEST_ORIGIN)
    movies = services.movies_add(
        actor=services.actor_for_user(user=creator, room=room),
        room=room,
        items=[{"name": n, "url": f"https://media.example/{n}.mp4"} for n in ("a", "b")],
        origin=TEST_ORIGIN,
    )
    return World(
        room=room,
        creator=creator,
        creator_api=client_for(creator_pair.access),
        creator_token=creator_pair.access,
        member=member,
        member_api=client_for(member_pair.access),
        outsider_api=client_for(outsider_pair.access),
        movies=movies,
    )


@pytest.fixture
def world(db) -> World:
    return make_world()


def put(api: APIClient, world: World, body) -> object:
    return api.put(world.url, body, format="json")


def put_raw(api: APIClient, world: World, raw: str) -> object:
    return api.put(world.url, raw, content_type="application/json")


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


STATE_KEYS = {
    "movie_id",
    "playing",
    "position",
    "rate",
    "updated_at",
    "version",
    "server_time",
    "server_time_ms",
}


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


# --- who may ----------------------------------------------------------------------------------------------------


def test_play_control_is_needed_even_to_pause(world):
    assert_error(put(world.member_api, world, {"playing": False}), 403, "permission_denied")
    assert_error(put(world.member_api, world, {"movie_id": world.movies[0].pk}), 403, "permission_denied")
    assert world.state().version == 0


def test_changing_the_movie_needs_change_current_movie(world):
    a, b = world.movies
    put(world.creator_api, world, {"movie_id": a.pk})
    world.grant(world.member, Perm.PLAY_CONTROL)
    version = world.state().version

    # Play control alone: pause, seek, rate: yes.
    r = put(world.member_api, world, {"playing": True, "position": 3, "rate": 2})
    assert r.status_code == 200, r.content
    version += 1
    # Naming the movie that is already current is not a change.
    assert put(world.member_api, world, {"movie_id": a.pk, "playing": False}).status_code == 200
    version += 1
    # Another movie, or none: no, and nothing of the request is applied.
    for target in (b.pk, None):
        error = assert_error(
            put(world.member_api, world, {"movie_id": target, "playing": True}), 403, "permission_denied"
        )
        assert "CHANGE_CURRENT_MOVIE" in error["message"]
        state = world.state()
        assert (state.movie_id, state.playing, state.version) == (a.pk, False, version)

    world.grant(world.member, Perm.CHANGE_CURRENT_MOVIE)
    r = put(world.member_api, world, {"movie_id": b.pk})
    assert r.status_code == 200 and r.json()["movie_id"] == b.pk


def test_change_current_movie_without_play_control_is_not_enough(world):
    world.grant(world.member, Perm.CHANGE_CURRENT_MOVIE)
    assert_error(put(world.member_api, world, {"movie_id": world.movies[0].pk}), 403, "permission_denied")


def test_who_may_read_and_write(world):
    _member, guest_token = services.guest_join(room=world.room, name="visitor", origin=TEST_ORIGIN)
    guest = client_for(guest_token)
    assert guest.get(world.url).status_code == 200
    assert_error(put(guest, world, {"playing": True}), 403, "permission_denied")
    assert_error(world.outsider_api.get(world.url), 403, "not_in_room")
    assert_error(put(world.outsider_api, world, {"playing": True}), 403, "not_in_room")
    assert_error(client_for().get(world.url), 401, "not_authenticated")
    assert_error(put(client_for(), world, {"playing": True}), 401, "not_authenticated")
    # A guest token opens its own room only.
    other = make_world()
    assert_error(guest.get(other.url), 403, "not_in_room")
    assert_error(put(guest, other, {"playing": True}), 403, "not_in_room")
    assert world.state().version == 0 and other.state().version == 0


def test_a_site_admin_controls_any_room(world):
    from apps.accounts import services as account_services
    from apps.accounts.tests.factories import login

    admin, _ = make_user()
    account_services.user_set_role(actor=None, user=admin, role="admin", origin=TEST_ORIGIN)
    api = client_for(login(admin).access)
    r = put(api, world, {"movie_id": world.movies[1].pk, "playing": True})
    assert r.status_code == 200, r.content
    assert world.state().movie_id == world.movies[1].pk


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
    barrier = threading.Barrier(len(tokens))
    results: list = [None] * len(tokens)

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

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = retry_if_sqlite_locked(lambda: call(i), seconds=2.0)
        except Exception as exc:  # the test inspects what each contender got
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(tokens))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    return results


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
        barrier = threading.Barrier(contenders)
        results: list = [None] * contenders

        def worker(i: int, version=version, barrier=barrier, results=results) -> None:
            try:
                barrier.wait(timeout=10)
                results[i] = retry_if_sqlite_locked(
                    lambda: services.playback_update(
                        actor=actor,
                        room=world.room,
                        position=float(i),
                        expected_version=version,
                        origin=TEST_ORIGIN,
                    ),
                    seconds=2.0,
                )
            except Exception as exc:
                results[i] = exc
            finally:
                connection.close()

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(contenders)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        winners = [r for r in results if isinstance(r, PlaybackState)]
        losers = [r for r in results if isinstance(r, Conflict)]
        assert len(winners) == 1 and len(losers) == contenders - 1, (round_no, results)
        assert world.state().version == version + 1
