"""apps/rooms/roster.py on its own: announcements applied in order (the snapshot wins over older
ones, those that arrive while it is read wait for it), pages by username with cursors, and the
batches each kind of socket gets (synctv.v2: one frame for all; v1: the old events, nothing it
already holds; without VIEW_MEMBER_LIST: only about itself, no count)."""

from __future__ import annotations

import asyncio
import json

import pytest

from apps.core import events
from apps.rooms import roster
from apps.rooms.presence import Presence


def info(n: int, **more) -> dict:
    return {"user_id": f"u{n:02d}", "username": f"user{n:02d}", "role": "member", "ready": True, **more}


class Snapshot(Presence):
    """A presence whose snapshot is given, and which lets the test act while it is being read."""

    def __init__(self, version, infos, during=None) -> None:
        super().__init__()
        self.version, self.infos, self.during = version, infos, during

    async def snapshot(self, room_id):
        if self.during is not None:
            self.during()
        await asyncio.sleep(0)
        return self.version, list(self.infos)


class FakeSocket:
    def __init__(self, user_id: str, protocol: str = roster.V2, sees: bool = True) -> None:
        self.user = type("U", (), {"pk": user_id})()
        self.protocol, self._sees, self._closing = protocol, sees, False

    def sees_members(self) -> bool:
        return self._sees


def new_roster():
    sent: list[tuple[list, dict]] = []

    async def send(sockets, text):
        sent.append((list(sockets), json.loads(text)))

    return roster.Roster("r1", send), sent


def presence(v, joined=(), left=()):
    return events.presence_changed(version=v, joined=list(joined), left=list(left))


def run(coro):
    return asyncio.run(coro)


def test_announcements_during_the_snapshot_wait_for_it_and_old_ones_are_skipped():
    async def scenario():
        r, _sent = new_roster()
        during = lambda: [  # noqa: E731 - two arrive while Redis answers the snapshot
            r.apply(presence(2, joined=[info(2)])),  # already in the snapshot (v 2 <= 3)
            r.apply(presence(4, joined=[info(4)])),  # newer: applied after it
        ]
        await r.ensure_loaded(Snapshot(3, [info(1), info(2)], during))
        assert sorted(r.members) == ["u01", "u02", "u04"] and r.version == 4
        r.apply(presence(4, left=["u01"]))  # a repeat: nothing
        r.apply(presence(5, left=["u01"]))
        assert sorted(r.members) == ["u02", "u04"]
        r.close()

    run(scenario())


def test_pages_go_by_username_and_end_with_no_cursor():
    async def scenario():
        r, _sent = new_roster()
        await r.ensure_loaded(Snapshot(0, [info(n) for n in (5, 1, 4, 2, 3)]))
        first, after = r.page_json(limit=2)
        assert [json.loads(i)["user_id"] for i in first] == ["u01", "u02"]
        r.apply(presence(1, left=["u03"], joined=[info(0)]))  # changes between two pages
        second, after = r.page_json(after, limit=2)
        assert [json.loads(i)["user_id"] for i in second] == ["u04", "u05"] and after is None
        with pytest.raises(roster.BadCursor):
            r.page_json("bm90IGEgY3Vyc29y")  # base64 of "not a cursor"
        with pytest.raises(roster.BadCursor):
            r.page_json("%%%")
        r.close()

    run(scenario())


def test_one_batch_tells_each_kind_of_socket_what_it_may_know():
    async def scenario():
        r, sent = new_roster()
        await r.ensure_loaded(Snapshot(0, [info(1), info(2)]))
        v2, v1, blind = FakeSocket("u01"), FakeSocket("u02", roster.V1), FakeSocket("u09", sees=False)
        for socket in (v2, v1, blind):
            r.listen(socket)
        r.apply(presence(1, joined=[info(3), info(9)]))
        r.apply(presence(2, left=["u01"], joined=[info(4, ready=False)]))
        late_v1 = FakeSocket("u05", roster.V1)
        r.listen(late_v1)  # its hello was taken after those two: nothing of them is new to it
        r.apply(presence(3, left=["u03"]))
        await asyncio.sleep(roster.FIRST_FLUSH_SECONDS + 0.05)
        for task in list(r._tasks):
            await task
        by_socket: dict[int, list[dict]] = {}
        for sockets, frame in sent:
            for socket in sockets:
                by_socket.setdefault(id(socket), []).append(frame)
        (batch,) = by_socket[id(v2)]
        assert batch["type"] == "members_changed" and batch["count"] == 3  # u02, u04, u09
        assert sorted(i["user_id"] for i in batch["joined"]) == ["u04", "u09"]
        assert sorted(batch["left"]) == ["u01", "u03"]  # u03 came and went: told as gone
        assert [(f["type"], f["user"]["id"]) for f in by_socket[id(v1)]] == [
            ("member_joined", "u09"),
            ("member_left", "u01"),
            ("member_joined", "u04"),
            ("member_left", "u03"),
        ]
        assert by_socket[id(v1)][2]["ready"] is False  # it was buffering before it was told
        assert [(f["type"], f["user"]["id"]) for f in by_socket[id(late_v1)]] == [("member_left", "u03")]
        (own,) = by_socket[id(blind)]
        assert own["joined"] == [info(9)] and own["left"] == [] and own["count"] is None
        r.close()

    run(scenario())


def test_batches_are_spaced_by_the_flush_interval(monkeypatch):
    monkeypatch.setattr(roster, "FLUSH_SECONDS", 0.2)

    async def scenario():
        r, sent = new_roster()
        await r.ensure_loaded(Snapshot(0, []))
        r.listen(FakeSocket("u99"))
        loop = asyncio.get_running_loop()
        started = loop.time()
        for n in range(30):  # 30 arrivals over ~0.6 s
            r.apply(presence(n + 1, joined=[info(n)]))
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        assert sum(len(f["joined"]) for _s, f in sent) == 30
        assert 3 <= len(sent) <= (loop.time() - started) / 0.2 + 1, len(sent)
        r.close()

    run(scenario())


def test_a_stopping_node_tells_no_more_batches():
    async def scenario():
        sent: list = []

        async def send(sockets, text):
            sent.append(text)

        rosters = roster.Rosters(send)
        r = rosters.get("r1")
        await r.ensure_loaded(Snapshot(0, []))
        r.listen(FakeSocket("u99"))
        rosters.on_event("synctv:room:r1", presence(1, joined=[info(1)]))
        rosters.stop_telling()
        rosters.on_event("synctv:room:r1", presence(2, joined=[info(2)]))
        await asyncio.sleep(roster.FIRST_FLUSH_SECONDS + 0.05)
        assert sent == [] and sorted(r.members) == ["u01", "u02"]
        rosters.drop("synctv:room:r1")

    run(scenario())


def test_reconnect_windows_grow_with_the_sockets_a_node_holds():
    from apps.rooms.hub import reconnect_window_ms

    assert reconnect_window_ms(0, 250) == 500
    assert reconnect_window_ms(500, 250) == 2000
    assert reconnect_window_ms(10**6, 250) == 60_000


def test_a_hello_lists_the_first_page_or_everyone_and_its_own_entry_once():
    async def scenario():
        r, _sent = new_roster()
        await r.ensure_loaded(Snapshot(0, [info(n) for n in range(0, 120, 2)]))  # 60 online
        v2 = FakeSocket("u111")  # not in the roster yet: its arrival is on its way
        hello = json.loads(r.greet(v2, {"type": "hello"}, info(111, username="zed")))
        ids = [i["user_id"] for i in hello["members_online"]]
        assert hello["members_count"] == 61 and hello["members_next"] is not None
        assert "u111" not in ids and len(ids) == roster.PAGE_SIZE  # "zed": past the first page
        early = FakeSocket("u03")
        ids = [i["user_id"] for i in json.loads(r.greet(early, {"type": "hello"}, info(3)))["members_online"]]
        assert ids[:3] == ["u00", "u02", "u03"] and len(ids) == roster.PAGE_SIZE + 1
        v1 = FakeSocket("u04", roster.V1)
        everyone = json.loads(r.greet(v1, {"type": "hello"}, info(4)))["members_online"]
        assert len(everyone) == 60 and "members_count" not in everyone
        blind = FakeSocket("u07", sees=False)
        assert json.loads(r.greet(blind, {"type": "hello"}, info(7)))["members_online"] == [info(7)]
        assert set(r.listeners) == {v2, early, v1, blind}
        r.close()

    run(scenario())
