"""The FLOOR for the fan-out scenario of ``load.js``: not a server, the least work any Python
server could do for it on this host.

One process per "node" (uvloop, an ``asyncio.Protocol`` on raw TCP: no ASGI, no Django, no
database) speaks just enough of our WebSocket protocol for ``load.js --scenario fanout`` to run
unchanged against it:

- the HTTP upgrade: ``101 Switching Protocols`` with ``Sec-WebSocket-Accept`` and
  ``Sec-WebSocket-Protocol: synctv.v1``; any ``bearer.<token>`` is accepted (no auth), no
  extension is ever negotiated (no permessage-deflate); the ``hello`` (shaped like ours: member,
  room, playback, members_online) goes out in the same write as the 101;
- client frames: masked, 7/16/64-bit lengths, fragments; ping -> pong, close -> close;
- a ``{"type":"playback",...}`` text frame from any member (no permission check, no validation
  beyond ``json.loads``): the next version comes from Redis ``INCR floor:version:<room>`` (a
  shared counter: any node may take a change), the event JSON is built (the shape of ours:
  type, movie_id, playing, position, rate, updated_at, version, server_time, by) and PUBLISHed on
  ``floor:room:<room>`` — the same cross-node hop as our app's hub (redis.asyncio, one pub/sub
  connection per node, one pattern subscription ``floor:room:*``);
- each node, on each message, builds the WebSocket frame ONCE and ``transport.write``s the same
  bytes to every local socket of the room that is not closing. Nothing else: no slow-socket
  check, no pause/backpressure handling, no presence, no audit, no per-socket filtering.

The node that took the change delivers it through the same Redis round trip as the others (as
our app does). ``--local-first`` instead delivers it to its own sockets before publishing (its
subscriber then skips messages it published itself: every published message is prefixed with
the publishing node's port and a space).

    python bench/ws/floor_fanout.py --port 8101 [--redis redis://127.0.0.1:6379/11] [--local-first]
    python bench/ws/floor_fanout.py --write-layout FILE --n 1000    # a fake load.js layout

Driver: ``bench/ws/floor_fanout`` (2 nodes + load.js); see README.md, "The floor".
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import signal
import time

import redis.asyncio as aioredis
import uvloop

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD = 16384
MAX_PAYLOAD = 1 << 20


def now_ms() -> int:
    return int(time.time() * 1000)


def frame(opcode: int, payload: bytes) -> bytes:
    """A server -> client frame (final, unmasked)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")
    return head + payload


def unmask(mask: bytes, data: bytes) -> bytes:
    n = len(data)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def user_of(token: str) -> dict:
    """Any token is accepted; the fake layout's ``floor.<i>`` tokens name user i."""
    kind, _, index = token.partition(".")
    if kind == "floor" and index.isdigit():
        i = int(index)
        return {"id": f"floorid{i:09d}", "username": f"wsb{i:05d}"}
    return {"id": token[:16] or "anonymous", "username": "guest"}


class Node:
    def __init__(self, port: int, redis_url: str, local_first: bool) -> None:
        self.port = port
        self.origin = b"%d" % port  # prefixes what this node publishes
        self.local_first = local_first
        self.redis = aioredis.Redis.from_url(redis_url)
        self.rooms: dict[str, set[asyncio.Transport]] = {}  # room -> local open sockets
        self.last: dict[str, bytes] = {}  # room -> its last playback event (for the hello)

    # --- delivery -------------------------------------------------------------------------------
    def deliver(self, room: str, event: bytes) -> None:
        self.last[room] = event
        transports = self.rooms.get(room)
        if not transports:
            return
        data = frame(0x1, event)  # built once, the same bytes to every socket
        for t in transports:
            if not t.is_closing():
                t.write(data)

    async def subscribe_forever(self) -> None:
        pubsub = self.redis.pubsub()
        await pubsub.psubscribe("floor:room:*")
        async for msg in pubsub.listen():
            if msg["type"] != "pmessage":
                continue
            origin, _, event = msg["data"].partition(b" ")
            if self.local_first and origin == self.origin:
                continue  # delivered locally before it was published
            self.deliver(msg["channel"][11:].decode(), event)

    # --- the write path ---------------------------------------------------------------------------
    async def change(self, room: str, user: dict, msg: dict) -> None:
        version = await self.redis.incr(f"floor:version:{room}")
        t = now_ms()
        event = {
            "type": "playback",
            "movie_id": None,
            "playing": bool(msg.get("playing", False)),
            "position": float(msg.get("position", 0.0)),
            "rate": 1.0,
            "updated_at": t,
            "version": version,
            "server_time": t,
            "by": user,
        }
        data = json.dumps(event, separators=(",", ":")).encode()
        if self.local_first:
            self.deliver(room, data)
        await self.redis.publish(f"floor:room:{room}", self.origin + b" " + data)

    async def playback(self, room: str) -> dict:
        if room not in self.last:
            version = int(await self.redis.get(f"floor:version:{room}") or 0)
            t = now_ms()
            state = {"type": "playback", "movie_id": None, "playing": False, "position": 0.0}
            state |= {"rate": 1.0, "updated_at": t, "version": version, "server_time": t}
            self.last.setdefault(room, json.dumps(state, separators=(",", ":")).encode())
        state = json.loads(self.last[room])
        for key in ("type", "by"):
            state.pop(key, None)
        return state


class Conn(asyncio.Protocol):
    def __init__(self, node: Node) -> None:
        self.node = node
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.open = False  # after the 101 and the hello
        self.room = ""
        self.user: dict = {}
        self.fragments: list[bytes] = []

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        if self.open:
            self.node.rooms[self.room].discard(self.transport)
        self.open = False

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.open:
            self.read_frames()
        elif self.room == "":
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                head, self.buf = bytes(self.buf[:end]), self.buf[end + 4 :]
                self.handshake(head.decode("latin-1"))
            elif len(self.buf) > MAX_HEAD:
                self.transport.close()

    # --- the upgrade ----------------------------------------------------------------------------------
    def handshake(self, head: str) -> None:
        request, *lines = head.split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        parts = request.split(" ")
        path = parts[1].strip("/").split("/") if len(parts) == 3 else []
        key = headers.get("sec-websocket-key", "")
        offered = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",")]
        if len(path) != 3 or path[:2] != ["ws", "rooms"] or not key or "synctv.v1" not in offered:
            self.transport.write(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            self.transport.close()
            return
        self.room = path[2]
        token = next((p[7:] for p in offered if p.startswith("bearer.")), "")
        self.user = user_of(token)
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        response = (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: synctv.v1\r\n\r\n"
        ).encode()
        asyncio.get_running_loop().create_task(self.accept(response))

    async def accept(self, response: bytes) -> None:
        playback = await self.node.playback(self.room)
        if self.transport.is_closing():
            return
        hello = {
            "type": "hello",
            "member": {"user": self.user, "role": "member", "status": "active", "effective_permissions": []},
            "room": {"id": self.room, "name": "floor", "member_count": None},
            "playback": playback,
            "members_online": [self.user],
        }
        self.transport.write(response + frame(0x1, json.dumps(hello, separators=(",", ":")).encode()))
        self.node.rooms.setdefault(self.room, set()).add(self.transport)
        self.open = True
        if self.buf:
            self.read_frames()

    # --- client frames ------------------------------------------------------------------------------
    def read_frames(self) -> None:
        buf = self.buf
        while len(buf) >= 2 and self.open:
            b0, b1 = buf[0], buf[1]
            n, off = b1 & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    return
                n, off = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n, off = int.from_bytes(buf[2:10], "big"), 10
            if not b1 & 0x80 or n > MAX_PAYLOAD:
                return self.close(1002 if n <= MAX_PAYLOAD else 1009)  # unmasked / too big
            if len(buf) < off + 4 + n:
                return
            payload = unmask(bytes(buf[off : off + 4]), bytes(buf[off + 4 : off + 4 + n]))
            del buf[: off + 4 + n]
            self.on_frame(b0 & 0x80, b0 & 0x0F, payload)

    def on_frame(self, fin: int, opcode: int, payload: bytes) -> None:
        if opcode == 0x9:  # ping
            self.transport.write(frame(0xA, payload))
        elif opcode == 0x8:  # close: echo its code, then close the TCP connection
            self.close(int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1000)
        elif opcode in (0x0, 0x1, 0x2):  # data (0x0: a continuation)
            self.fragments.append(payload)
            if fin:
                message = b"".join(self.fragments)
                self.fragments = []
                try:
                    msg = json.loads(message)
                except ValueError:
                    return self.close(1007)
                if isinstance(msg, dict) and msg.get("type") == "playback":
                    asyncio.get_running_loop().create_task(self.node.change(self.room, self.user, msg))
        # pong (0xA) and anything else: ignored

    def close(self, code: int) -> None:
        if self.open:
            self.node.rooms[self.room].discard(self.transport)
            self.open = False
            self.transport.write(frame(0x8, code.to_bytes(2, "big")))
        self.transport.close()


async def serve(port: int, redis_url: str, local_first: bool) -> None:
    node = Node(port, redis_url, local_first)
    await node.redis.ping()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Conn(node), "127.0.0.1", port, backlog=4096)
    reader = loop.create_task(node.subscribe_forever())
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"floor node on :{port} (local-first: {local_first})", flush=True)
    await stop.wait()
    server.close()
    reader.cancel()
    await node.redis.aclose()


def write_layout(path: str, n: int) -> None:
    """The shape of prepare.py's layout that load.js --scenario fanout reads (fake users)."""
    users = [{"id": user_of(f"floor.{i}")["id"], "token": f"floor.{i}"} for i in range(n)]
    layout = {
        "users": users,
        "fanout": {"id": "floorroom0000001", "members": list(range(n))},
        "chat": [],
        "mem": [],
    }
    with open(path, "w") as f:
        json.dump(layout, f)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=8101)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/11")
    ap.add_argument("--local-first", action="store_true", help="deliver locally before publishing")
    ap.add_argument("--write-layout", metavar="FILE", help="write a fake layout for load.js and exit")
    ap.add_argument("--n", type=int, default=1000, help="members in the fake layout")
    a = ap.parse_args()
    if a.write_layout:
        write_layout(a.write_layout, a.n)
    else:
        uvloop.run(serve(a.port, a.redis, a.local_first))
