"""Redis commands of many sockets sent as one: the first at once, the rest while it is in flight.

A join costs a socket a subscription to its user's channel and a presence entry; a node taking
hundreds of sockets at once (a room filling, a reconnect storm) spent a Redis round trip and the
client library's per-command Python on each. ``Batcher`` keeps one command in flight per key:
an item submitted while the key is idle goes out on the next turn of the event loop (with any
other submitted in the same turn), and the items submitted while a command is in flight go out
together when it returns. A quiet moment costs no extra wait; a burst costs a few round trips.

Items of one key are flushed in the order they were submitted, one batch after the other, so a
leave submitted after a join is applied after it (docs/realtime.md, "Who is online").
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")

Flush = Callable[[Hashable, list[Item]], Awaitable[Sequence[Any]]]  # (key, items) -> one result each


class Batcher(Generic[Item]):
    """``submit(key, item)`` returns the item's result from ``flush(key, items)``, which gets every
    item of ``key`` submitted since the last flush began, in order. An exception from a flush is
    raised to each of its items' callers."""

    def __init__(self, flush: Flush) -> None:
        self._flush = flush
        self._queues: dict[Hashable, list[tuple[Item, asyncio.Future]]] = {}  # key -> waiting
        self._tasks: set[asyncio.Task] = set()

    async def submit(self, key: Hashable, item: Item) -> Any:
        future = asyncio.get_running_loop().create_future()
        queue = self._queues.get(key)
        if queue is None:  # nothing in flight for the key: a drain starts on the next turn
            self._queues[key] = [(item, future)]
            task = asyncio.create_task(self._drain(key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            queue.append((item, future))
        return await future

    async def _drain(self, key: Hashable) -> None:
        try:
            while batch := self._queues[key]:
                self._queues[key] = []  # what is submitted from now on goes in the next batch
                try:
                    results = list(await self._flush(key, [item for item, _ in batch]))
                    if len(results) != len(batch):
                        raise RuntimeError(f"{len(results)} results for {len(batch)} items")
                except BaseException as exc:
                    for _, future in batch:
                        if future.done():  # a caller that gave up no longer listens
                            continue
                        if isinstance(exc, Exception):
                            future.set_exception(exc)
                        else:
                            future.cancel()
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            for _, future in self._queues.pop(key, ()):  # left waiting only when cancelled
                future.cancel()
