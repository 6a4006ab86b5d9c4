"""The WebSocket allowances in apps.core.ratelimit: token buckets and socket slots in this process
(docs/security.md, "Limits")."""

from __future__ import annotations

import pytest

from apps.core import ratelimit
from apps.core.tests.helpers import FakeClock


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock(1000.0)
    monkeypatch.setattr(ratelimit, "monotonic", fake)
    return fake


def test_a_bucket_allows_its_burst_then_its_rate(clock):
    bucket = ratelimit.TokenBucket(3, 2.0)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    assert bucket.wait() == pytest.approx(0.5)
    clock.now += 0.25
    assert not bucket.take()
    clock.now += 0.25
    assert bucket.take() and not bucket.take()
    clock.now += 60  # a long pause refills to the burst, never beyond
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


def test_buckets_are_per_allowance_and_key(clock, monkeypatch):
    monkeypatch.setitem(ratelimit.SOCKET_ALLOWANCES, "ws_chat", ratelimit.Allowance(2, 1.0))
    buckets = ratelimit.LocalBuckets()
    assert buckets.bucket("ws_chat", "alice").take() and buckets.bucket("ws_chat", "alice").take()
    assert not buckets.bucket("ws_chat", "alice").take()
    assert buckets.bucket("ws_chat", "bob").take()  # another user's allowance is their own
    assert buckets.bucket("ws_emoji", "alice").take()  # another allowance is separate
    assert buckets.bucket("ws_chat", "alice") is buckets.bucket("ws_chat", "alice")


def test_a_full_table_starts_over_which_only_forgives(clock, monkeypatch):
    monkeypatch.setitem(ratelimit.SOCKET_ALLOWANCES, "ws_chat", ratelimit.Allowance(1, 0.001))
    buckets = ratelimit.LocalBuckets(max_keys=3)
    for key in ("a", "b", "c"):
        assert buckets.bucket("ws_chat", key).take()
    assert not buckets.bucket("ws_chat", "a").take()
    assert buckets.bucket("ws_chat", "d").take()  # the fourth key: the table started over
    assert buckets.bucket("ws_chat", "a").take()  # so "a" has a full bucket again


def test_the_frame_allowance_is_a_new_bucket_per_socket(clock):
    one, two = ratelimit.socket_bucket("ws_frame"), ratelimit.socket_bucket("ws_frame")
    burst = ratelimit.SOCKET_ALLOWANCES["ws_frame"].burst
    assert all(one.take() for _ in range(burst)) and not one.take()
    assert two.take()


def test_socket_slots_cap_each_key_and_are_given_back():
    slots = ratelimit.LocalSlots(2)
    assert slots.take("bob:room") and slots.take("bob:room")
    assert not slots.take("bob:room")
    assert slots.take("carol:room")
    slots.give_back("bob:room")
    assert slots.take("bob:room")
    for key in ("bob:room", "bob:room", "carol:room"):
        slots.give_back(key)
    assert len(slots) == 0
    slots.give_back("nobody:room")  # a slot never taken: nothing goes below zero
    assert len(slots) == 0 and slots.take("nobody:room")
