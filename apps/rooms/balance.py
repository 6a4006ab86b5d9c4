"""Keep the ``ws`` nodes even (docs/realtime.md, "Balance").

A stopping node hands its sockets to the others (apps.rooms.lifecycle) and nothing sends them back
when it returns: after a restart of one node of two, the other holds every socket; after a rolling
restart, the node restarted last holds none. The front sends each new socket to the node with the
fewest (``least_conn`` in deploy/nginx), so a node holding more than its share only has to ask
some of its sockets to reconnect.

Every WS_BALANCE_SECONDS each node reports how many sockets it holds (apps.streaming.cluster) and
reads the others' counts. A node over its share by more than the slack asks the surplus to move,
picked at random, at most WS_REBALANCE_PER_SECOND times WS_BALANCE_SECONDS in a round, and only
looks in the round after (the others' counts show the arrivals from their next report on). The
request is the notice a draining node sends (``server_shutdown``), with ``reason: "rebalance"``.
Clients move make-before-break, so nobody sees a gap. Unlike a drain, the node closes nothing: a
client that does not move stays where it is.

Without a front that balances (clients that dial one node's address), a moved socket lands on the
same node again. The node notices that its count did not fall and waits longer before it asks
again, up to MAX_WAIT_ROUNDS rounds.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import weakref
from collections.abc import Mapping

from django.conf import settings

from apps.core import events, realtime
from apps.core.redis import RedisUnavailable
from apps.rooms.hub import RoomHub, Subscriber

logger = logging.getLogger(__name__)

MOVE_AFTER_MS = 250
# A moving client closes its old socket once the new one's hello came: this is how long the node
# promises to keep the old one meanwhile (it keeps it longer: it closes nothing).
KEEP_OPEN_MS = 30_000
SLACK_SOCKETS = 20  # a node this many sockets over its share, or 10 % over, is left alone
SLACK_FRACTION = 0.10
MAX_WAIT_ROUNDS = 12
MOVE_MESSAGE = "This server is busier than the others; moving you to another one."
_task: set[asyncio.Task] = set()  # keeps the balancing task referenced


def surplus(mine: int, counts: Mapping[str, int]) -> int:
    """How many of ``mine`` sockets a node should hand over, given every live ``ws`` node's count
    (this node's included): what it holds over an even share, unless within the slack."""
    if len(counts) < 2:
        return 0
    share = sum(counts.values()) / len(counts)
    over = mine - share
    if over <= max(SLACK_SOCKETS, SLACK_FRACTION * share):
        return 0
    return int(over)


def report_and_read(node_id: str, mine: int, ttl: int) -> dict[str, int]:
    """Report this node's count and read every live ``ws`` node's (blocking: run on a thread)."""
    from apps.streaming import cluster

    cluster.report_sockets(node_id, mine, ttl=ttl)
    counts = cluster.socket_counts()
    counts[node_id] = mine  # what was just written, even if the registry does not list us yet
    return counts


def established(socket: Subscriber) -> bool:
    """Past its hello and not closing: a socket still connecting is never asked (the notice
    would reach it before its hello, or not at all)."""
    return (
        bool(socket.connection_id)
        and getattr(socket, "_pending", None) is None
        and not getattr(socket, "_closing", False)
    )


class Balancer:
    def __init__(self, hub: RoomHub, node_id: str, interval: float, per_second: float) -> None:
        from apps.streaming.cluster import NODE_TTL_SECONDS

        self.hub = hub
        self.node_id = node_id
        self.interval = interval
        self.per_round = max(1, int(per_second * interval))
        self.per_second = per_second
        self.ttl = max(NODE_TTL_SECONDS, int(3 * interval) + 1)  # a count outlives two rounds
        # Told to move, until when (the notice's window plus KEEP_OPEN_MS): while still here they
        # are "moving", then sockets like any other (a client that ignored the notice).
        self.asked: weakref.WeakKeyDictionary[Subscriber, float] = weakref.WeakKeyDictionary()
        self.expected: int | None = None  # the count the last request should have brought us to
        self.wait_rounds = 0
        self.backoff = 1

    async def run(self) -> None:
        while not self.hub.shutting_down:
            await asyncio.sleep(self.interval)
            try:
                await self.round()
            except RedisUnavailable:
                continue  # the counts are unknown: nothing is asked until Redis answers again
            except Exception:  # a bug must not end balancing for the process's lifetime
                logger.exception("balance round failed")

    async def round(self) -> int:
        """One round: report, compare, ask; how many sockets were asked to move."""
        now = time.monotonic()
        for socket, until in list(self.asked.items()):
            if until <= now:
                del self.asked[socket]
        local = self.hub.local_subscribers()
        moving = sum(1 for s in local if s in self.asked)
        # The real count: a socket asked to move is here until it has moved.
        counts = await asyncio.to_thread(report_and_read, self.node_id, len(local), self.ttl)
        if self.hub.shutting_down:
            return 0
        if self.expected is not None:
            # The round after a request only looks: the sockets asked are still moving, and the
            # other nodes' counts show their arrival only from their next report on.
            self.learn(len(local) - moving)
            return 0
        if self.wait_rounds:
            self.wait_rounds -= 1
            return 0
        candidates = [s for s in local if s not in self.asked and established(s)]
        count = min(surplus(len(local), counts) - moving, self.per_round, len(candidates))
        if count <= 0:
            return 0
        chosen = random.sample(candidates, count)
        window_ms = max(500, int(1000 * count / self.per_second))
        for socket in chosen:
            self.asked[socket] = now + (window_ms + KEEP_OPEN_MS) / 1000
        self.expected = len(local) - moving - count
        notice = events.server_shutdown(
            message=MOVE_MESSAGE,
            reconnect_after_ms=MOVE_AFTER_MS,
            reconnect_window_ms=window_ms,
            drain_ms=window_ms + KEEP_OPEN_MS,
            reason="rebalance",
        )
        await self.hub.send_text(chosen, realtime.encode(notice))
        logger.info("balance: asked %d of %d socket(s) to move (nodes: %s)", count, len(local), counts)
        return count

    def learn(self, staying: int) -> None:
        """After a request: did the count fall? If the moved sockets came back (no balancing
        front), wait twice as long before the next request."""
        assert self.expected is not None
        if staying - self.expected > SLACK_SOCKETS:
            self.wait_rounds = self.backoff
            self.backoff = min(self.backoff * 2, MAX_WAIT_ROUNDS)
        else:
            self.backoff = 1
        self.expected = None


def start_balancing(hub: RoomHub) -> None:
    """Start this process's balancing (from the ``ws`` lifespan): only with Redis (the registry
    and the counts live there) and WS_BALANCE_SECONDS > 0."""
    if not settings.REDIS_URL or settings.WS_BALANCE_SECONDS <= 0 or _task:
        return
    balancer = Balancer(
        hub, settings.SYNCTV_NODE_ID, settings.WS_BALANCE_SECONDS, settings.WS_REBALANCE_PER_SECOND
    )
    _task.add(asyncio.get_running_loop().create_task(balancer.run(), name="ws-balance"))
