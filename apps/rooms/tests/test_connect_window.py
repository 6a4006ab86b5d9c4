"""What is published while a socket is connecting reaches it: the consumer subscribes before it
reads the room, the membership and the state, and replays what arrived meanwhile after the hello.

In-process (asgiref's ApplicationCommunicator, the project's ASGI application, one fresh hub in
the test's event loop, events delivered locally): the moment between reading the membership
and the rest of the connect cannot be hit on purpose through a real server, so the test makes
the change exactly there, from inside the read.
"""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from asgiref.testing import ApplicationCommunicator

from apps.accounts.tests.factories import TEST_ORIGIN
from apps.permissions.flags import Perm
from apps.rooms import consumers, selectors, services
from apps.rooms.tests.inprocess_ws import ws_scope

pytestmark = pytest.mark.django_db(transaction=True)


def change_right_after_the_read(monkeypatch, change) -> None:
    """``change(room)`` runs (and commits, and publishes) just after the connect read the room and
    the membership (apps.rooms.greeting's reading, then the socket's own actor): before this fix,
    the socket subscribed only after that read."""
    read = consumers.RoomConsumer._authenticated_actor
    done = []

    def read_then_change(self):
        loaded = read(self)
        if not done:  # the connect's read only
            done.append(True)
            change(self.room)
        return loaded

    monkeypatch.setattr(consumers.RoomConsumer, "_authenticated_actor", read_then_change)


def frames_until_close(room_id: str, token: str, seconds: float = 5.0) -> tuple[list[dict], int | None]:
    from synctv.asgi import application

    async def run():
        socket = ApplicationCommunicator(application, ws_scope(room_id, token))
        await socket.send_input({"type": "websocket.connect"})
        assert (await socket.receive_output(timeout=10))["type"] == "websocket.accept"
        frames: list[dict] = []
        try:
            while not await socket.receive_nothing(timeout=seconds):
                out = await socket.receive_output()
                if out["type"] == "websocket.close":
                    return frames, out.get("code")
                frames.append(json.loads(out["text"]))
            return frames, None  # nothing more for `seconds`, still open
        finally:
            await socket.send_input({"type": "websocket.disconnect", "code": 1000})
            await socket.wait(timeout=5)

    return async_to_sync(run)()


def test_a_kick_made_while_the_socket_connects_closes_it(monkeypatch, local_hub, room_with_bob):
    room, creator, bob, token = room_with_bob

    def kick(loaded_room):
        actor = selectors.room_actor(user=creator, room=loaded_room)
        target = selectors.member_get(room=loaded_room, user_id=bob.pk)
        services.member_kick(actor=actor, room=loaded_room, target=target, origin=TEST_ORIGIN)

    change_right_after_the_read(monkeypatch, kick)
    frames, code = frames_until_close(room.pk, token)
    kinds = [f["type"] for f in frames]
    assert kinds[0] == "hello" and kinds[-1] == "kicked", kinds
    assert code == consumers.CLOSE_FORBIDDEN


def test_a_permission_given_while_the_socket_connects_reaches_it(monkeypatch, local_hub, room_with_bob):
    room, creator, bob, token = room_with_bob

    def grant(loaded_room):
        actor = selectors.room_actor(user=creator, room=loaded_room)
        target = selectors.member_get(room=loaded_room, user_id=bob.pk)
        services.member_update(
            actor=actor,
            room=loaded_room,
            target=target,
            permissions_added=int(Perm.PLAY_CONTROL),
            origin=TEST_ORIGIN,
        )

    change_right_after_the_read(monkeypatch, grant)
    frames, code = frames_until_close(room.pk, token, seconds=2.0)
    assert code is None  # still connected
    updates = [f for f in frames if f["type"] == "member_updated" and f["member"]["user"]["id"] == bob.pk]
    assert updates, [f["type"] for f in frames]
    assert updates[-1]["member"]["effective_permissions"] & int(Perm.PLAY_CONTROL)


def test_a_joiner_after_a_change_gets_a_fresh_reading_of_the_room(local_hub, room_with_bob):
    """The room's part of the hello is read once per node for the sockets joining together
    (apps.rooms.greeting.readings); a change the hub hears about drops that reading, so a socket
    that joins right after the change is greeted with it, not with the shared old one."""
    from synctv.asgi import application

    room, creator, _bob, token = room_with_bob

    async def hello_of(socket) -> dict:
        await socket.send_input({"type": "websocket.connect"})
        assert (await socket.receive_output(timeout=10))["type"] == "websocket.accept"
        return json.loads((await socket.receive_output(timeout=10))["text"])

    async def run():
        first = ApplicationCommunicator(application, ws_scope(room.pk, token))
        before = (await hello_of(first))["playback"]["version"]
        actor = await sync_to_async(selectors.room_actor)(user=creator, room=room)
        await sync_to_async(services.playback_update)(
            actor=actor, room=room, position=30.0, playing=True, origin=TEST_ORIGIN
        )
        while True:  # the change reached the hub (the first socket is told)
            frame = json.loads((await first.receive_output(timeout=5))["text"])
            if frame["type"] == "playback":
                break
        second = ApplicationCommunicator(application, ws_scope(room.pk, token))
        hello = await hello_of(second)
        assert hello["playback"]["version"] == before + 1 and hello["playback"]["playing"] is True
        for socket in (first, second):
            await socket.send_input({"type": "websocket.disconnect", "code": 1000})
            await socket.wait(timeout=5)

    async_to_sync(run)()


def test_a_logout_made_while_the_socket_connects_closes_it(monkeypatch, local_hub, room_with_bob):
    """The token is checked in the same database call as the membership, after the socket
    subscribed to its user's channel: a logout right after that check is heard and acted on."""
    from apps.accounts.services import user_logout_all

    room, _creator, bob, token = room_with_bob
    change_right_after_the_read(monkeypatch, lambda _room: user_logout_all(user=bob, origin=TEST_ORIGIN))
    frames, code = frames_until_close(room.pk, token)
    kinds = [f["type"] for f in frames]
    assert kinds[0] == "hello" and kinds[-1] == "kicked", kinds
    assert frames[-1]["reason"] == "session_ended" and code == consumers.CLOSE_UNAUTHORIZED
