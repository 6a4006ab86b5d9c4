"""Keeping the ``ws`` nodes even (apps/rooms/balance.py): what a node over its share asks, of whom,
and how it backs off when the moved sockets come back to it. The counts go through a real Redis
(the cluster registry); the sockets are stand-ins that record what the hub writes to them."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from apps.rooms import balance
from apps.rooms.balance import Balancer, surplus
from apps.rooms.hub import RoomHub
from apps.streaming import cluster
from apps.streaming.tests.streams_helpers import clean_registry


@pytest.mark.parametrize(
    ("mine", "counts", "expected"),
    [
        (2000, {"a": 2000, "b": 0}, 1000),  # a node came back empty: half moves
        (0, {"a": 2000, "b": 0}, 0),  # the empty node asks nothing
        (1050, {"a": 1050, "b": 950}, 0),  # within 10 %
        (50, {"a": 50, "b": 20}, 0),  # within 20 sockets
        (90, {"a": 90, "b": 30}, 30),
        (900, {"a": 900, "b": 300, "c": 0}, 500),  # three nodes: a share is 400
        (500, {"a": 500}, 0),  # alone: nowhere to go
    ],
)
def test_surplus_is_what_a_node_holds_over_an_even_share_beyond_the_slack(mine, counts, expected):
    assert surplus(mine, counts) == expected


class Socket:
    """What the hub needs from a socket; keeps the frames written to it."""

    direct = None

    def __init__(self, n: int) -> None:
        self.connection_id = f"conn{n}"
        self.frames: list[dict] = []

    async def base_send(self, message: dict) -> None:
        self.frames.append(json.loads(message["text"]))

    def on_event(self, channel, event) -> bool:
        return True

    def on_slow(self) -> None:
        pass


def hub_with(sockets: list[Socket]) -> RoomHub:
    hub = RoomHub()
    for s in sockets:
        hub.channels[f"room:{s.connection_id}"].add(s)
    return hub


@pytest.fixture
def two_nodes(redis_client):
    clean_registry(redis_client)
    cluster.register("bal-a", "ws", started=1.0)
    cluster.register("bal-b", "ws", started=1.0)  # came back: holds nothing yet
    yield
    clean_registry(redis_client)


@pytest.mark.redis
def test_a_node_over_its_share_asks_a_random_surplus_to_move_and_closes_nothing(two_nodes):
    sockets = [Socket(n) for n in range(200)]
    connecting = sockets[:10]
    for s in connecting:
        s._pending = []  # before its hello: never asked
    hub = hub_with(sockets)
    balancer = Balancer(hub, "bal-a", interval=1.0, per_second=60)

    assert asyncio.run(balancer.round()) == 60  # the surplus is 100; 60 a second, a round a second
    told = [s for s in sockets if s.frames]
    assert len(told) == 60 and not any(s.frames for s in connecting)
    notice = told[0].frames[0]
    assert notice["type"] == "server_shutdown" and notice["reason"] == "rebalance"
    assert notice["drain_ms"] > notice["reconnect_window_ms"] == 1000
    assert all(s.frames == [notice] for s in told)
    assert cluster.socket_counts() == {"bal-a": 200, "bal-b": 0}

    # The round after only looks. The sockets asked count until they have gone.
    assert asyncio.run(balancer.round()) == 0
    assert cluster.socket_counts() == {"bal-a": 200, "bal-b": 0}

    # They moved and the other node reported them: 140 vs 60, so 40 more are asked, none twice.
    for s in told:
        hub.channels[f"room:{s.connection_id}"].discard(s)
    cluster.report_sockets("bal-b", 60)
    assert asyncio.run(balancer.round()) == 40
    assert sum(len(s.frames) for s in sockets) == 100 and max(len(s.frames) for s in sockets) == 1
    assert asyncio.run(balancer.round()) == 0
    for s in [s for s in sockets if s.frames and s not in told]:
        hub.channels[f"room:{s.connection_id}"].discard(s)
    cluster.report_sockets("bal-b", 100)
    assert asyncio.run(balancer.round()) == 0  # even
    assert cluster.socket_counts() == {"bal-a": 100, "bal-b": 100}


@pytest.mark.redis
def test_while_asked_sockets_are_still_here_only_the_rest_of_the_surplus_is_asked(two_nodes):
    sockets = [Socket(n) for n in range(200)]
    hub = hub_with(sockets)
    balancer = Balancer(hub, "bal-a", interval=1.0, per_second=30)
    assert asyncio.run(balancer.round()) == 30
    assert asyncio.run(balancer.round()) == 0  # looks
    # None has moved yet: 200 here, 30 of them moving, the surplus 100: 70 are left to ask.
    assert asyncio.run(balancer.round()) == 30
    assert asyncio.run(balancer.round()) == 0
    assert asyncio.run(balancer.round()) == 30
    assert asyncio.run(balancer.round()) == 0
    assert asyncio.run(balancer.round()) == 10  # 100 in all, not one more
    assert asyncio.run(balancer.round()) == 0
    assert asyncio.run(balancer.round()) == 0


@pytest.mark.redis
def test_a_socket_that_ignored_the_notice_counts_as_any_other_once_its_window_passed(two_nodes, monkeypatch):
    sockets = [Socket(n) for n in range(100)]
    hub = hub_with(sockets)
    balancer = Balancer(hub, "bal-a", interval=1.0, per_second=100)
    assert asyncio.run(balancer.round()) == 50
    assert asyncio.run(balancer.round()) == 0  # looks: nobody moved, the count did not fall
    assert len(balancer.asked) == 50
    later = time.monotonic() + balance.KEEP_OPEN_MS / 1000 + 5
    monkeypatch.setattr(balance.time, "monotonic", lambda: later)
    assert asyncio.run(balancer.round()) == 50  # asked again: the same surplus, anyone may be picked
    assert len(balancer.asked) == 50


@pytest.mark.redis
def test_when_the_moved_sockets_come_back_it_waits_longer_before_asking_again(two_nodes):
    sockets = [Socket(n) for n in range(100)]
    hub = hub_with(sockets)
    balancer = Balancer(hub, "bal-a", interval=1.0, per_second=100)

    def come_back(first: int) -> None:
        # No front that balances: every socket asked reconnected to this node.
        for s in [s for s in sockets if s.frames]:
            hub.channels[f"room:{s.connection_id}"].discard(s)
            sockets.remove(s)
        for n in range(first, first + 100 - len(sockets)):
            s = Socket(n)
            sockets.append(s)
            hub.channels[f"room:{s.connection_id}"].add(s)

    assert asyncio.run(balancer.round()) == 50
    come_back(1000)
    # It looks (the count did not fall), waits a round, asks; then looks and waits two.
    assert [asyncio.run(balancer.round()) for _ in range(3)] == [0, 0, 50]
    come_back(2000)
    assert [asyncio.run(balancer.round()) for _ in range(4)] == [0, 0, 0, 50]


@pytest.mark.redis
def test_a_stopping_node_asks_nothing(two_nodes):
    hub = hub_with([Socket(n) for n in range(100)])
    hub.shutting_down = True
    assert asyncio.run(Balancer(hub, "bal-a", interval=1.0, per_second=100).round()) == 0


def test_it_does_not_start_without_redis_or_when_turned_off(settings):
    hub = RoomHub()

    async def start():
        balance.start_balancing(hub)
        return set(balance._task)

    settings.REDIS_URL = ""
    assert asyncio.run(start()) == set()
    settings.REDIS_URL = "redis://127.0.0.1:6379/0"
    settings.WS_BALANCE_SECONDS = 0
    assert asyncio.run(start()) == set()
