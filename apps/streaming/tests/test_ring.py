"""The consistent hash ring (apps.streaming.ring): little movement, an even spread, the same answer
in every process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from apps.streaming.ring import HashRing, point

KEYS = [f"stream-{i}" for i in range(10_000)]
ROOT = Path(__file__).resolve().parents[3]


def owners(ring: HashRing) -> dict[str, str | None]:
    return {key: ring.node_for(key) for key in KEYS}


@pytest.mark.parametrize("n", [3, 5, 10])
def test_adding_one_node_moves_about_one_in_n_plus_one_keys_all_to_the_new_node(n):
    nodes = [f"node-{i}" for i in range(n)]
    before = owners(HashRing(nodes))
    after = owners(HashRing([*nodes, "newcomer"]))
    moved = [key for key in KEYS if before[key] != after[key]]
    expected = len(KEYS) / (n + 1)
    assert 0.7 * expected <= len(moved) <= 1.3 * expected, (len(moved), expected)
    assert {after[key] for key in moved} == {"newcomer"}


@pytest.mark.parametrize("n", [3, 5, 10])
def test_removing_one_node_moves_only_its_keys_about_one_in_n(n):
    nodes = [f"node-{i}" for i in range(n)]
    ring = HashRing(nodes)
    before = owners(ring)
    ring.remove("node-0")
    after = owners(ring)
    moved = {key for key in KEYS if before[key] != after[key]}
    assert moved == {key for key in KEYS if before[key] == "node-0"}
    expected = len(KEYS) / n
    assert 0.7 * expected <= len(moved) <= 1.3 * expected, (len(moved), expected)
    assert "node-0" not in after.values()


def test_keys_spread_evenly_over_the_nodes():
    ring = HashRing([f"node-{i}" for i in range(8)])
    load = Counter(owners(ring).values())
    assert len(load) == 8
    assert max(load.values()) / min(load.values()) < 1.4, load
    shares = ring.shares()
    assert sum(shares.values()) == pytest.approx(1.0)
    assert max(shares.values()) / min(shares.values()) < 1.4, shares


def test_the_ring_does_not_depend_on_the_order_nodes_arrive_in():
    a = HashRing(["a", "b", "c", "d"])
    b = HashRing(["d", "b"])
    b.add("a")
    b.add("c")
    b.add("c")  # twice: no change
    assert owners(a) == owners(b)
    assert b.nodes == frozenset("abcd") and len(b) == 4 and "a" in b


def test_an_empty_ring_owns_nothing_and_a_single_node_owns_everything():
    assert HashRing().node_for("x") is None and HashRing().shares() == {}
    solo = HashRing(["only"])
    assert set(owners(solo).values()) == {"only"}
    assert solo.shares() == {"only": pytest.approx(1.0)}
    with pytest.raises(ValueError):
        HashRing(vnodes=0)


def test_another_process_with_another_hash_seed_computes_the_same_owners():
    """Python's hash() of a str differs per process; the ring must not."""
    script = (
        "from apps.streaming.ring import HashRing\n"
        "r = HashRing(['n1', 'n2', 'n3'])\n"
        "print(','.join(r.node_for(f'stream-{i}') or '' for i in range(10000)))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    here = HashRing(["n1", "n2", "n3"])
    assert out.split(",") == [here.node_for(key) for key in KEYS]


def test_the_hash_is_pinned():
    """Nodes of two versions must agree during a rolling upgrade: changing the hash would move
    every stream at once."""
    assert point("stream-1") == 0x0DA6871ADF65B0F2
    ring = HashRing(["n1", "n2", "n3"])
    assert [ring.node_for(f"stream-{i}") for i in range(8)] == [
        "n2",
        "n2",
        "n2",
        "n1",
        "n2",
        "n1",
        "n1",
        "n1",
    ]
