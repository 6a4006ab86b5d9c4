"""How a WebSocket connect checks its token (docs/realtime.md, "Connecting"): the signature on the
event loop while the key store holds the keys, on a database thread when it must read them; the
rest (revocation, user, ban, session) in the connect's one database call with the membership.

In-process (asgiref's ApplicationCommunicator, the project's ASGI application, a hub of the test's
own), on the embedded SQLite default and on PostgreSQL.
"""

from __future__ import annotations

import json
import threading

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator

from apps.accounts import keystore as keystore_module
from apps.accounts import selectors as account_selectors
from apps.accounts.keystore import KeysNotLoaded, keystore
from apps.accounts.models import Role
from apps.accounts.services import user_logout_all
from apps.accounts.tests.factories import TEST_ORIGIN, make_user, open_session
from apps.core import ratelimit
from apps.rooms import consumers, handshake, services
from apps.rooms.tests.inprocess_ws import ws_scope

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("local_hub")]


@pytest.fixture(autouse=True)
def _fresh_limits(fresh_socket_limits):
    """Every test here counts sockets and allowances from zero."""


def first_frame(room_id: str, token: str) -> tuple[dict, int | None]:
    """Connect; the first frame, and the close code if the server closed right after it."""
    from synctv.asgi import application

    async def run():
        socket = ApplicationCommunicator(application, ws_scope(room_id, token))
        await socket.send_input({"type": "websocket.connect"})
        assert (await socket.receive_output(timeout=10))["type"] == "websocket.accept"
        frame = json.loads((await socket.receive_output(timeout=10))["text"])
        code = None
        if frame["type"] == "error":
            code = (await socket.receive_output(timeout=10)).get("code")
        await socket.send_input({"type": "websocket.disconnect", "code": code or 1000})
        await socket.wait(timeout=5)
        return frame, code

    return async_to_sync(run)()


def test_a_stale_key_store_is_read_on_a_database_thread_then_the_loop_verifies(monkeypatch, room_with_bob):
    room, _creator, _bob, access = room_with_bob
    calls: list[tuple[str, str]] = []  # (thread, outcome) of each verification
    real = handshake.verify_access_token

    def recorded(raw):
        where = "loop" if keystore_module._offline.get() else threading.current_thread().name
        try:
            token = real(raw)
        except KeysNotLoaded:
            calls.append((where, "keys not loaded"))
            raise
        calls.append((where, "verified"))
        return token

    monkeypatch.setattr(handshake, "verify_access_token", recorded)
    keystore.invalidate()  # due for its refresh: reading it is database work
    assert first_frame(room.pk, access)[0]["type"] == "hello"
    assert calls[0] == ("loop", "keys not loaded"), calls
    assert calls[1][0] != "loop" and calls[1][1] == "verified", calls
    calls.clear()
    assert first_frame(room.pk, access)[0]["type"] == "hello"
    assert calls == [("loop", "verified")], calls  # loaded now: no database call for the signature


def test_offline_lookups_never_read_the_database(django_assert_num_queries):
    token = make_user()[1].access
    keystore.invalidate()  # due for its refresh
    with django_assert_num_queries(0), keystore.offline():
        with pytest.raises(KeysNotLoaded):
            keystore.verifying_key("any")
        with pytest.raises(KeysNotLoaded):
            account_selectors.verify_access_token(token)
    assert account_selectors.verify_access_token(token)["sub"]  # not offline: loads, verifies
    keystore._last_miss_reload = 0.0  # a kid it does not hold may be a rotation on another node
    with django_assert_num_queries(0), keystore.offline(), pytest.raises(KeysNotLoaded):
        keystore.verifying_key("a-kid-nobody-has")
    with django_assert_num_queries(0), keystore.offline():  # held and fresh: verified offline
        assert account_selectors.verify_access_token(token)["sub"]


def test_a_refused_token_costs_its_user_no_connect_allowance(room_with_bob):
    """Revocation is checked in the connect's database call, after this node took the user's
    connect allowance: a refusal gives it back, so a stolen and revoked token cannot lock its
    owner out of a room by connecting with it."""
    room, _creator, bob, old = room_with_bob
    user_logout_all(user=bob, origin=TEST_ORIGIN)
    burst = int(ratelimit.SOCKET_ALLOWANCES["ws_connect"].burst)
    for _ in range(burst + 2):
        frame, code = first_frame(room.pk, old)
        assert (frame["code"], code) == ("connection_refused", consumers.CLOSE_UNAUTHORIZED), frame
    assert first_frame(room.pk, open_session(bob).access)[0]["type"] == "hello"


def test_a_refused_token_does_not_learn_whether_a_room_exists(room_with_bob):
    room, _creator, bob, access = room_with_bob
    assert first_frame("NoSuchRoom000000", access)[1] == consumers.CLOSE_NOT_FOUND
    bob.role = Role.BANNED
    bob.save(update_fields=["role"])
    for room_id in (room.pk, "NoSuchRoom000000"):
        frame, code = first_frame(room_id, access)
        assert code == consumers.CLOSE_FORBIDDEN and "banned" in frame["message"], (room_id, frame)
    carol, carol_tokens = make_user()
    carol_access = carol_tokens.access
    services.member_join(user=carol, room=room, origin=TEST_ORIGIN)
    user_logout_all(user=carol, origin=TEST_ORIGIN)
    for room_id in (room.pk, "NoSuchRoom000000"):
        assert first_frame(room_id, carol_access)[1] == consumers.CLOSE_UNAUTHORIZED, room_id
