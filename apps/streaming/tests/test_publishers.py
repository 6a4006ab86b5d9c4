"""The publisher registry and the failover lock (apps.streaming.publishers) on a real Redis and on
the embedded default's process memory: one publisher per stream, owner-only refresh, release and
unlock, TTL expiry, a deterministic election."""

from __future__ import annotations

import threading
import time

import pytest

from apps.streaming import cluster, publishers
from apps.streaming.tests.streams_helpers import both_registries

both = both_registries


@both
def test_of_many_claimers_at_once_exactly_one_wins(registry):
    barrier = threading.Barrier(8)
    results: dict[str, bool] = {}

    def claimer(node: str) -> None:
        barrier.wait()
        results[node] = publishers.claim("s1", node)

    threads = [threading.Thread(target=claimer, args=(f"node-{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [node for node, won in results.items() if won]
    assert len(winners) == 1
    assert publishers.owner("s1") == winners[0]
    assert publishers.claim("s1", winners[0]) is True  # the same node again: fine
    assert publishers.claim("s1", "another") is False


@both
def test_refresh_and_release_by_a_non_owner_are_refused(registry):
    assert publishers.claim("s1", "a", ttl=5)
    assert publishers.refresh("s1", "b") is False
    assert publishers.release("s1", "b") is False
    assert publishers.owner("s1") == "a"
    assert publishers.refresh("s1", "a", ttl=60) is True
    [entry] = publishers.all_publishers()
    assert entry.stream_id == "s1" and entry.node == "a" and 55 < entry.ttl <= 60
    assert publishers.release("s1", "a") is True
    assert publishers.owner("s1") is None and publishers.all_publishers() == []
    assert publishers.refresh("s1", "a") is False  # nothing to refresh once released


@both
def test_a_claim_expires_after_its_ttl_and_stays_listed_for_failover(registry):
    assert publishers.claim("s1", "a", ttl=0.5)
    assert publishers.claim("s2", "b")
    time.sleep(0.7)
    assert publishers.owner("s1") is None
    assert publishers.refresh("s1", "a") is False
    listed = {p.stream_id: p for p in publishers.all_publishers()}
    assert listed["s1"].node is None and listed["s1"].ttl is None
    assert listed["s2"].node == "b"
    assert [p.stream_id for p in publishers.silent(30)] == ["s1"]
    assert publishers.claim("s1", "c") is True  # free again


@both
def test_silent_finds_stale_refreshes_and_dead_owners(registry):
    assert publishers.claim("s1", "a")
    assert publishers.claim("s2", "b")
    assert publishers.silent(30) == []
    assert [p.stream_id for p in publishers.silent(30, live={"a"})] == ["s2"]
    time.sleep(0.3)
    assert publishers.refresh("s2", "b")
    assert [p.stream_id for p in publishers.silent(0.2)] == ["s1"]


@both
def test_transfer_takes_over_only_from_the_failed_node_or_an_empty_key(registry):
    assert publishers.claim("s1", "a")
    assert publishers.transfer("s1", failed="x", to="c") is False  # a is alive and owns it
    assert publishers.transfer("s1", failed="a", to="c") is True
    assert publishers.owner("s1") == "c"
    publishers.forget("s1")
    assert publishers.owner("s1") is None and publishers.all_publishers() == []
    assert publishers.transfer("s1", failed=None, to="d") is True
    assert publishers.owner("s1") == "d"


@both
def test_the_failover_lock_is_released_only_by_its_owner(registry):
    token = publishers.acquire_failover_lock("s1", ttl=0.5)
    assert token
    assert publishers.acquire_failover_lock("s1") is None
    assert publishers.release_failover_lock("s1", "not-the-token") is False
    assert publishers.acquire_failover_lock("s1") is None
    time.sleep(0.7)  # expired: someone else takes it, and the first holder cannot free theirs
    second = publishers.acquire_failover_lock("s1")
    assert second and second != token
    assert publishers.release_failover_lock("s1", token) is False
    assert publishers.release_failover_lock("s1", second) is True
    assert publishers.acquire_failover_lock("s1")


@pytest.mark.redis
@pytest.mark.parametrize("registry", ["redis"], indirect=True)
def test_keys_use_the_stream_id_and_the_designed_ttls(registry):
    assert publishers.claim("s9", "a")
    assert 295 <= registry.ttl("stream:publisher:s9") <= 300
    assert publishers.acquire_failover_lock("s9")
    assert 25 <= registry.ttl("lock:stream:failover:s9") <= 30


@both
def test_election_is_deterministic_and_changes_when_the_elected_node_leaves(registry):
    for node in ("n1", "n2", "n3"):
        cluster.register(node, "relay", started=1.0)
    cluster.register("web-only", "web", started=1.0)  # runs no relay: never elected
    streams = [f"stream-{i}" for i in range(30)]
    elected = {s: publishers.elect(s) for s in streams}
    assert {s: publishers.elect(s, ["n3", "n1", "n2"]) for s in streams} == elected
    assert set(elected.values()) == {"n1", "n2", "n3"}
    cluster.leave("n2")
    after = {s: publishers.elect(s) for s in streams}
    assert all(after[s] != "n2" for s in streams)
    # Only the streams of the node that left move.
    assert {s for s in streams if after[s] != elected[s]} == {s for s in streams if elected[s] == "n2"}
    cluster.leave("n1")
    cluster.leave("n3")
    assert publishers.elect("stream-0") is None
    cluster.leave("web-only")
