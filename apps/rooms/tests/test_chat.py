"""Chat through the service layer: ``services.chat_send`` (the right, the text, one INSERT, the
announcement) and ``selectors.chat_history``; the room consumer uses them and touches no model
itself. The wire format over real sockets is tests/test_ws_chat.py's; here the same frames
in-process, on the embedded SQLite default and on PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.accounts.tests.factories import TEST_ORIGIN, make_user
from apps.core import ratelimit, realtime
from apps.core.errors import InvalidInput, NotInRoom, PermissionDenied
from apps.permissions.flags import Perm
from apps.rooms import consumers, selectors, services
from apps.rooms.models import ChatMessage
from apps.rooms.moderation import word_filter
from apps.rooms.tests.inprocess_ws import ws_scope


@pytest.fixture
def chat_room(db):
    """A room, its creator's actor and a member's actor."""
    creator, _ = make_user()
    member, member_tokens = make_user()
    room = services.room_create(creator=creator, name="chat", origin=TEST_ORIGIN)
    services.member_join(user=member, room=room, origin=TEST_ORIGIN)
    actor = services.actor_for_user(user=member, room=room)
    return room, services.actor_for_user(user=creator, room=room), actor, member_tokens.access


def test_chat_send_stores_the_masked_escaped_text_in_one_insert(
    chat_room, monkeypatch, django_capture_on_commit_callbacks
):
    room, _owner, actor, _token = chat_room
    published: list = []
    monkeypatch.setattr(realtime, "publish", lambda channel, event: published.append((channel, event)))
    word_filter.mask("warm-up")  # the word list, read every few seconds per process, not per message
    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks(execute=True):
        message = services.chat_send(actor=actor, room=room, text="<b>hi</b> & 'x'", origin=TEST_ORIGIN)
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["INSERT"]
    assert message.text == "&lt;b&gt;hi&lt;/b&gt; &amp; &#x27;x&#x27;"
    assert ChatMessage.objects.get(pk=message.pk).user_id == actor.user.pk
    # Announced once committed, the frame the consumer sends.
    assert published == [(realtime.room_channel(room.pk), services.chat_event(message))]
    assert services.chat_event(message) == {
        "type": "chat",
        "id": message.pk,
        "user": {"id": actor.user.pk, "username": actor.user.public_name, "guest": False},
        "text": message.text,
    }


def test_chat_send_without_announce_publishes_nothing(
    chat_room, monkeypatch, django_capture_on_commit_callbacks
):
    room, _owner, actor, _token = chat_room
    published: list = []
    monkeypatch.setattr(realtime, "publish", lambda channel, event: published.append(event))
    with django_capture_on_commit_callbacks(execute=True):
        services.chat_send(actor=actor, room=room, text="hello", origin=TEST_ORIGIN, announce=False)
    assert published == [] and ChatMessage.objects.filter(room=room).count() == 1


def test_chat_send_checks_the_right_and_the_text(chat_room):
    room, owner, actor, _token = chat_room
    member = selectors.member_get(room=room, user_id=actor.user.pk)
    services.member_update(
        actor=owner,
        room=room,
        target=member,
        permissions_removed=int(Perm.SEND_CHAT_MESSAGE),
        origin=TEST_ORIGIN,
    )
    muted = services.actor_for_user(user=actor.user, room=room)
    with pytest.raises(PermissionDenied):
        services.chat_send(actor=muted, room=room, text="hello", origin=TEST_ORIGIN)
    outsider = services.actor_for_user(user=make_user()[0], room=room)
    with pytest.raises(NotInRoom):
        services.chat_send(actor=outsider, room=room, text="hello", origin=TEST_ORIGIN)
    with pytest.raises(InvalidInput) as blank:
        services.chat_send(actor=owner, room=room, text=" \t ", origin=TEST_ORIGIN)
    assert (blank.value.message, blank.value.details) == ("text: say something (not only spaces).", {})
    assert not ChatMessage.objects.filter(room=room).exists()


def test_chat_history_is_the_last_messages_oldest_first_in_one_query(chat_room):
    room, owner, actor, _token = chat_room
    for i in range(5):
        services.chat_send(actor=owner if i % 2 else actor, room=room, text=f"line {i}", origin=TEST_ORIGIN)
    gone = make_user()[0]
    ChatMessage.objects.create(room=room, user=gone, text="line 5")
    gone.delete()  # the message stays, its author is gone
    with CaptureQueriesContext(connection) as queries:
        history = [services.chat_event(m, history=True) for m in selectors.chat_history(room=room, limit=3)]
    assert len(queries.captured_queries) == 1
    assert [f["text"] for f in history] == ["line 3", "line 4", "line 5"]
    assert history[-1]["user"] == {"id": None, "username": "", "guest": False}
    assert all(f["history"] is True and isinstance(f["server_time"], int) for f in history)


def test_the_consumer_writes_and_reads_chat_only_through_the_service_and_the_selector():
    source = Path(consumers.__file__).read_text(encoding="utf-8")
    assert "ChatMessage" not in source and "clean_text" not in source


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("local_hub")
def test_chat_frames_on_the_socket_are_unchanged(chat_room, monkeypatch, fresh_socket_limits):
    """The errors a socket gets (the same code, message and ref, no details), the order of the
    checks (the text before the allowance) and the frame every member gets."""
    room, _owner, actor, token = chat_room
    monkeypatch.setitem(ratelimit.SOCKET_ALLOWANCES, "ws_chat", ratelimit.Allowance(1, 1.0))
    from synctv.asgi import application

    async def scenario():
        comm = ApplicationCommunicator(application, ws_scope(room.pk, token))
        await comm.send_input({"type": "websocket.connect"})
        assert (await comm.receive_output(timeout=10))["type"] == "websocket.accept"

        async def frame() -> dict:
            return json.loads((await comm.receive_output(timeout=10))["text"])

        assert (await frame())["type"] == "hello"
        frames = []
        for ref, text in ((1, "   "), (2, "first"), (3, "second")):
            await comm.send_input(
                {"type": "websocket.receive", "text": json.dumps({"type": "chat", "text": text, "ref": ref})}
            )
            while True:  # skip presence frames (member_joined ...)
                got = await frame()
                if got["type"] in ("chat", "error"):
                    frames.append(got)
                    break
        await comm.send_input({"type": "websocket.disconnect", "code": 1000})
        await comm.wait(timeout=5)
        return frames

    blank, sent, limited = async_to_sync(scenario)()
    assert {k: blank[k] for k in ("type", "code", "message", "ref")} == {
        "type": "error",
        "code": "invalid",
        "message": "text: say something (not only spaces).",
        "ref": 1,
    }
    assert "details" not in blank  # the blank message took no token: "first" still gets through
    stored = ChatMessage.objects.get(room=room)
    assert sent == {
        "type": "chat",
        "id": stored.pk,
        "user": {"id": actor.user.pk, "username": actor.user.public_name, "guest": False},
        "text": "first",
        "server_time": sent["server_time"],
    }
    assert (limited["type"], limited["code"], limited["ref"]) == ("error", "rate_limited", 3)


@pytest.mark.redis
@pytest.mark.django_db
def test_the_word_filter_keeps_masking_while_redis_is_down(fresh_word_filter):
    """The list's version lives in the shared cache (Redis). With Redis down a chat message was a
    server_error (found by bench/chaos); now the filter keeps the list it has, or reads it from the
    database when it has none, and never lets a word through unmasked."""
    from django.test import override_settings

    from apps.rooms.models import SensitiveWord
    from apps.rooms.moderation import clean_text, word_filter

    SensitiveWord.objects.create(word="darnit")
    dead = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        }
    }
    word_filter._version = None  # a process that never read the list
    with override_settings(CACHES=dead):
        assert clean_text("DarNit!") == "******!"  # read from the database meanwhile
        SensitiveWord.objects.all().delete()
        word_filter._checked_at = 0.0  # the next check: Redis still down, the list in hand kept
        assert clean_text("darnit") == "******"
