"""A TCP proxy that behaves like a long, jittery network link, for the browser tests that measure
sync over real networks (tests/test_browser_wan.py). Loopback only.

Each chunk of bytes that arrives on either side is delivered to the other side after a one-way
delay drawn for it (uniform in ``mean ± jitter`` ms, per direction), but never before the chunk
sent ahead of it in the same direction: like a TCP stream over a real path, nothing overtakes,
so a chunk behind a slow one waits for it. A seeded generator makes a run repeatable.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from dataclasses import dataclass

from tests.procs import free_port


@dataclass(frozen=True)
class Link:
    """One direction's one-way delay in milliseconds: uniform in mean ± jitter."""

    mean: float
    jitter: float = 0.0

    def draw(self, rng: random.Random) -> float:
        return max(0.0, rng.uniform(self.mean - self.jitter, self.mean + self.jitter)) / 1000

    def __str__(self) -> str:
        return f"{self.mean:g} ± {self.jitter:g} ms"


class DelayingProxy:
    def __init__(self, target_port: int, *, up: Link, down: Link, seed: int = 1) -> None:
        self.target = ("127.0.0.1", target_port)
        self.up, self.down = up, down  # up: browser -> server
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._rng = random.Random(seed)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="wan-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    def start(self) -> DelayingProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        pipes = [
            asyncio.ensure_future(self._pipe(client_reader, server_writer, self.up)),
            asyncio.ensure_future(self._pipe(server_reader, client_writer, self.down)),
        ]
        self._tasks.update(pipes)
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pipes:
                task.cancel()
                self._tasks.discard(task)
            for writer in (client_writer, server_writer):
                writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: Link) -> None:
        """Read as it comes; deliver each chunk at its due time, in order."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    writer.write_eof() if writer.can_write_eof() else None
                    return
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()

        delivering = asyncio.ensure_future(deliver())
        last_due = 0.0
        try:
            while True:
                data = await reader.read(65536)
                last_due = max(loop.time() + link.draw(self._rng), last_due)
                queue.put_nowait((last_due, data))
                if not data:
                    break
            await delivering
        except (ConnectionError, OSError):
            pass
        finally:
            delivering.cancel()
