"""Who hears about members over the WebSocket, and how much one user can make a room hear
(issue 10, findings 10 and 11).

- VIEW_MEMBER_LIST holds on the socket as on REST ``/members``: without it ``hello`` lists only
  yourself online and ``member_joined``/``member_left``/``member_updated``/``member_ready`` about
  others never arrive; your own ``member_updated`` still does.
- ``ready`` is broadcast only when it changes, within the ``ws_ready`` allowance per user and
  room (apps.core.ratelimit; the latest state still goes out); a user has at most
  MAX_SOCKETS_PER_USER_ROOM sockets in a room on a node, the next one is refused with 4429.

In-process (asgiref's ApplicationCommunicator, the project's ASGI application, one fresh hub in the
test's event loop, events delivered locally), on the embedded SQLite default and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from asgiref.testing import ApplicationCommunicator

from apps.accounts.tests.factories import TEST_ORIGIN, make_user
from apps.core import ratelimit
from apps.permissions.flags import Perm
from apps.rooms import consumers, roster, selectors, services
from apps.rooms.tests.inprocess_ws import ws_scope

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("local_hub")]

MEMBER_EVENTS = ("member_joined", "member_left", "member_updated", "member_ready")


class Sock:
    """One WebSocket through synctv.asgi.application; every frame it got is kept in ``frames``."""

    def __init__(
        self, room_id: str, token: str, label: str, versions: tuple[str, ...] = ("synctv.v1",)
    ) -> None:
        from synctv.asgi import application

        self.label = label
        self.frames: list[dict] = []
        self.close_code: int | None = None
        self.comm = ApplicationCommunicator(application, ws_scope(room_id, token, versions))

    async def open(self) -> Sock:
        await self.comm.send_input({"type": "websocket.connect"})
        assert (await self.comm.receive_output(timeout=10))["type"] == "websocket.accept"
        return self

    async def hello(self) -> dict:
        await self.open()
        first = await self.next()
        assert first["type"] == "hello", (self.label, first)
        return first

    async def next(self, timeout: float = 10) -> dict:
        out = await self.comm.receive_output(timeout=timeout)
        if out["type"] == "websocket.close":
            self.close_code = out.get("code")
            return {"type": "<closed>", "code": self.close_code}
        frame = json.loads(out["text"])
        self.frames.append(frame)
        return frame

    async def settle(self, quiet: float = 0.3) -> list[dict]:
        """Read until nothing arrives for ``quiet`` seconds; the frames read."""
        got = []
        while self.close_code is None and not await self.comm.receive_nothing(timeout=quiet):
            got.append(await self.next())
        return got

    async def send(self, message: dict) -> None:
        await self.comm.send_input({"type": "websocket.receive", "text": json.dumps(message)})

    async def close(self) -> None:
        await self.comm.send_input({"type": "websocket.disconnect", "code": 1000})
        await self.comm.wait(timeout=5)

    def of(self, *kinds: str) -> list[dict]:
        return [f for f in self.frames if f["type"] in kinds]

    async def until(self, kind: str, user_id: str, timeout: float = 10) -> dict:
        """Read until a ``kind`` frame about ``user_id`` arrives (or one already did)."""
        deadline = time.monotonic() + timeout
        while True:
            for frame in self.of(kind):
                if about(frame) == user_id:
                    return frame
            await self.next(timeout=max(0.1, deadline - time.monotonic()))


def about(frame: dict) -> str | None:
    user = (frame.get("member") or {}).get("user") if frame["type"] == "member_updated" else frame.get("user")
    return (user or {}).get("id")


@pytest.fixture(autouse=True)
def _fresh_limits(fresh_socket_limits):
    """Every test here counts sockets and allowances from zero."""


@pytest.fixture
def room_of_three():
    """The creator; bob, a member (with VIEW_MEMBER_LIST, the default); carol, a member the
    creator took VIEW_MEMBER_LIST from."""
    creator, creator_tokens = make_user()
    bob, bob_tokens = make_user()
    carol, carol_tokens = make_user()
    room = services.room_create(creator=creator, name="members", origin=TEST_ORIGIN)
    for user in (bob, carol):
        services.member_join(user=user, room=room, origin=TEST_ORIGIN)
    owner = services.actor_for_user(user=creator, room=room)
    services.member_update(
        actor=owner,
        room=room,
        target=selectors.member_get(room=room, user_id=carol.pk),
        permissions_removed=int(Perm.VIEW_MEMBER_LIST),
        origin=TEST_ORIGIN,
    )
    tokens = {"creator": creator_tokens.access, "bob": bob_tokens.access, "carol": carol_tokens.access}
    return room, {"creator": creator, "bob": bob, "carol": carol}, tokens


def change_member(room, creator, target_user, **change) -> None:
    owner = services.actor_for_user(user=creator, room=room)
    target = selectors.member_get(room=room, user_id=target_user.pk)
    services.member_update(actor=owner, room=room, target=target, origin=TEST_ORIGIN, **change)


# --- finding 11: VIEW_MEMBER_LIST on the socket ----------------------------------------------------------


def test_without_view_member_list_the_socket_tells_nothing_about_other_members(room_of_three):
    room, users, tokens = room_of_three
    creator, bob, carol = users["creator"], users["bob"], users["carol"]

    async def scenario():
        owner = Sock(room.pk, tokens["creator"], "creator")
        await owner.hello()
        c = Sock(room.pk, tokens["carol"], "carol")
        hello = await c.hello()
        # The field is there, with herself only (the creator is online too).
        assert [i["user_id"] for i in hello["members_online"]] == [carol.pk], hello["members_online"]
        b = Sock(room.pk, tokens["bob"], "bob")
        bob_hello = await b.hello()  # bob holds the bit: everyone online
        assert {i["user_id"] for i in bob_hello["members_online"]} == {creator.pk, bob.pk, carol.pk}
        await b.send({"type": "ready", "ready": False})
        await sync_to_async(change_member)(room, creator, bob, permissions_added=int(Perm.PLAY_CONTROL))
        await sync_to_async(change_member)(room, creator, carol, permissions_added=int(Perm.SEND_EMOJI))
        await b.settle()
        # Batches are keyed by user: had bob left before the batch with his arrival went out,
        # it would say only that he left (docs/realtime.md). Let it go out first.
        await owner.until("member_joined", bob.pk)
        await b.close()
        await c.settle(0.5)
        await owner.settle()
        # Carol: her own member_updated, nothing about bob.
        mine = [f for f in c.of(*MEMBER_EVENTS) if about(f) == carol.pk]
        others = [f for f in c.of(*MEMBER_EVENTS) if about(f) != carol.pk]
        assert others == [], others
        assert "member_updated" in [f["type"] for f in mine], mine  # (and her own member_joined)
        # The creator (every bit) heard all of it.
        heard = {(f["type"], about(f)) for f in owner.of(*MEMBER_EVENTS)}
        expected = {
            ("member_joined", carol.pk),
            ("member_joined", bob.pk),
            ("member_ready", bob.pk),
            ("member_updated", bob.pk),
            ("member_updated", carol.pk),
            ("member_left", bob.pk),
        }
        assert expected <= heard, heard
        await c.close()
        await owner.close()

    async_to_sync(scenario)()


def test_synctv_v2_without_view_member_list_hears_only_about_itself(room_of_three):
    """The same rule on synctv.v2: the hello lists herself with no count, the batches carry only
    her own arrival with no count, and a ``members`` request is refused like REST ``members``."""
    room, users, tokens = room_of_three
    creator, bob, carol = users["creator"], users["bob"], users["carol"]
    v2 = ("synctv.v2", "synctv.v1")

    async def scenario():
        owner = Sock(room.pk, tokens["creator"], "creator", v2)
        owner_hello = await owner.hello()
        assert owner_hello["members_count"] == 1 and owner_hello["members_next"] is None
        c = Sock(room.pk, tokens["carol"], "carol", v2)
        hello = await c.hello()
        assert [i["user_id"] for i in hello["members_online"]] == [carol.pk]
        assert "members_count" not in hello and "members_next" not in hello
        b = Sock(room.pk, tokens["bob"], "bob", v2)
        bob_hello = await b.hello()
        assert bob_hello["members_count"] == 3
        assert {i["user_id"] for i in bob_hello["members_online"]} == {creator.pk, bob.pk, carol.pk}
        await c.send({"type": "members", "ref": "m1"})
        await b.close()
        quiet = roster.FLUSH_SECONDS + 0.3
        await c.settle(quiet)
        await owner.settle(quiet)
        refusal = c.of("error")[0]
        assert (refusal["code"], refusal["ref"]) == ("permission_denied", "m1"), refusal
        for frame in c.of("members_changed"):
            assert frame["count"] is None and frame["left"] == []
            assert [i["user_id"] for i in frame["joined"]] == [carol.pk]
        told = [
            (tuple(i["user_id"] for i in f["joined"]), tuple(f["left"])) for f in owner.of("members_changed")
        ]
        assert any(carol.pk in joined for joined, _left in told) and any(
            bob.pk in left for _j, left in told
        ), told
        assert not c.of("member_joined", "member_left")
        await c.close()
        await owner.close()

    async_to_sync(scenario)()


def test_getting_view_member_list_back_reaches_the_open_socket(room_of_three):
    room, users, tokens = room_of_three
    creator, bob, carol = users["creator"], users["bob"], users["carol"]

    async def scenario():
        c = Sock(room.pk, tokens["carol"], "carol")
        await c.hello()
        await sync_to_async(change_member)(room, creator, carol, permissions_removed=0)
        await c.settle()  # her member_updated; the socket reloads her permissions
        b = Sock(room.pk, tokens["bob"], "bob")
        await b.hello()
        await c.settle()
        assert [f for f in c.of("member_joined") if about(f) == bob.pk], c.frames
        await b.close()
        await c.close()

    async_to_sync(scenario)()


def test_getting_view_member_list_back_tells_the_socket_who_is_online(room_of_three):
    """Granted the bit while connected, carol's socket learns who is already online (with their
    ready state) without a reconnect, as her hello would have told her."""
    room, users, tokens = room_of_three
    creator, bob, carol = users["creator"], users["bob"], users["carol"]

    async def scenario():
        owner = Sock(room.pk, tokens["creator"], "creator")
        await owner.hello()
        b = Sock(room.pk, tokens["bob"], "bob")
        await b.hello()
        await b.send({"type": "ready", "ready": False})
        await b.settle()
        c = Sock(room.pk, tokens["carol"], "carol")
        hello = await c.hello()
        assert [info["user_id"] for info in hello["members_online"]] == [carol.pk]
        await sync_to_async(change_member)(room, creator, carol, permissions_removed=0)
        await c.settle()
        joined = {about(f): f for f in c.of("member_joined") if about(f) != carol.pk}  # not her own
        assert set(joined) == {creator.pk, bob.pk}, c.frames
        assert joined[bob.pk]["ready"] is False and joined[creator.pk]["ready"] is True
        assert joined[bob.pk]["user"]["guest"] is False
        for s in (c, b, owner):
            await s.close()

    async_to_sync(scenario)()


# --- finding 10: ready frames and sockets per user --------------------------------------------------------


def test_ready_is_broadcast_only_when_it_changes(room_of_three):
    room, _users, tokens = room_of_three

    async def scenario():
        owner = Sock(room.pk, tokens["creator"], "creator")
        await owner.hello()
        b = Sock(room.pk, tokens["bob"], "bob")
        await b.hello()
        for _ in range(10):  # already ready: nothing changes, nothing to tell
            await b.send({"type": "ready", "ready": True})
        await b.send({"type": "ready", "ready": False})
        await b.send({"type": "ready", "ready": False})
        await b.settle()
        await owner.settle()
        assert [f["ready"] for f in owner.of("member_ready")] == [False], owner.of("member_ready")
        assert not b.of("error"), b.of("error")
        await b.close()
        await owner.close()

    async_to_sync(scenario)()


def test_a_ready_flood_is_limited_per_user_and_the_last_state_wins(room_of_three):
    room, _users, tokens = room_of_three

    async def scenario():
        owner = Sock(room.pk, tokens["creator"], "creator")
        await owner.hello()
        flooders = [
            Sock(room.pk, tokens["bob"], f"bob{i}") for i in range(ratelimit.MAX_SOCKETS_PER_USER_ROOM)
        ]
        for s in flooders:
            await s.hello()
        await owner.settle()
        owner.frames.clear()
        started = time.monotonic()
        sent = 0
        for i in range(30):  # within the per-socket frame allowance: only the ready limit applies
            for s in flooders:
                await s.send({"type": "ready", "ready": i % 2 == 1})
                sent += 1
        for s in flooders:  # the last word, the same on every socket
            await s.send({"type": "ready", "ready": False})
        elapsed = time.monotonic() - started
        await asyncio.sleep(1.5)  # enough for one more token: the latest state goes out
        await owner.settle()
        got = owner.of("member_ready")
        ready = ratelimit.SOCKET_ALLOWANCES["ws_ready"]
        allowed = ready.burst + ready.per_second * (elapsed + 1.5 + 1.0)
        assert 1 <= len(got) <= allowed, (len(got), sent, allowed)
        assert got[-1]["ready"] is False, got[-3:]
        for s in flooders:
            await s.close()
        await owner.close()

    async_to_sync(scenario)()


def test_sockets_per_user_and_room_are_capped(room_of_three):
    room, _users, tokens = room_of_three
    cap = ratelimit.MAX_SOCKETS_PER_USER_ROOM

    async def scenario():
        tabs = [Sock(room.pk, tokens["bob"], f"bob{i}") for i in range(cap)]
        for tab in tabs:
            await tab.hello()
        extra = Sock(room.pk, tokens["bob"], "bob-extra")
        await extra.open()
        refusal = await extra.next()
        assert refusal["type"] == "error" and refusal["code"] == "connection_refused", refusal
        assert refusal["details"]["close_code"] == consumers.CLOSE_TOO_MANY_SOCKETS, refusal
        assert (await extra.next())["type"] == "<closed>"
        assert extra.close_code == consumers.CLOSE_TOO_MANY_SOCKETS
        await extra.close()
        # Someone else is not affected; and once one tab closes, a new one gets in.
        other = Sock(room.pk, tokens["carol"], "carol")
        await other.hello()
        await tabs.pop().close()
        again = Sock(room.pk, tokens["bob"], "bob-again")
        await again.hello()
        for s in [*tabs, again, other]:
            await s.close()
        assert not ratelimit.socket_slots, ratelimit.socket_slots  # every slot given back

    async_to_sync(scenario)()


def test_a_connect_that_fails_gives_its_slot_back(room_of_three, monkeypatch):
    """channels never calls disconnect() for a connect that raised: a failure during the connect's
    reads (or a client gone mid-handshake) must not keep the user's socket slot, or five such
    failures lock them out of the room on this node until it restarts. A database outage is not
    such a failure any more: it is a refusal (1013, come back later), and gives the slot back too."""
    from django.db import OperationalError

    room, _users, tokens = room_of_three
    cap = ratelimit.MAX_SOCKETS_PER_USER_ROOM
    real_load = consumers.RoomConsumer._authenticated_actor

    def client_gone(self, **kwargs):
        raise RuntimeError("the client went away mid-handshake")

    def database_down(self, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    async def scenario():
        monkeypatch.setattr(consumers.RoomConsumer, "_authenticated_actor", client_gone)
        for i in range(cap + 1):
            failing = Sock(room.pk, tokens["bob"], f"bob-fail{i}")
            await failing.comm.send_input({"type": "websocket.connect"})
            with pytest.raises(RuntimeError):
                await failing.comm.wait(timeout=10)
        assert not ratelimit.socket_slots, ratelimit.socket_slots
        monkeypatch.setattr(consumers.RoomConsumer, "_authenticated_actor", database_down)
        for i in range(cap + 1):
            refused = await Sock(room.pk, tokens["bob"], f"bob-down{i}").open()
            frame = await refused.next()
            assert (frame["code"], frame["details"]) == ("connection_refused", {"cause": "service_degraded"})
            assert (await refused.next())["code"] == consumers.CLOSE_TRY_AGAIN_LATER
        assert not ratelimit.socket_slots, ratelimit.socket_slots
        monkeypatch.setattr(consumers.RoomConsumer, "_authenticated_actor", real_load)
        back = Sock(room.pk, tokens["bob"], "bob-back")
        await back.hello()  # the database is back: so is bob
        await back.close()
        assert not ratelimit.socket_slots

    async_to_sync(scenario)()


def test_connect_churn_is_limited_per_user_and_room(room_of_three):
    """Each connect and its leave reach the whole room (batched): one user cycling a socket must
    not make the room's presence churn. Past the ws_connect burst the connect is refused
    (4429, retry_after) before anything is read or announced; others are not affected."""
    room, _users, tokens = room_of_three

    async def scenario():
        owner = Sock(room.pk, tokens["creator"], "creator")
        await owner.hello()
        for i in range(ratelimit.SOCKET_ALLOWANCES["ws_connect"].burst):
            s = Sock(room.pk, tokens["bob"], f"bob{i}")
            await s.hello()
            await s.close()
        extra = Sock(room.pk, tokens["bob"], "bob-extra")
        await extra.open()
        refusal = await extra.next()
        assert refusal["type"] == "error" and refusal["code"] == "connection_refused", refusal
        assert refusal["details"]["close_code"] == consumers.CLOSE_TOO_MANY_SOCKETS
        assert refusal["details"]["retry_after"] >= 1
        assert (await extra.next())["type"] == "<closed>"
        await extra.close()
        await owner.settle(quiet=roster.FLUSH_SECONDS + 0.3)
        # Told in batches (apps.rooms.roster): a join and its leave within one batch are not told
        # at all; what was told ends with bob gone, and the refused connect joined nothing.
        told = [f["type"] for f in owner.of("member_joined", "member_left") if about(f) == _users["bob"].pk]
        assert told.count("member_joined") <= ratelimit.SOCKET_ALLOWANCES["ws_connect"].burst, told
        assert not told or told[-1] == "member_left", told
        _version, online = await consumers.hub.presence.snapshot(room.pk)
        assert _users["bob"].pk not in {i["user_id"] for i in online}
        carol = Sock(room.pk, tokens["carol"], "carol")
        await carol.hello()
        for s in (carol, owner):
            await s.close()

    async_to_sync(scenario)()


def test_connects_beyond_the_ones_in_flight_wait_their_turn(room_of_three, local_hub, monkeypatch):
    """WS_CONNECTS_IN_FLIGHT: with one connect at a time, connects that arrive together are all
    greeted, one after the other; none is refused."""
    room, _users, tokens = room_of_three
    local_hub.admission = asyncio.Semaphore(1)
    admit, busy, most = consumers.RoomConsumer._admit, [0], [0]

    async def counted_admit(self):
        busy[0] += 1
        most[0] = max(most[0], busy[0])
        try:
            await asyncio.sleep(0.01)
            await admit(self)
        finally:
            busy[0] -= 1

    monkeypatch.setattr(consumers.RoomConsumer, "_admit", counted_admit)

    async def scenario():
        sockets = [
            Sock(room.pk, tokens[who], f"{who}{i}") for who in ("creator", "bob", "carol") for i in range(3)
        ]
        hellos = await asyncio.gather(*(s.hello() for s in sockets))
        assert [h["type"] for h in hellos] == ["hello"] * len(sockets)
        assert most[0] == 1
        for s in sockets:
            await s.close()

    async_to_sync(scenario)()
