"""A consistent hash ring with virtual nodes: which node owns a key (docs/streaming.md, "Cluster").

Each node is placed on a 64-bit circle at ``vnodes`` points (the first 8 bytes of BLAKE2b of
``"{node}#{i}"``); a key belongs to the first point at or after its own hash, wrapping around.
Adding or removing one node of N moves only the keys of that node's arcs, about 1/N of them,
and the virtual nodes spread the arcs so each node gets a near-equal share.

BLAKE2b and not Python's ``hash()``: ``hash()`` of a string is salted per process
(PYTHONHASHSEED), and every process of the cluster must compute the same owner for a stream.

Why a small module and not uhashring (maintained, 2.5 installs from PyPI): the ring is rebuilt
from the short list of live nodes on each election and ``cluster_status`` shows each node's share
of the key space, which uhashring does not expose; the whole algorithm is the ``bisect`` below,
so a dependency would add more surface than code.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable

DEFAULT_VNODES = 160
_SPACE = 1 << 64


def point(value: str) -> int:
    """The position of ``value`` on the circle: the same in every process and on every host."""
    return int.from_bytes(hashlib.blake2b(value.encode("utf-8"), digest_size=8).digest(), "big")


class HashRing:
    def __init__(self, nodes: Iterable[str] = (), *, vnodes: int = DEFAULT_VNODES) -> None:
        if vnodes < 1:
            raise ValueError("vnodes must be at least 1")
        self.vnodes = vnodes
        self._nodes: set[str] = set()
        self._points: list[int] = []
        self._owners: list[str] = []
        for node in nodes:
            self.add(node)

    @property
    def nodes(self) -> frozenset[str]:
        return frozenset(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, node: object) -> bool:
        return node in self._nodes

    def add(self, node: str) -> None:
        if node in self._nodes:
            return
        self._nodes.add(node)
        for i in range(self.vnodes):
            p = point(f"{node}#{i}")
            at = bisect.bisect_left(self._points, p)
            # A collision of two 64-bit points is all but impossible; the tie goes to the
            # smaller name, so every process still agrees.
            while at < len(self._points) and self._points[at] == p and self._owners[at] < node:
                at += 1
            self._points.insert(at, p)
            self._owners.insert(at, node)

    def remove(self, node: str) -> None:
        if node not in self._nodes:
            return
        self._nodes.discard(node)
        kept = [(p, o) for p, o in zip(self._points, self._owners, strict=True) if o != node]
        self._points = [p for p, _ in kept]
        self._owners = [o for _, o in kept]

    def node_for(self, key: str) -> str | None:
        """The node that owns ``key``, or None when the ring is empty."""
        if not self._points:
            return None
        at = bisect.bisect_left(self._points, point(key))
        return self._owners[at % len(self._points)]

    def shares(self) -> dict[str, float]:
        """Each node's fraction of the key space (the arcs that end at its points; sums to 1)."""
        if not self._points:
            return {}
        share = dict.fromkeys(self._nodes, 0)
        previous = self._points[-1] - _SPACE  # the arc that wraps around zero
        for p, owner in zip(self._points, self._owners, strict=True):
            share[owner] += p - previous
            previous = p
        return {node: arc / _SPACE for node, arc in share.items()}
