"""apps/core/copies.py and the reads that use it while PostgreSQL is down: the user behind a
token, the room's part of a hello and the membership answer from their copies in Redis when the
database breaker is open, and only while the copies may be trusted (the user's under the stamp it
was kept with, so a change or a revocation since ends it). Real PostgreSQL and Redis; the outage
is the backend refusing with the database breaker open (apps/core/dbfaults.py)."""

from __future__ import annotations

import time

import pytest
from django.db import DatabaseError, transaction
from rest_framework.test import APIClient

from apps.accounts import authcache, revocation, selectors
from apps.accounts.models import User
from apps.accounts.tests.factories import TEST_ORIGIN, make_user
from apps.core import copies, dbfaults
from apps.core.dbfaults import DatabaseUnavailable, database_breaker
from apps.core.redis import get_redis
from apps.rooms import greeting, services
from apps.rooms import selectors as room_selectors
from apps.rooms.models import PlaybackState, Room, RoomMember

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def clean_slate():
    copies.forget_written()
    authcache.forget_all()
    database_breaker.reset()
    yield
    database_breaker.reset()
    copies.forget_written()
    authcache.forget_all()


def database_down() -> None:
    for _ in range(database_breaker.failure_threshold):
        database_breaker.record_failure()
    assert database_breaker.refusing()


def verified(tokens):
    return selectors.verify_access_token(tokens.access)


def test_rows_round_trip_without_their_secrets():
    user, _ = make_user()
    room = services.room_create(creator=user, name="copied", origin=TEST_ORIGIN)
    member = room_selectors.membership(user=user, room=room)
    playback = PlaybackState.objects.get(room=room)
    for instance, model, omit in [
        (user, User, {"password"}),
        (Room.objects.get(pk=room.pk), Room, {"password"}),
        (member, RoomMember, {"ban_address"}),
        (playback, PlaybackState, set()),
    ]:
        kept = copies.row(instance, omit=frozenset(omit))
        assert not set(omit) & set(kept)
        copies.keep("test:row", kept)
        back = copies.instance(model, copies.recall("test:row"))
        for field in model._meta.concrete_fields:
            if field.attname in omit:
                continue
            want, got = getattr(instance, field.attname), getattr(back, field.attname)
            if hasattr(want, "microsecond"):  # JSON keeps milliseconds
                assert abs((want - got).total_seconds()) < 0.001, field.attname
            else:
                assert got == want, field.attname
        assert not back._state.adding


def test_an_unchanged_copy_is_not_written_again_and_nothing_is_kept_inside_a_transaction():
    redis = get_redis()
    copies.keep("test:once", {"a": 1})
    copies.flush()  # what the writer thread does at once (it may have done it already)
    assert redis.get("copy:test:once") == '{"a":1}'
    redis.delete("copy:test:once")
    copies.keep("test:once", {"a": 1})  # the same text: this process does not write it again
    assert copies.recall("test:once") is None
    copies.keep("test:once", {"a": 2})
    assert copies.recall("test:once") == {"a": 2}
    copies.flush()
    with transaction.atomic():
        copies.keep("test:once", {"a": 3})
    assert copies.recall("test:once") == {"a": 2}
    redis.delete("copy:test:once")


def test_the_user_answers_from_its_copy_while_the_database_is_down_until_the_stamp_changes():
    user, tokens = make_user()
    token = verified(tokens)
    assert selectors.authenticate_verified_token(token).pk == user.pk  # loaded, and copied
    authcache.forget_all()  # this process's cache would answer by itself: not what is tested
    database_down()
    got = selectors.authenticate_verified_token(token)
    assert (got.pk, got.username, got.role) == (user.pk, user.username, user.role)
    assert got.password == "!" and not got.has_usable_password()

    database_breaker.reset()
    authcache.user_changed(user.pk)  # a change (a ban, a password) replaces the stamp
    database_down()
    with pytest.raises(DatabaseUnavailable):
        selectors.authenticate_verified_token(token)


def test_a_revoked_token_is_refused_even_with_a_copy():
    _user, tokens = make_user()
    token = verified(tokens)
    selectors.authenticate_verified_token(token)
    authcache.forget_all()

    revocation.revoke_jti(token["jti"], time.time() + 3600)
    database_down()
    with pytest.raises(selectors.TokenRevoked):
        selectors.authenticate_verified_token(token)


def test_the_room_reading_and_the_membership_answer_from_their_copies():
    user, _ = make_user()
    room = services.room_create(creator=user, name="reading", origin=TEST_ORIGIN)
    services.chat_send(
        actor=services.actor_for_user(user=user, room=room), room=room, text="kept", origin=TEST_ORIGIN
    )
    fresh = greeting.read_room(room.pk)
    assert not fresh.stale
    member = room_selectors.membership(user=user, room=room)
    database_down()
    stale = greeting.read_room(room.pk)
    assert stale.stale and stale.room.pk == room.pk and stale.room.password == ""
    assert stale.room_payload == fresh.room_payload
    assert [c["text"] for c in stale.history] == ["kept"]
    assert stale.playback.version == fresh.playback.version
    hello = greeting.hello(stale, {"user": {"id": user.pk}})
    assert hello["stale"] is True
    copied = room_selectors.membership(user=user, room=stale.room)
    assert (copied.pk, copied.role, copied.status) == (member.pk, member.role, member.status)
    # No copy for a room never read: the database's error stands.
    with pytest.raises(DatabaseError) as caught:
        greeting.read_room("nosuchroom00000")
    assert dbfaults.lost_connection(caught.value)


def test_without_redis_nothing_is_kept(settings):
    redis = get_redis()
    settings.REDIS_URL = ""  # the embedded default
    copies.keep("test:none", {"a": 1})
    assert copies.recall("test:none") is None
    assert redis.get("copy:test:none") is None


def test_rest_reads_of_a_room_and_its_playback_answer_from_the_copies_marked_stale():
    owner, owner_tokens = make_user()
    outsider, outsider_tokens = make_user()
    room = services.room_create(creator=owner, name="rest copies", origin=TEST_ORIGIN)
    greeting.read_room(room.pk)  # a connect's reading left the room's copy
    for user, tokens in ((owner, owner_tokens), (outsider, outsider_tokens)):
        selectors.authenticate_verified_token(verified(tokens))  # and each user's
    room_selectors.membership(user=owner, room=room)
    authcache.forget_all()
    database_down()

    def get(path, tokens):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens.access}")
        return client.get(f"/api/v1/rooms/{path}")

    r = get(room.pk, owner_tokens)
    assert (r.status_code, r["SyncTV-Stale"], r.json()["id"]) == (200, "true", room.pk)
    r = get(f"{room.pk}/playback", owner_tokens)
    assert (r.status_code, r["SyncTV-Stale"], r.json()["version"]) == (200, "true", 0)
    # No membership copy for an outsider: nothing says they are a member, so no state for them
    # (the outage's 503, as without copies).
    r = get(f"{room.pk}/playback", outsider_tokens)
    assert (r.status_code, r.json()["error"]["code"]) == (503, "service_degraded")
    r = get(f"{room.pk}/movies", owner_tokens)  # a read no copy answers
    assert (r.status_code, r.json()["error"]["code"]) == (503, "service_degraded")
    r = get("nosuchroom00000", owner_tokens)  # no copy: the outage, not a 404
    assert r.status_code == 503
