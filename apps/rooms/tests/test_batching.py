"""apps/rooms/batching.py: one command in flight per key; what is submitted meanwhile goes in the
next, in order; a failure reaches each caller of its batch and no other."""

from __future__ import annotations

import asyncio

import pytest

from apps.rooms.batching import Batcher


class Recorder:
    """A flush that records its batches and returns each item doubled, once ``gate`` opens."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, list[int]]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_with: Exception | None = None

    async def __call__(self, key, items):
        self.batches.append((key, list(items)))
        await self.gate.wait()
        if self.fail_with is not None:
            exc, self.fail_with = self.fail_with, None
            raise exc
        return [2 * i for i in items]


def test_items_of_one_turn_go_together_and_those_sent_in_flight_go_next_in_order():
    async def run():
        flush = Recorder()
        batcher = Batcher(flush)
        flush.gate.clear()
        first = [asyncio.ensure_future(batcher.submit("a", i)) for i in (1, 2)]
        await asyncio.sleep(0)  # the drain takes the first two and waits on the gate
        await asyncio.sleep(0)
        later = [asyncio.ensure_future(batcher.submit("a", i)) for i in (3, 4, 5)]
        await asyncio.sleep(0)
        flush.gate.set()
        assert await asyncio.gather(*first, *later) == [2, 4, 6, 8, 10]
        assert flush.batches == [("a", [1, 2]), ("a", [3, 4, 5])]
        assert await batcher.submit("a", 6) == 12  # idle again: at once, alone
        assert flush.batches[-1] == ("a", [6])
        assert batcher._queues == {}

    asyncio.run(run())


def test_keys_are_independent():
    async def run():
        flush = Recorder()
        batcher = Batcher(flush)
        got = await asyncio.gather(batcher.submit("a", 1), batcher.submit("b", 2), batcher.submit("a", 3))
        assert got == [2, 4, 6]
        assert sorted(flush.batches) == [("a", [1, 3]), ("b", [2])]

    asyncio.run(run())


def test_a_failed_flush_fails_its_own_callers_only():
    async def run():
        flush = Recorder()
        batcher = Batcher(flush)
        flush.gate.clear()
        flush.fail_with = ConnectionError("gone")
        failing = [asyncio.ensure_future(batcher.submit("a", i)) for i in (1, 2)]
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        next_one = asyncio.ensure_future(batcher.submit("a", 3))
        await asyncio.sleep(0)
        flush.gate.set()
        for future in failing:
            with pytest.raises(ConnectionError):
                await future
        assert await next_one == 6

    asyncio.run(run())


def test_a_caller_that_gives_up_does_not_stop_the_others():
    async def run():
        flush = Recorder()
        batcher = Batcher(flush)
        flush.gate.clear()
        leaving = asyncio.ensure_future(batcher.submit("a", 1))
        staying = asyncio.ensure_future(batcher.submit("a", 2))
        await asyncio.sleep(0)
        leaving.cancel()
        flush.gate.set()
        assert await staying == 4
        assert leaving.cancelled()
        assert flush.batches == [("a", [1, 2])]  # its item was sent all the same

    asyncio.run(run())


def test_a_flush_that_answers_the_wrong_number_of_results_fails_its_callers():
    async def run():
        async def short(key, items):
            return items[:-1]

        batcher = Batcher(short)
        got = await asyncio.gather(batcher.submit("a", 1), batcher.submit("a", 2), return_exceptions=True)
        assert all(isinstance(g, RuntimeError) for g in got)
        assert batcher._queues == {}

    asyncio.run(run())


def test_cancelling_the_drain_cancels_every_waiting_caller():
    async def run():
        flush = Recorder()
        batcher = Batcher(flush)
        flush.gate.clear()
        in_flight = asyncio.ensure_future(batcher.submit("a", 1))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        queued = asyncio.ensure_future(batcher.submit("a", 2))
        await asyncio.sleep(0)
        for task in list(batcher._tasks):
            task.cancel()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert in_flight.cancelled() and queued.cancelled()
        assert batcher._queues == {}

    asyncio.run(run())
