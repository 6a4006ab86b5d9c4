"""The room consumer in-process (no server): what a connect reads from the database, that the
hello built from those reads is what fresh reads give, how frames are dispatched, and how many
threads run the consumers' database calls. Runs on the embedded SQLite default and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.accounts.models import Role
from apps.accounts.selectors import authenticate_verified_token, verify_access_token
from apps.accounts.tests.factories import TEST_ORIGIN, make_user
from apps.core import ratelimit
from apps.permissions.flags import Perm
from apps.rooms import dbthreads, greeting, selectors, services
from apps.rooms.consumers import RoomConsumer
from apps.rooms.dbthreads import resolve_db_threads
from apps.rooms.models import ChatMessage, RoomMember
from apps.rooms.serializers import MemberSerializer, RoomSerializer

# What connect reads once the token is verified: the room with its member count, the playback
# state, the chat history (apps.rooms.greeting.read_room: read once per node for the sockets that
# join in the same moment) and the membership (each socket's own). (Authentication itself is
# apps.accounts' business: one query for the user and session, or none when its per-process cache
# answers.)
CONNECT_QUERIES = 4
JOINING_A_FRESH_READING_QUERIES = 1


@pytest.fixture
def busy_room(db):
    """A room with several members (one with a permission override), chat by different users
    and a playback state, so a missing select_related or a lazy foreign key shows as a query."""
    creator, _ = make_user()
    room = services.room_create(creator=creator, name="connect <&>", origin=TEST_ORIGIN)
    owner = services.actor_for_user(user=creator, room=room)
    members = []
    for _ in range(3):
        user, pair = make_user()
        services.member_join(user=user, room=room, origin=TEST_ORIGIN)
        members.append((user, pair.access))
    services.member_update(
        actor=owner,
        room=room,
        target=RoomMember.objects.get(room=room, user=members[0][0]),
        permissions_added=int(Perm.PLAY_CONTROL),
        origin=TEST_ORIGIN,
    )
    services.playback_update(actor=owner, room=room, position=12.5, playing=True, origin=TEST_ORIGIN)
    for i, (user, _token) in enumerate([*members, (creator, None)]):
        ChatMessage.objects.create(room=room, user=user, text=f"line {i}")
    return room, members


def authenticated(token: str, room_id: str) -> RoomConsumer:
    """A consumer past ``_admit``: its token verified (on the event loop, in a real connect)."""
    consumer = RoomConsumer()
    consumer.room_id = room_id
    consumer._verified = verify_access_token(token)
    consumer.claims = {"token_type": consumer._verified["token_type"], "rid": consumer._verified.get("rid")}
    return consumer


def connect_reads(consumer: RoomConsumer, reading=None) -> tuple[RoomConsumer, dict, list[dict]]:
    """What RoomConsumer.connect reads once the token is verified, on its database threads, in
    order: the room's reading (unless one is fresh: ``reading``), then in one call the rest of the
    token check and the socket's own actor."""
    reading = reading or greeting.read_room(consumer.room_id)
    consumer.room = greeting.shared_room(reading)
    consumer.user, consumer.actor, member = consumer._authenticated_actor()
    return consumer, greeting.hello(reading, member), reading.history


def measured(token: str, room_id: str, reading=None):
    """The queries of ``connect_reads`` but those of authentication itself (one for the user and
    session, or none when the per-process cache answers: it needs Redis), counted apart."""
    connect_reads(authenticated(token, room_id))  # warm-up: the key store and the like load once
    consumer = authenticated(token, room_id)
    with CaptureQueriesContext(connection) as auth:
        authenticate_verified_token(consumer._verified)
    assert len(auth.captured_queries) <= 1, auth.captured_queries
    with CaptureQueriesContext(connection) as ctx:
        consumer, hello, history = connect_reads(consumer, reading)
    sql = [q["sql"][:120] for q in ctx.captured_queries]
    return len(ctx.captured_queries) - len(auth.captured_queries), sql, consumer, hello, history


def test_connect_reads_four_queries_and_the_hello_equals_fresh_reads(busy_room):
    room, members = busy_room
    user, token = members[0]
    count, sql, consumer, hello, history = measured(token, room.pk)
    assert count == CONNECT_QUERIES, sql

    assert consumer.actor.is_member and consumer.actor.can(Perm.PLAY_CONTROL)
    # The same content as serialising rows read afresh (what connect sent before it read less).
    fresh_member = RoomMember.objects.get(room=room, user=user)
    assert hello["member"] == dict(MemberSerializer(fresh_member).data)
    assert hello["member"]["effective_permissions"] & int(Perm.PLAY_CONTROL)
    assert hello["room"] == dict(RoomSerializer(selectors.room_get(room.pk, with_counts=True)).data)
    assert hello["room"]["member_count"] == 4 and hello["room"]["name"] == "connect &lt;&amp;&gt;"
    assert hello["playback"]["playing"] is True and hello["playback"]["version"] == 1
    assert [c["text"] for c in history] == [f"line {i}" for i in range(4)]
    assert {c["user"]["username"] for c in history} == {u.public_name for u, _ in members} | {
        room.creator.public_name
    }


def test_connect_query_count_does_not_grow_with_the_room(busy_room):
    room, members = busy_room
    token = members[1][1]
    small, sql, *_ = measured(token, room.pk)
    for i in range(6):  # more members and more chat authors
        user, _ = make_user()
        services.member_join(user=user, room=room, origin=TEST_ORIGIN)
        ChatMessage.objects.create(room=room, user=user, text=f"more {i}")
    large, sql, _, hello, history = measured(token, room.pk)
    assert hello["room"]["member_count"] == 10 and len(history) == 10
    assert large == small == CONNECT_QUERIES, sql


def test_a_socket_joining_while_the_rooms_reading_is_fresh_reads_only_its_membership(busy_room):
    room, members = busy_room
    reading = greeting.read_room(room.pk)
    for user, token in members:
        count, sql, consumer, hello, history = measured(token, room.pk, reading)
        assert count == JOINING_A_FRESH_READING_QUERIES, sql
        assert hello["member"] == dict(MemberSerializer(RoomMember.objects.get(room=room, user=user)).data)
        assert consumer.room is reading.room  # shared, read once for the sockets joining together
        assert len(history) == 4


def test_a_site_admin_without_a_membership_gets_the_same_room(busy_room):
    room, _ = busy_room
    admin, pair = make_user()
    admin.role = Role.ADMIN
    admin.save(update_fields=["role"])
    count, sql, consumer, hello, _ = measured(pair.access, room.pk)
    assert count == CONNECT_QUERIES, sql
    assert consumer.actor.is_site_admin and hello["member"]["role"] == "site_admin"
    assert hello["room"] == dict(RoomSerializer(selectors.room_get(room.pk, with_counts=True)).data)


# --- dispatch ---------------------------------------------------------------------------------------


class Sent(list):
    async def __call__(self, message):
        self.append(message)


def dispatching_consumer() -> tuple[RoomConsumer, Sent]:
    consumer = RoomConsumer()
    consumer.scope = {"type": "websocket", "subprotocols": [], "headers": []}
    consumer.base_send = sent = Sent()
    consumer._frames = ratelimit.socket_bucket("ws_frame")
    return consumer, sent


def test_frames_are_dispatched_without_the_per_frame_connection_hop(monkeypatch):
    """A received frame reaches its handler without channels' aclose_old_connections() thread hop
    (database calls close old connections themselves); bad input still gets an error frame."""
    hops = []

    async def counted_hop():
        hops.append(1)

    monkeypatch.setattr("channels.consumer.aclose_old_connections", counted_hop)
    consumer, sent = dispatching_consumer()

    async def scenario():
        await consumer.dispatch({"type": "websocket.receive", "text": json.dumps({"type": "ping", "t": 7})})
        await consumer.dispatch({"type": "websocket.receive", "text": "{not json"})
        await consumer.dispatch({"type": "websocket.receive", "text": json.dumps({"type": "nope"})})
        await consumer.dispatch({"type": "websocket.receive", "bytes": b"\xff\x00"})
        with pytest.raises(ValueError, match="No handler"):
            await consumer.dispatch({"type": "websocket.nothing"})

    asyncio.run(scenario())
    frames = [json.loads(m["text"]) for m in sent]
    assert [f["type"] for f in frames] == ["pong", "error", "error", "error"]
    assert frames[0]["t"] == 7 and {f["code"] for f in frames[1:]} == {"invalid"}
    assert hops == []


# --- database threads -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "vendor", "pool", "threads"),
    [
        (0, "sqlite", None, 1),  # embedded default: the one thread
        (8, "sqlite", None, 1),  # SQLite with concurrent writers: "database is locked"
        (0, "postgresql", {"min_size": 1, "max_size": 8}, 4),  # the Procfile's ws line
        (16, "postgresql", {"min_size": 1, "max_size": 8}, 7),  # one connection left for HTTP
        (6, "postgresql", {"min_size": 1, "max_size": 8}, 6),
        (0, "postgresql", {"min_size": 1, "max_size": 2}, 1),
        (0, "postgresql", {"min_size": 1, "max_size": 1}, 1),
        (0, "postgresql", True, 3),  # psycopg_pool's default size is 4
        (0, "postgresql", None, 4),  # persistent connections: one per thread, bounded
        (2, "postgresql", None, 2),
    ],
)
def test_database_thread_count(requested, vendor, pool, threads):
    assert resolve_db_threads(requested=requested, vendor=vendor, pool=pool) == threads


def test_this_process_uses_the_threads_its_database_allows(db):
    """SQLite keeps channels' one shared thread; PostgreSQL gets a pool of threads that never
    outnumbers the connection pool."""
    dbthreads.db_executor.cache_clear()
    try:
        executor = dbthreads.db_executor()
        call = dbthreads.database_sync_to_async(lambda: None)
        if connection.vendor == "sqlite":
            assert executor is None and call._thread_sensitive
        else:
            assert isinstance(call, dbthreads.OnDatabaseThreads) and call.executor is executor
            pool = connection.settings_dict.get("OPTIONS", {}).get("pool")
            if isinstance(pool, dict):
                assert executor._max_workers < pool["max_size"]
    finally:
        dbthreads.db_executor.cache_clear()


def test_a_database_call_runs_on_a_database_thread_as_channels_would(db, monkeypatch):
    """The lean hop keeps what channels' DatabaseSyncToAsync gives a consumer: the call runs on
    one of the database threads, not the event loop's; old connections are closed before and
    after it; the caller's context variables are visible; its exception reaches the caller."""
    executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ws-db-test")
    closed: list[str] = []
    monkeypatch.setattr(
        dbthreads, "close_old_connections", lambda: closed.append(threading.current_thread().name)
    )
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")

    def seen() -> tuple[str, str]:
        return threading.current_thread().name, marker.get()

    def fails() -> None:
        raise LookupError("from the database thread")

    async def scenario() -> tuple[str, str]:
        marker.set("the caller's")
        result = await dbthreads.OnDatabaseThreads(seen, executor)()
        with pytest.raises(LookupError, match="from the database thread"):
            await dbthreads.OnDatabaseThreads(fails, executor)()
        return result

    try:
        thread, value = async_to_sync(scenario)()
    finally:
        executor.shutdown(wait=True)
    assert thread.startswith("ws-db-test") and value == "the caller's"
    assert len(closed) == 4 and all(name.startswith("ws-db-test") for name in closed)
