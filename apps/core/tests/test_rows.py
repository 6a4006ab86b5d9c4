"""apps/core/rows: the single-row statements of the real-time write path read and write exactly
what the ORM would (types, time zones, JSON, foreign keys), lock for real on PostgreSQL, and are
refused for models whose save signals someone listens to."""

from __future__ import annotations

import threading
from datetime import timedelta

import psycopg
import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.accounts.models import User
from apps.accounts.tests.factories import TEST_ORIGIN, make_user
from apps.audit.models import AuditEvent
from apps.core import rows
from apps.rooms import services
from apps.rooms.models import Movie, PlaybackState, RoomMember

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def room():
    return services.room_create(creator=make_user()[0], name="rows", origin=TEST_ORIGIN)


def orm_fields(instance) -> dict:
    fresh = type(instance).objects.get(pk=instance.pk)
    return {f.attname: getattr(fresh, f.attname) for f in type(instance)._meta.concrete_fields}


def instance_fields(instance) -> dict:
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


def test_lock_reads_what_the_orm_reads(room):
    movie = Movie.objects.create(room=room, name="m", url="https://example.com/a.mp4", position=1)
    when = timezone.now() - timedelta(seconds=3)
    PlaybackState.objects.filter(room=room).update(
        movie=movie, playing=True, position=12.5, rate=1.25, updated_at=when, version=7
    )
    with transaction.atomic():
        state = rows.lock(PlaybackState, room.pk)
    assert instance_fields(state) == orm_fields(state)
    assert state.playing is True and isinstance(state.position, float)
    assert state.updated_at == when and state.updated_at.tzinfo is not None
    assert state.movie_id == movie.pk
    assert not state._state.adding and state._state.db == "default"


def test_lock_of_a_missing_row_is_none():
    with transaction.atomic():
        assert rows.lock(PlaybackState, "no-such-room") is None


def test_update_writes_the_named_fields_only(room):
    with transaction.atomic():
        state = rows.lock(PlaybackState, room.pk)
        state.playing, state.position, state.version = True, 99.0, state.version + 1
        state.rate = 3.0  # changed in memory, not named: must not be written
        assert rows.update(state, ("playing", "position", "version")) == 1
    fresh = PlaybackState.objects.get(pk=room.pk)
    assert (fresh.playing, fresh.position, fresh.version, fresh.rate) == (True, 99.0, state.version, 1.0)


def test_update_of_a_deleted_row_changes_nothing(room):
    state = PlaybackState.objects.get(pk=room.pk)
    PlaybackState.objects.filter(pk=room.pk).delete()
    assert rows.update(state, ("playing",)) == 0
    assert not PlaybackState.objects.filter(pk=room.pk).exists()


def test_insert_returns_the_automatic_key_and_round_trips_json():
    details = {"nested": {"list": [1, 2.5, None, "é"]}, "text": "<b>&\"'"}
    event = AuditEvent(
        created_at=timezone.now(),
        action="test.rows",
        details=details,
        ip="2001:db8::1",
        user_agent="rows",
        seq=10_000_000,
        prev_hash="0" * 64,
        hash="1" * 64,
    )
    rows.insert(event)
    assert event.pk is not None and not event._state.adding
    assert orm_fields(event) == instance_fields(event)
    assert AuditEvent.objects.get(pk=event.pk).details == details


def test_insert_then_inserts_and_runs_the_next_statement_in_one_round_trip_on_postgresql(room):
    event = AuditEvent(
        created_at=timezone.now(),
        action="test.insert_then",
        details={"k": [1, "é"]},
        seq=10_000_001,
        prev_hash="0" * 64,
        hash="2" * 64,
    )
    table = connection.ops.quote_name(PlaybackState._meta.db_table)
    position = connection.ops.quote_name(PlaybackState._meta.get_field("position").column)
    then = f"UPDATE {table} SET {position} = %s WHERE {connection.ops.quote_name('room_id')} = %s"
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        rows.insert_then(event, then, [42.5, room.pk])
    sent = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith(("BEGIN", "COMMIT"))]
    assert len(sent) == (1 if connection.vendor == "postgresql" else 2), sent
    assert event.pk is not None and not event._state.adding
    assert orm_fields(event) == instance_fields(event)
    assert PlaybackState.objects.get(room=room).position == 42.5


def test_insert_then_runs_the_insert_even_when_the_next_statement_matches_nothing():
    event = AuditEvent(created_at=timezone.now(), action="test.nothing", seq=10_000_002, prev_hash="0" * 64)
    table = connection.ops.quote_name(PlaybackState._meta.db_table)
    with transaction.atomic():
        rows.insert_then(
            event, f"DELETE FROM {table} WHERE {connection.ops.quote_name('room_id')} = %s", ["none"]
        )
    assert AuditEvent.objects.filter(pk=event.pk, action="test.nothing").exists()


def test_models_with_save_receivers_are_refused_for_writes():
    # User has post_save receivers (django-auditlog, the authentication cache).
    with pytest.raises(ValueError, match="save signal receivers"):
        rows.lock(User, "x")


def test_find_reads_the_row_the_orm_reads(room):
    member = RoomMember.objects.filter(room=room).first()
    found = rows.find(RoomMember, room_id=room.pk, user_id=member.user_id)
    assert found is not None and found.pk == member.pk and found._state.adding is False
    assert {f.attname: getattr(found, f.attname) for f in RoomMember._meta.concrete_fields} == {
        f.attname: getattr(member, f.attname) for f in RoomMember._meta.concrete_fields
    }
    assert rows.find(RoomMember, room_id=room.pk, user_id="nobody") is None


def test_the_statements_are_the_few_the_orm_would_send(room):
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        state = rows.lock(PlaybackState, room.pk)
        state.position = 5.0
        rows.update(state, ("position",))
    sent = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith(("BEGIN", "COMMIT"))]
    assert len(sent) == 2, sent
    assert sent[0].startswith("SELECT") and sent[1].startswith("UPDATE")
    if connection.vendor == "postgresql":
        assert sent[0].endswith("FOR UPDATE")


@pytest.mark.postgres
def test_lock_holds_the_row_until_the_transaction_ends(room):
    """Another connection cannot lock the row while ``rows.lock`` holds it, and can right after."""
    db = connection.settings_dict  # the test database
    dsn = f"host={db['HOST'] or '127.0.0.1'} port={db['PORT'] or 5432} user={db['USER']} dbname={db['NAME']}"
    results = []
    locked, release = threading.Event(), threading.Event()

    def other() -> None:
        locked.wait(5)
        with psycopg.connect(dsn, autocommit=False) as conn:
            for _ in range(2):
                try:
                    conn.execute(
                        "SELECT 1 FROM rooms_playbackstate WHERE room_id = %s FOR UPDATE NOWAIT", [room.pk]
                    )
                    results.append("locked it")
                except psycopg.errors.LockNotAvailable:
                    results.append("busy")
                conn.rollback()
                release.set()
                if len(results) == 1:
                    done.wait(5)

    done = threading.Event()
    thread = threading.Thread(target=other)
    thread.start()
    with transaction.atomic():
        rows.lock(PlaybackState, room.pk)
        locked.set()
        release.wait(5)
    done.set()
    thread.join(10)
    assert results == ["busy", "locked it"]


def test_an_sqlite_without_returning_fails_the_system_check(monkeypatch):
    import sqlite3

    from apps.audit.checks import sqlite_supports_returning

    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 34, 1))
    errors = sqlite_supports_returning()
    if connection.vendor == "sqlite":
        assert [e.id for e in errors] == ["audit.E001"]
    else:
        assert errors == []
    monkeypatch.undo()
    assert sqlite_supports_returning() == []
