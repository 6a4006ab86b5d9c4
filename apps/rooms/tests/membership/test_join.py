"""Joining a room over REST (docs/api.md, "REST"; docs/security.md, "Limits"): first join and
rejoin, password rooms and the limits on wrong room passwords (per user and room, per
address, also for parallel guesses), and what members/me shows."""

from __future__ import annotations

import pytest
from django.test import override_settings

from apps.accounts.tests.factories import TEST_ORIGIN
from apps.audit.models import AuditEvent
from apps.core.tests.helpers import assert_error, ratelimits, run_at_once
from apps.permissions.flags import Perm
from apps.rooms import services
from apps.rooms.models import RoomMember
from apps.rooms.tests.conftest import (
    ROOM_PASSWORD,
    ROOMS,
    client,
    grant,
    join,
    make_room,
    person,
    room_url,
)
from apps.rooms.tests.membership.conftest import member_row

pytestmark = pytest.mark.django_db

# --- join ----------------------------------------------------------------------------------------------


def test_join_201_first_time_then_200(room, bob):
    r = bob.client.post(room_url(room, "join"), {}, format="json")
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["user"]["id"] == bob.user.pk
    assert (body["role"], body["status"]) == ("member", "active")
    assert body["effective_permissions"] == 519
    r = bob.client.post(room_url(room, "join"), {}, format="json")
    assert r.status_code == 200 and r.json()["status"] == "active"
    assert RoomMember.objects.filter(room=room, user=bob.user).count() == 1
    assert AuditEvent.objects.filter(action="member.join", room_id=room.pk).count() == 1
    assert client().get(room_url(room)).json()["member_count"] == 2


def test_join_needs_an_account(room):
    assert_error(client().post(room_url(room, "join"), {}, format="json"), 401, "not_authenticated")


def test_join_unknown_room(bob):
    assert_error(bob.client.post(f"{ROOMS}/nosuchroom/join", {}, format="json"), 404, "not_found")


def test_password_room(locked, bob):
    join_url = room_url(locked, "join")
    assert_error(bob.client.post(join_url, {}, format="json"), 403, "room_password_required")
    assert_error(bob.client.post(join_url, {"password": ""}, format="json"), 400, "invalid")
    assert_error(
        bob.client.post(join_url, {"password": "wrong-one"}, format="json"), 403, "room_password_wrong"
    )
    # Close is not enough: case and whitespace matter.
    assert_error(
        bob.client.post(join_url, {"password": ROOM_PASSWORD.upper()}, format="json"),
        403,
        "room_password_wrong",
    )
    assert_error(
        bob.client.post(join_url, {"password": f" {ROOM_PASSWORD}"}, format="json"),
        403,
        "room_password_wrong",
    )
    assert member_row(locked, bob) is None
    assert AuditEvent.objects.filter(action="member.join_password_wrong", user_id=bob.user.pk).count() == 3

    r = bob.client.post(join_url, {"password": ROOM_PASSWORD}, format="json")
    assert r.status_code == 201, r.content
    assert member_row(locked, bob).status == "active"
    # A member need not give it again.
    assert bob.client.post(join_url, {}, format="json").status_code == 200


def test_room_password_wrong_attempts_limited_per_user_and_room(alice, locked, bob, clock):
    other_room = make_room(alice, name="Other", password=ROOM_PASSWORD)
    carol = person()
    with override_settings(RATELIMITS=ratelimits(room_password_user="3/m", room_password_ip="1000/m")):
        for _ in range(3):
            assert_error(
                bob.client.post(room_url(locked, "join"), {"password": "nope-nope"}, format="json"),
                403,
                "room_password_wrong",
            )
        # Over the limit: refused before the password is even checked, the right one included.
        r = bob.client.post(room_url(locked, "join"), {"password": ROOM_PASSWORD}, format="json")
        error = assert_error(r, 429, "rate_limited")
        retry = int(r["Retry-After"])
        assert 1 <= retry <= 61 and error["details"]["retry_after"] == retry
        assert member_row(locked, bob) is None
        assert (
            AuditEvent.objects.filter(action="member.join_password_wrong", user_id=bob.user.pk).count() == 3
        )

        # Per user *and* room: bob elsewhere and carol here are unaffected.
        assert (
            bob.client.post(
                room_url(other_room, "join"), {"password": ROOM_PASSWORD}, format="json"
            ).status_code
            == 201
        )
        assert (
            carol.client.post(
                room_url(locked, "join"), {"password": ROOM_PASSWORD}, format="json"
            ).status_code
            == 201
        )

        # Next window: bob may try again.
        clock.now += 61
        r = bob.client.post(room_url(locked, "join"), {"password": ROOM_PASSWORD}, format="json")
        assert r.status_code == 201, r.content


def test_right_passwords_do_not_use_up_the_per_user_limit(alice, bob, clock):
    with override_settings(RATELIMITS=ratelimits(room_password_user="2/m", room_password_ip="1000/m")):
        for i in range(4):
            room = make_room(alice, name=f"r{i}", password=ROOM_PASSWORD)
            r = bob.client.post(room_url(room, "join"), {"password": ROOM_PASSWORD}, format="json")
            assert r.status_code == 201, r.content


def test_room_password_attempts_limited_per_ip(locked, clock):
    users = [person() for _ in range(4)]
    with override_settings(RATELIMITS=ratelimits(room_password_ip="2/m", room_password_user="1000/m")):
        for p in users[:2]:
            r = client(p.access, REMOTE_ADDR="203.0.113.7").post(
                room_url(locked, "join"), {"password": "guess-guess"}, format="json"
            )
            assert_error(r, 403, "room_password_wrong")
        # A third account from the same address is refused, right password or not.
        r = client(users[2].access, REMOTE_ADDR="203.0.113.7").post(
            room_url(locked, "join"), {"password": ROOM_PASSWORD}, format="json"
        )
        assert_error(r, 429, "rate_limited")
        assert int(r["Retry-After"]) >= 1
        assert member_row(locked, users[2]) is None
        # Another address is not.
        r = client(users[3].access, REMOTE_ADDR="198.51.100.9").post(
            room_url(locked, "join"), {"password": ROOM_PASSWORD}, format="json"
        )
        assert r.status_code == 201, r.content


# --- members/me -------------------------------------------------------------------------------------


def test_members_me_shows_effective_permissions(alice, room, bob):
    join(bob, room)
    r = bob.client.get(room_url(room, "members/me"))
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {
        "user",
        "role",
        "status",
        "permissions_added",
        "permissions_removed",
        "effective_permissions",
        "joined_at",
    }
    assert body["effective_permissions"] == 519

    grant(room, bob, added=int(Perm.PLAY_CONTROL), removed=int(Perm.SEND_EMOJI))
    body = bob.client.get(room_url(room, "members/me")).json()
    assert (body["permissions_added"], body["permissions_removed"]) == (64, 2)
    assert body["effective_permissions"] == (519 | 64) & ~2

    # Room defaults are read at check time.
    services.room_update(
        actor=services.actor_for_user(user=alice.user, room=room),
        room=room,
        changes={"settings": {"member_permissions": 1}},
        origin=TEST_ORIGIN,
    )
    assert bob.client.get(room_url(room, "members/me")).json()["effective_permissions"] == 1 | 64

    assert_error(person().client.get(room_url(room, "members/me")), 403, "not_in_room")
    assert client().get(room_url(room, "members/me")).status_code == 401


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_parallel_room_password_guesses_beyond_the_limit_are_refused_before_hashing(monkeypatch):
    """Six wrong guesses at once against a per-user limit of 3: only 3 passwords are hashed, the
    others are refused with rate_limited first (checking before and counting after the hash let
    all six through)."""
    import time as time_module

    from apps.rooms import services as room_services

    owner, guesser = person(), person()
    room = make_room(owner, password=ROOM_PASSWORD)
    hashed: list = []
    real_check = room_services.membership.check_password

    def slow_check(raw, encoded):
        hashed.append(raw)
        time_module.sleep(0.3)  # so the attempts overlap, as parallel requests against Argon2 do
        return real_check(raw, encoded)

    monkeypatch.setattr(room_services.membership, "check_password", slow_check)
    contenders = 6

    def attempt(i: int) -> int:
        return guesser.client.post(
            room_url(room, "join"), {"password": "nope-nope"}, format="json"
        ).status_code

    with override_settings(RATELIMITS=ratelimits(room_password_user="3/m", room_password_ip="1000/m")):
        statuses = run_at_once(attempt, contenders)
    assert len(hashed) == 3, f"{len(hashed)} passwords hashed for a limit of 3"
    assert sorted(statuses) == [403, 403, 403, 429, 429, 429], statuses
