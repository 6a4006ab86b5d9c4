"""Deleting a room takes its locks in the order every other write does (issue 10, finding 8).

Every audited write locks its own rows first and appends to the audit chain last (the chain
head's row lock is taken by apps.audit.services.audit_record and held until commit). A room
delete that appended first and then cascaded held the chain lock while it waited for the room's
row (a concurrent PATCH holding it then waited for the chain: a deadlock, answered 500) and for
the whole cascade (every audited write of every room waited for it).

Real PostgreSQL, two connections (one per thread). The interleavings are forced, not timed: one
side waits until the other's backend is seen waiting on a lock in ``pg_stat_activity``, or until
the other reached a point of the delete; a write that must not be held up runs with a
``lock_timeout``, so holding it up fails at once instead of making the test slow.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.db import connection, transaction
from django.db.models.signals import pre_delete

from apps.accounts.models import User
from apps.accounts.tests.factories import TEST_ORIGIN, make_user
from apps.audit.models import AuditEvent
from apps.core.errors import NotFound, NotInRoom
from apps.core.tests.helpers import client_for
from apps.permissions.rules import RoomActor
from apps.rooms import services
from apps.rooms.models import Movie, PlaybackState, Room, RoomMember
from apps.rooms.selectors import room_actor
from apps.rooms.tests.conftest import room_url

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

MOVIES = 300
WAIT = 20.0  # an upper bound for every wait below; none of them is a timing assumption


@pytest.fixture
def big_room():
    creator, tokens = make_user()
    room = services.room_create(creator=creator, name="big", origin=TEST_ORIGIN)
    Movie.objects.bulk_create(
        Movie(room=room, name=f"m{i}", url=f"https://media.example/{i}.mp4", position=i)
        for i in range(MOVIES)
    )
    return room, creator, tokens.access


def in_thread(name: str, func: Callable, results: dict) -> threading.Thread:
    def body():
        try:
            results[name] = func()
        except BaseException as exc:  # reported by the test
            results[name] = exc
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=body, name=name, daemon=True)
    thread.start()
    return thread


def wait_for_lock_waiter(*, besides: set[int] = frozenset()) -> int:
    """The pid of a backend of this database waiting on a lock (other than ``besides``)."""
    deadline = time.monotonic() + WAIT
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            # pg_stat_activity is a snapshot taken once per transaction (the PATCH asks from
            # inside its own): drop it so each poll sees the backends as they are now.
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
            pids = {row[0] for row in cursor.fetchall()} - set(besides)
            if pids:
                return pids.pop()
            time.sleep(0.01)
    raise AssertionError("nobody ever waited on a lock")


def pause_patch_before_its_audit(monkeypatch, *, holding: threading.Event, go_on: Callable[[], None]):
    """In the thread named "patch", room_update has locked the room's row and is about to append
    to the audit chain: tell ``holding``, run ``go_on()``, then append."""
    real = services.rooms._audit  # room_update and room_delete live there

    def audit(*args, **kwargs):
        if threading.current_thread().name == "patch":
            holding.set()
            go_on()
        return real(*args, **kwargs)

    monkeypatch.setattr(services.rooms, "_audit", audit)


def test_delete_while_a_patch_holds_the_room_neither_deadlocks_nor_fails(monkeypatch, big_room):
    room, _creator, token = big_room
    results: dict = {}
    holding = threading.Event()
    # The PATCH has the room's row; it goes on once the DELETE waits for a lock. Before the fix
    # the DELETE held the chain lock by then and waited for the room: a deadlock.
    pause_patch_before_its_audit(monkeypatch, holding=holding, go_on=wait_for_lock_waiter)

    patch = in_thread(
        "patch", lambda: client_for(token).patch(room_url(room), {"name": "renamed"}, format="json"), results
    )
    assert holding.wait(WAIT)
    delete = in_thread("delete", lambda: client_for(token).delete(room_url(room)), results)
    patch.join(WAIT)
    delete.join(WAIT)

    for name in ("patch", "delete"):
        assert not isinstance(results.get(name), BaseException), (name, repr(results.get(name)))
    assert results["patch"].status_code == 200, results["patch"].content
    assert results["delete"].status_code == 204, results["delete"].content
    assert not Room.objects.filter(pk=room.pk).exists()
    assert not Movie.objects.filter(room_id=room.pk).exists()
    actions = list(
        AuditEvent.objects.filter(room_id=room.pk).order_by("seq").values_list("action", flat=True)
    )
    assert actions[-2:] == ["room.update", "room.delete"], actions


def pause_delete_in_its_cascade(*, reached: threading.Event, release: threading.Event) -> Callable[[], None]:
    """Hold the delete in the middle of its cascade (Room's pre_delete: the related rows are
    collected, nothing deleted yet). Returns the function that disconnects the hook."""

    def hold(sender, instance, **kwargs):
        reached.set()
        assert release.wait(WAIT), "never released"

    pre_delete.connect(hold, sender=Room, dispatch_uid="test-delete-locking", weak=False)
    return lambda: pre_delete.disconnect(sender=Room, dispatch_uid="test-delete-locking")


def test_a_patch_that_loses_the_race_with_a_delete_answers_404(big_room):
    room, _creator, token = big_room
    results: dict = {}
    reached, release = threading.Event(), threading.Event()
    unhook = pause_delete_in_its_cascade(reached=reached, release=release)
    try:
        delete = in_thread("delete", lambda: client_for(token).delete(room_url(room)), results)
        assert reached.wait(WAIT)
        patch = in_thread(
            "patch", lambda: client_for(token).patch(room_url(room), {"name": "late"}, format="json"), results
        )
        wait_for_lock_waiter()  # the PATCH waits for the room's row
        release.set()
        delete.join(WAIT)
        patch.join(WAIT)
    finally:
        release.set()
        unhook()
    assert not isinstance(results.get("delete"), BaseException), repr(results.get("delete"))
    assert results["delete"].status_code == 204, results["delete"].content
    assert not isinstance(results.get("patch"), BaseException), repr(results.get("patch"))
    assert results["patch"].status_code == 404, results["patch"].content
    assert results["patch"].json()["error"]["code"] == "not_found"


def test_an_unrelated_audited_write_is_not_held_up_by_a_delete_cascade(big_room):
    room, creator, token = big_room
    other = services.room_create(creator=creator, name="other", origin=TEST_ORIGIN)
    owner = services.actor_for_user(user=creator, room=other)
    results: dict = {}
    reached, release = threading.Event(), threading.Event()
    unhook = pause_delete_in_its_cascade(reached=reached, release=release)
    try:
        delete = in_thread("delete", lambda: client_for(token).delete(room_url(room)), results)
        assert reached.wait(WAIT)
        # The delete is inside its cascade. An audited write of another room takes the chain lock
        # now; with a lock_timeout, waiting for the delete fails it at once (LockNotAvailable).
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '2s'")
            services.room_update(actor=owner, room=other, changes={"name": "unrelated"}, origin=TEST_ORIGIN)
    finally:
        release.set()
        delete.join(WAIT)
        unhook()
    assert not isinstance(results.get("delete"), BaseException), repr(results.get("delete"))
    assert results["delete"].status_code == 204, results["delete"].content
    assert Room.objects.get(pk=other.pk).name == "unrelated"
    assert not Room.objects.filter(pk=room.pk).exists()


# --- a write that lost the race with a delete ---------------------------------------------------------
# The room object the write holds was read before the delete committed; the write then finds no
# row to lock, or its insert references a room that is gone at commit. Either way the answer is
# NotFound (404), never an IntegrityError (500). Sequential: the delete has already won.


@dataclass
class StaleReads:
    """Everything a racing request had read before the delete committed."""

    room: Room
    actor: RoomActor
    movie: Movie
    joiner: User  # not a member yet
    bob: User  # an active member
    bob_row: RoomMember
    carol_row: RoomMember  # banned


def delete_a_room_after_reading_it() -> StaleReads:
    creator, _ = make_user()
    joiner, _ = make_user()
    bob, _ = make_user()
    carol, _ = make_user()
    room = services.room_create(
        creator=creator, name="gone", settings={"allow_guests": True}, origin=TEST_ORIGIN
    )
    movie = services.movies_add(
        actor=room_actor(user=creator, room=room),
        room=room,
        items=[{"name": "m", "url": "https://media.example/m.mp4"}],
        origin=TEST_ORIGIN,
    )[0]
    for user in (bob, carol):
        services.member_join(user=user, room=room, origin=TEST_ORIGIN)
    owner = room_actor(user=creator, room=room)
    services.member_ban(
        actor=owner, room=room, target=RoomMember.objects.get(room=room, user=carol), origin=TEST_ORIGIN
    )
    stale = StaleReads(
        room=room,
        actor=room_actor(user=creator, room=room),
        movie=movie,
        joiner=joiner,
        bob=bob,
        bob_row=RoomMember.objects.get(room=room, user=bob),
        carol_row=RoomMember.objects.get(room=room, user=carol),
    )
    PlaybackState.objects.filter(room=room).delete()  # the rare path that creates the row
    Room.objects.filter(pk=room.pk).delete()
    return stale


def room_and_member_writes(stale: StaleReads) -> dict[str, Callable[[], object]]:
    """Every room and membership write, on what the racing request had read."""
    actor, room, bob_row, carol_row = stale.actor, stale.room, stale.bob_row, stale.carol_row
    return {
        "room_update": lambda: services.room_update(
            actor=actor, room=room, changes={"name": "renamed"}, origin=TEST_ORIGIN
        ),
        "room_set_closed": lambda: services.room_set_closed(
            actor=actor, room=room, closed=True, origin=TEST_ORIGIN
        ),
        "member_join": lambda: services.member_join(user=stale.joiner, room=room, origin=TEST_ORIGIN),
        "member_leave": lambda: services.member_leave(user=stale.bob, room=room, origin=TEST_ORIGIN),
        "guest_join": lambda: services.guest_join(room=room, name="visitor", origin=TEST_ORIGIN),
        "invite_create": lambda: services.invite_create(
            actor=actor, room=room, max_uses=None, expires_in=None, origin=TEST_ORIGIN
        ),
        "member_update": lambda: services.member_update(
            actor=actor, room=room, target=bob_row, permissions_added=0, origin=TEST_ORIGIN
        ),
        "member_kick": lambda: services.member_kick(
            actor=actor, room=room, target=bob_row, origin=TEST_ORIGIN
        ),
        "member_ban": lambda: services.member_ban(actor=actor, room=room, target=bob_row, origin=TEST_ORIGIN),
        "member_unban": lambda: services.member_unban(
            actor=actor, room=room, target=carol_row, origin=TEST_ORIGIN
        ),
    }


def playlist_and_playback_writes(stale: StaleReads) -> dict[str, Callable[[], object]]:
    """Every playlist and playback write, on what the racing request had read."""
    actor, room, movie = stale.actor, stale.room, stale.movie
    return {
        "movies_add": lambda: services.movies_add(
            actor=actor,
            room=room,
            items=[{"name": "n", "url": "https://media.example/n.mp4"}],
            origin=TEST_ORIGIN,
        ),
        "movie_edit": lambda: services.movie_edit(
            actor=actor, room=room, movie=movie, changes={"name": "renamed"}, origin=TEST_ORIGIN
        ),
        "movie_delete": lambda: services.movie_delete(
            actor=actor, room=room, movie=movie, origin=TEST_ORIGIN
        ),
        "playlist_clear": lambda: services.playlist_clear(actor=actor, room=room, origin=TEST_ORIGIN),
        "playlist_reorder": lambda: services.playlist_reorder(
            actor=actor, room=room, order=[movie.pk], origin=TEST_ORIGIN
        ),
        "playback_update": lambda: services.playback_update(
            actor=actor, room=room, playing=True, origin=TEST_ORIGIN
        ),
    }


def test_writes_to_a_room_deleted_meanwhile_answer_not_found():
    stale = delete_a_room_after_reading_it()
    writes = {**room_and_member_writes(stale), **playlist_and_playback_writes(stale)}
    audit_rows = AuditEvent.objects.count()
    wrong = {}
    for name, write in writes.items():
        try:
            write()
        except (NotFound, NotInRoom):  # 404, or 403 not_in_room where the membership went with it
            continue
        except Exception as exc:  # the test names every write that answers anything else
            wrong[name] = repr(exc)
        else:
            wrong[name] = "succeeded"
    assert not wrong, wrong
    assert not Room.objects.filter(pk=stale.room.pk).exists()
    assert AuditEvent.objects.count() == audit_rows  # nothing audited for a room that is gone
