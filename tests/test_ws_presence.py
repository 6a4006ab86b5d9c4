"""Who is online in a big, busy room, over two real ``ws`` nodes and Redis (docs/realtime.md,
"Who is online").

Many members join and leave at once on both nodes while watchers, on either node and on both
protocol versions, keep their own list the way a client does: ``synctv.v2`` from the hello's
first page, the ``members`` pages after it and the ``members_changed`` batches; ``synctv.v1``
from the full hello and ``member_joined`` / ``member_left``. Every watcher ends with exactly
the sockets still open, and the batches are few: bounded by time, not by the number of joins.
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from apps.rooms import roster
from tests.wsclient import SUBPROTOCOL, WS, Api, close_all, cluster_fixture, join, report, run

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

V2 = ["synctv.v2", SUBPROTOCOL]
SWARM = 64  # more than a hello's first page (roster.PAGE_SIZE), so the pages are exercised


cluster = cluster_fixture("ws-presence", "p1", "p2")


class View:
    """One client's list of who is online, kept from its frames as a client keeps it."""

    def __init__(self, ws: WS) -> None:
        self.ws = ws
        self.online: dict[str, dict] = {}
        self.count: int | None = None
        self.batches = 0
        self.pages = 0
        self._task = asyncio.create_task(self._follow())

    def _start(self, hello: dict) -> None:
        self.online = {i["user_id"]: i for i in hello["members_online"]}
        self.count = hello.get("members_count")

    async def _ask(self, after: str | None) -> None:
        if after:
            await self.ws.send({"type": "members", "after": after})

    async def _follow(self) -> None:
        self._start(self.ws.hello)
        await self._ask(self.ws.hello.get("members_next"))
        while True:
            frame = await self.ws.next(60)
            kind = frame["type"]
            if kind == "members_changed":
                self.batches += 1
                for user_id in frame["left"]:
                    self.online.pop(user_id, None)
                for info in frame["joined"]:
                    self.online[info["user_id"]] = info
                self.count = frame["count"]
            elif kind == "members_page":
                self.pages += 1
                self.online.update({i["user_id"]: i for i in frame["members"]})
                self.count = frame["count"]
                await self._ask(frame["next"])
            elif kind == "member_joined":
                self.batches += 1
                self.online[frame["user"]["id"]] = frame
            elif kind == "member_left":
                self.online.pop(frame["user"]["id"], None)

    async def ends_with(self, expected: set[str], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while set(self.online) != expected or (self.count is not None and self.count != len(expected)):
            if time.monotonic() > deadline:
                missing, extra = expected - set(self.online), set(self.online) - expected
                raise AssertionError(
                    f"[{self.ws.label}] {len(missing)} missing, {len(extra)} extra, count {self.count} "
                    f"for {len(expected)}"
                )
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        self._task.cancel()


def test_every_watcher_ends_with_who_is_online_after_a_crowd_comes_and_goes(cluster):
    p1, p2 = cluster.nodes
    api = Api(p1)
    owner, members, room = api.room_with_members("crowd", SWARM + 3)
    watchers_who, crowd = members[:3], members[3:]
    rng = random.Random(14)  # the crowd's order and timing; the assertion does not depend on them

    async def scenario():
        early = [
            await join(p1, room, owner, subprotocols=[*V2, f"bearer.{owner.access}"], label="owner@p1"),
            await join(p2, room, watchers_who[0], subprotocols=[*V2, f"bearer.{watchers_who[0].access}"]),
            await join(p1, room, watchers_who[1], label="v1@p1"),  # synctv.v1
        ]
        views = [View(ws) for ws in early]
        open_sockets: dict[str, WS] = {}
        # The leavers go once everyone has arrived, so the room passes the first page whatever
        # a connect costs on this host (on a clock of their own, early leavers left before late
        # arrivals came where connects were slow).
        everyone_here = asyncio.Event()

        async def member(i, who):
            await asyncio.sleep(rng.random() * 1.5)
            node = (p1, p2)[i % 2]
            ws = await join(node, room, who, subprotocols=[*V2, f"bearer.{who.access}"])
            open_sockets[who.id] = ws
            if len(open_sockets) == len(crowd):
                everyone_here.set()
            if i % 3 == 0:  # a third leave again, some of them come back
                await everyone_here.wait()
                await asyncio.sleep(rng.random())
                del open_sockets[who.id]
                await ws.close()
                if i % 2 == 0:
                    await asyncio.sleep(rng.random() * 0.5)
                    open_sockets[who.id] = await join(
                        (p2, p1)[i % 2], room, who, subprotocols=[*V2, f"bearer.{who.access}"]
                    )

        started = time.monotonic()
        crowd_done = asyncio.gather(*(member(i, who) for i, who in enumerate(crowd)))
        # A watcher that arrives in the middle of it all, once the room is past the first page.
        deadline = time.monotonic() + 20
        while len(open_sockets) < roster.PAGE_SIZE + 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        late = await join(
            p2, room, watchers_who[2], subprotocols=[*V2, f"bearer.{watchers_who[2].access}"], label="late@p2"
        )
        assert late.conn.subprotocol == "synctv.v2"
        assert len(late.hello["members_online"]) <= roster.PAGE_SIZE + 1
        views.append(View(late))
        await crowd_done
        took = time.monotonic() - started

        expected = {owner.id, *(w.id for w in watchers_who), *open_sockets}
        for view in views:
            await view.ends_with(expected)
        settled = time.monotonic() - started
        assert len(expected) > roster.PAGE_SIZE, "the room must be larger than the hello's first page"

        # Batches, not one frame per arrival: each node tells a room at most every FLUSH_SECONDS.
        joins_and_leaves = len(crowd) + len(crowd) // 3 + len(crowd) // 6
        bound = settled / roster.FLUSH_SECONDS + 2
        for view in (views[0], views[1], views[3]):  # the synctv.v2 watchers
            assert view.batches <= bound, (view.ws.label, view.batches, bound)
        assert views[3].pages >= 1  # the late watcher read pages past the first
        report(
            f"crowd of {len(crowd)} over 2 nodes",
            f"{joins_and_leaves} joins/leaves in {took:.1f} s; v2 watchers got "
            f"{[v.batches for v in (views[0], views[1], views[3])]} batches; all lists right after {settled:.1f} s",
        )
        for view in views:
            view.stop()
        await close_all(*early, late, *open_sockets.values())

    run(scenario(), timeout=120)


def test_the_members_request_pages_through_everyone_once(cluster):
    p1, p2 = cluster.nodes
    api = Api(p2)
    owner, members, room = api.room_with_members("pages", 7)

    async def scenario():
        sockets = [await join(p1, room, who) for who in members]
        ws = await join(p2, room, owner, subprotocols=[*V2, f"bearer.{owner.access}"])
        seen: list[str] = []
        after = None
        for _ in range(10):
            await ws.send(
                {"type": "members", "after": after, "limit": 3} if after else {"type": "members", "limit": 3}
            )
            page = await ws.expect("members_page")
            seen += [m["user_id"] for m in page["members"]]
            assert page["count"] == 8 and len(page["members"]) <= 3
            after = page["next"]
            if after is None:
                break
        assert sorted(seen) == sorted([owner.id, *(m.id for m in members)]) and len(seen) == len(set(seen))
        await ws.send({"type": "members", "after": "not-a-cursor", "ref": 5})
        error = await ws.expect("error")
        assert (error["code"], error["ref"]) == ("invalid", 5)
        await ws.send({"type": "members", "limit": 0})
        assert (await ws.expect("error"))["code"] == "invalid"
        await close_all(ws, *sockets)

    run(scenario(), timeout=60)
