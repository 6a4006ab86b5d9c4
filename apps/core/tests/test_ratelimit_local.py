"""apps/core/ratelimit.py LocalCounter: the per-process counts used while Redis is unreachable
(issue 10, finding 3) are exact under threads and bounded in memory."""

from __future__ import annotations

from apps.core.ratelimit import LocalCounter
from apps.core.tests.helpers import run_at_once

NOW = 1_800_000_000.0
LIMIT = 1_000_000  # high enough that no key here is over it


def test_counts_are_exact_under_threads():
    counter = LocalCounter()
    threads, per_thread = 8, 500
    window = int(NOW) + 60
    seen = run_at_once(
        lambda i: [
            counter.count("k", window=window, limit=LIMIT, increment=True, now=NOW) for _ in range(per_thread)
        ],
        threads,
        timeout=30,
    )
    # Every increment got its own number: no two threads read the same count.
    assert sorted(n for s in seen for n in s) == list(range(1, threads * per_thread + 1))
    assert (
        counter.count("k", window=int(NOW) + 60, limit=LIMIT, increment=False, now=NOW)
        == threads * per_thread
    )


def test_a_new_window_starts_from_zero_and_give_back_stays_in_its_window():
    counter = LocalCounter()
    assert counter.count("k", window=100, limit=LIMIT, increment=True, now=50) == 1
    assert counter.count("k", window=100, limit=LIMIT, increment=True, now=60) == 2
    counter.give_back("k", window=100)
    assert counter.count("k", window=100, limit=LIMIT, increment=False, now=70) == 1
    # The next window: the old count is gone, and a give-back for the old window does nothing.
    assert counter.count("k", window=200, limit=LIMIT, increment=True, now=150) == 1
    counter.give_back("k", window=100)
    assert counter.count("k", window=200, limit=LIMIT, increment=False, now=150) == 1
    # Reading a key never counted creates nothing.
    assert counter.count("other", window=200, limit=LIMIT, increment=False, now=150) == 0
    assert len(counter) == 1


def test_a_flood_of_new_keys_never_evicts_a_key_that_is_refusing():
    """During a Redis outage an attacker rotating addresses must not flush the count of an
    account it is guessing at: keys still under their limit go first."""
    counter = LocalCounter(max_keys=100)
    for _ in range(5):
        counter.count("account:root", window=300, limit=5, increment=True, now=150)
    for i in range(10_000):
        counter.count(f"ip:2001:db8:{i:x}::/64", window=300, limit=20, increment=True, now=150)
    assert len(counter) <= 100
    assert counter.count("account:root", window=300, limit=5, increment=False, now=150) == 5


def test_ended_windows_are_dropped_and_keys_are_capped():
    counter = LocalCounter(max_keys=100)
    for i in range(50):
        counter.count(f"old{i}", window=100, limit=LIMIT, increment=True, now=50)
    assert len(counter) == 50
    # A second later the sweep drops every key whose window has ended.
    counter.count("new", window=200, limit=LIMIT, increment=True, now=150)
    assert len(counter) == 1
    # A flood of new keys never holds more than max_keys; the least recently touched go first.
    counter.count("kept", window=300, limit=LIMIT, increment=True, now=150)
    for i in range(1000):
        counter.count(f"flood{i}", window=300, limit=LIMIT, increment=True, now=150)
        if i % 50 == 0:
            counter.count("kept", window=300, limit=LIMIT, increment=True, now=150)
    assert len(counter) <= 100
    assert counter.count("kept", window=300, limit=LIMIT, increment=False, now=150) == 21
    assert counter.count("flood0", window=300, limit=LIMIT, increment=False, now=150) == 0
