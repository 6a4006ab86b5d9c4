"""Is nginx's growth in a chaos run a leak or a high-water mark? (bench/chaos/README.md, "RSS")

The production front (deploy/nginx/synctv.conf.template) in front of a plain WebSocket echo
server; N sockets through it, then the same move several times: N new sockets beside them (what a
drain does for a moment: every moved client holds its old and its new socket), then the old N
closed. nginx's RSS (master + worker) after each step. A leak grows with every cycle; a
high-water mark grows in the first cycle (the allocator keeps what the peak needed, for reuse)
and stays flat after it.

    .venv/bin/python bench/chaos/nginx_memory.py [N] [CYCLES]      (defaults: 2000 3)
"""

from __future__ import annotations

import asyncio
import resource
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from websockets.asyncio.client import connect  # noqa: E402
from websockets.asyncio.server import serve  # noqa: E402

from tests.procs import start_front  # noqa: E402

sys.path.insert(0, str(HERE))
from chaos import tree, vmrss_kb  # noqa: E402


def nginx_mb(pid: int) -> float:
    return sum(vmrss_kb(p) or 0 for p in tree(pid)) / 1024


async def echo(ws) -> None:
    async for message in ws:
        await ws.send(message)


async def open_many(url: str, n: int) -> list:
    sem = asyncio.Semaphore(64)

    async def one():
        async with sem:
            ws = await connect(url, open_timeout=30, ping_interval=None, compression=None)
            await ws.send("hello")
            await ws.recv()
            return ws

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def close_all(sockets: list) -> None:
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


async def main(n: int, cycles: int) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    async with serve(echo, "127.0.0.1", 0, ping_interval=None, compression=None) as server:
        upstream = server.sockets[0].getsockname()[1]
        with tempfile.TemporaryDirectory() as tmp:
            port, front = start_front(Path(tmp), [upstream], [upstream])
            with front as proc:
                await asyncio.sleep(1)
                pid = proc.pid
                url = f"ws://127.0.0.1:{port}/ws/echo/"
                print(
                    f"nginx RSS at start: {nginx_mb(pid):.1f} MB; {n} sockets, then {n} more, {cycles} cycles"
                )
                base = await open_many(url, n)
                print(f"  {n} open: {nginx_mb(pid):.1f} MB")
                for cycle in range(1, cycles + 1):
                    moved = await open_many(url, n)
                    peak = nginx_mb(pid)
                    await close_all(base)  # the old sockets go, the new ones stay: a move
                    base = moved
                    await asyncio.sleep(1)
                    print(f"  move {cycle}: {2 * n} open {peak:.1f} MB; back to {n}: {nginx_mb(pid):.1f} MB")
                await close_all(base)
                await asyncio.sleep(1)
                print(f"  all closed: {nginx_mb(pid):.1f} MB")


if __name__ == "__main__":
    asyncio.run(
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000, int(sys.argv[2]) if len(sys.argv) > 2 else 3)
    )
