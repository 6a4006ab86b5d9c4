"""The floor under fan-out on this machine: the cost of writing one small frame to each of N
already-open loopback TCP sockets from a uvloop event loop (what every ASGI server does once
per socket per event), with nothing else: no ASGI, no WebSocket framing, no application.

A child process opens the N connections and drains them; this process accepts them and, for
each of ``--events`` rounds, writes the same pre-built 250-byte WebSocket text frame to every
socket with ``transport.write`` and times the pass.

    .venv/bin/python bench/ws/floor_write.py --n 500 --events 60

Prints one JSON line: wall and CPU microseconds per write (p50 over rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import statistics
import time

import uvloop

PAYLOAD = (
    b'{"type":"playback","movie_id":null,"playing":true,"position":12.5,"rate":1.0,'
    b'"updated_at":1764000000000,"version":42,"server_time":1764000000000,'
    b'"by":{"id":"abcdefghijklmnop","username":"wsb00000"}}'
).ljust(248, b" ")
FRAME = bytes([0x81, 126]) + len(PAYLOAD).to_bytes(2, "big") + PAYLOAD  # text frame, server -> client


def reader(port: int, n: int, ready) -> None:
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.setblocking(False)
        socks.append(s)
    ready.set()
    import selectors

    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    while True:
        for key, _ in sel.select():
            try:
                if not key.fileobj.recv(65536):
                    return
            except BlockingIOError:
                pass


async def main(n: int, events: int, interval: float) -> dict:
    transports: list[asyncio.Transport] = []
    got_all = asyncio.Event()

    class P(asyncio.Protocol):
        def connection_made(self, transport):
            transports.append(transport)
            if len(transports) == n:
                got_all.set()

    server = await asyncio.get_running_loop().create_server(P, "127.0.0.1", 0, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    ready = multiprocessing.Event()
    child = multiprocessing.Process(target=reader, args=(port, n, ready), daemon=True)
    child.start()
    await got_all.wait()
    await asyncio.sleep(0.5)
    wall, cpu = [], []
    for _ in range(events):
        t, c = time.perf_counter(), time.thread_time()
        for tr in transports:
            tr.write(FRAME)
        wall.append((time.perf_counter() - t) * 1e6 / n)
        cpu.append((time.thread_time() - c) * 1e6 / n)
        await asyncio.sleep(interval)
    for tr in transports:
        tr.close()
    child.terminate()
    return {
        "sockets": n,
        "events": events,
        "frame_bytes": len(FRAME),
        "write_us_wall_p50": round(statistics.median(wall), 2),
        "write_us_cpu_p50": round(statistics.median(cpu), 2),
        "pass_ms_wall_p50": round(statistics.median(wall) * n / 1000, 2),
        "loop": "uvloop",
        "pid": os.getpid(),
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--events", type=int, default=60)
    ap.add_argument("--interval", type=float, default=0.05)
    a = ap.parse_args()
    print(json.dumps(uvloop.run(main(a.n, a.events, a.interval))))
