"""Chaos load client (bench/chaos/run starts it): N WebSocket clients over R rooms through nginx.

Phases: ``prepare`` (register every user, create the rooms, join them: REST through nginx),
``connect`` (one socket per user, prints ``READY <epoch>`` once every socket got its hello), then
load until the orchestrator writes ``stop`` on stdin. Meanwhile the orchestrator writes
``window <name> <epoch>`` / ``window_end <name> <epoch>`` lines: the fault windows the client
keeps per-client figures for. At the end it writes one JSON file (``--out``).

Every client is a registered user who joined its room. Per room: the owner (client 0) chats and
changes playback (WebSocket frames, one change in four by REST ``PUT playback``) and adds a movie
now and then; client 1 chats; every ``READ_EVERY``-th client reads ``GET rooms/{id}`` /
``GET rooms/{id}/playback``; every client pings. In the first ``--probe-rooms`` rooms the room
"plays": a driver (the owner's token, REST) changes playback every ``--probe-ms`` ms, so that
the clients of those rooms see a dense stream of room events and a gap in it means something.

Reconnects follow static/js/socket.js: backoff 0.5 s doubling to 15 s, each delay drawn from the
upper half; after ``server_shutdown``, ``reconnect_after_ms`` + a random part of
``reconnect_window_ms`` (no window: up to 1 s); with ``drain_ms`` the new socket is opened at that
moment beside the old one, which is closed once the new one's hello came (a handover); 4401 refreshes the token (twice at most), 4403 /
4404 stop the client; 15 s without any frame: close and reconnect.

Times are wall-clock (``time.time()``) so they line up with the orchestrator's fault log.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict

import httpx
import websockets
from websockets.asyncio.client import connect

PASSWORD = "Corr3ct-horse-chaos"
MAX_DELAY = 15.0
BASE_DELAY = 0.5
SILENCE_S = 15.0
POS_STEP = 7.0  # playback positions are seq * POS_STEP: a position tells which change it was
LATE_S = 3.0  # an event that reaches a client later than this after its sending is listed (``late``)
REPLAY_S = 0.3  # a hello's state is checked this long after it, once the events held meanwhile came
WINDOW_TAIL_S = 5.0  # a fault window's per-client figures also cover this long after its end

now = time.time


class Shared:
    """State shared by all clients of the process (one event loop, so no locks)."""

    def __init__(self, args) -> None:
        self.args = args
        self.stop = asyncio.Event()
        self.http: httpx.AsyncClient | None = None
        self.rest: list[list] = []  # [t_start, kind, status, code, ms]
        self.ws_events: list[list] = []  # [t, client, kind]  (closes, error frames, connect failures)
        self.reconnects: list[list] = []  # [t_close, close_code, seconds to the next hello, client]
        self.pb_answered_t: dict[tuple[str, int], float] = {}  # a REST change's answer: committed, published
        self.handovers: list[list] = []  # [t_start, seconds from the dial to the hello, client]
        self.windows: dict[str, list] = {}  # name -> [start, end or None]
        self.win_stats: dict[str, dict[int, list[float]]] = defaultdict(dict)  # name -> client -> [gap, lag]
        self.flow: dict[str, dict[str, float]] = defaultdict(dict)  # window -> room -> first recv - end
        self.chat_sent: dict[str, float] = {}  # chat text -> send time
        self.pb_sent: dict[tuple[str, int], float] = {}  # (room, seq) -> send time
        self.pb_version_t: dict[tuple[str, int], float] = {}  # (room, version) -> send time
        self.pb_via: dict[tuple[str, int], str] = {}  # (room, seq) -> ws | rest | probe
        self.pb_version_via: dict[tuple[str, int], str] = {}  # (room, version) -> ws | rest | probe
        self.acked_chats: list[int] = []
        self.acked_playback: list[list] = []  # [room, version, via]
        self.acked_movies: list[str] = []
        self.room_acked: dict[str, dict] = {}  # room -> last acked playback {version, position, playing, t}
        self.survival: list[dict] = []  # hellos whose playback went back (version or position)
        self.hellos_checked = 0
        self.late: list[list] = []  # [sent, received, client, room index, how]: events later than LATE_S
        self.shutdown_asks: Counter = Counter()  # "reconnect_after_ms+reconnect_window_ms" -> frames
        self.frames = 0

    def windows_hit(self, start: float, end: float) -> list[str]:
        out = []
        for name, (ws, we) in self.windows.items():
            hi = float("inf") if we is None else we + WINDOW_TAIL_S
            if start <= hi and end >= ws:
                out.append(name)
        return out

    def rest_record(self, t0: float, kind: str, status: int, code: str) -> None:
        self.rest.append([round(t0, 3), kind, status, code, round((now() - t0) * 1000, 1)])

    async def call(self, method: str, path: str, *, token: str | None, body=None, kind: str):
        t0 = now()
        try:
            r = await self.http.request(
                method,
                f"/api/v1/{path}",
                json=body,
                headers={"Authorization": f"Bearer {token}"} if token else None,
            )
        except httpx.HTTPError as exc:
            self.rest_record(t0, kind, 0, f"exception:{type(exc).__name__}")
            return None, t0
        code = ""
        if r.status_code >= 400:
            with contextlib.suppress(Exception):
                code = r.json()["error"]["code"]
            code = code or r.headers.get("content-type", "?").split(";")[0]
        self.rest_record(t0, kind, r.status_code, code)
        return r, t0


def connect_error(exc: Exception, prefix: str) -> str:
    status = getattr(getattr(exc, "response", None), "status_code", "")
    return f"{prefix}:{status}" if status else f"{prefix}:{type(exc).__name__}"


class Client:
    def __init__(self, shared: Shared, idx: int, room_idx: int, pos: int, room: str, account: dict) -> None:
        self.s = shared
        self.idx = idx
        self.room_idx = room_idx
        self.pos = pos  # place in the room: 0 owner, 1 chatter, ...
        self.room = room
        self.user_id = account["id"]
        self.access = account["access"]
        self.refresh = account["refresh"]
        self.conn = None
        self.replacement = None  # the socket that takes over after a handover
        self.handover: asyncio.Task | None = None
        self.attempt = 0
        self.shutdown_delay: float | None = None
        self.closed_at: float | None = None
        self.close_code: int | None = None
        self.first_hello: float | None = None
        self.last_heard = 0.0
        self.last_event: float | None = None
        self.max_chat_id = 0
        self.max_version = -1
        self.conn_version = -1  # the newest playback version on the current socket since its hello
        self.max_gap = 0.0
        self.max_lag = 0.0
        self.errors: Counter = Counter()
        self.hellos = 0
        self.stopped = ""
        self.auth_retries = 0
        self.seq = 0
        self.pending_pb: set[int] = set()
        self.ready = asyncio.Event()
        self.refusal = ""  # a connection_refused frame, waiting for its close code
        self.connect_started = (
            0.0  # the last connect attempt (its handshake to the hello: a node's own delay)
        )

    # --- connection ---------------------------------------------------------------------------

    async def run(self) -> None:
        actor = asyncio.create_task(self.act())
        try:
            while not self.s.stop.is_set() and not self.stopped:
                if self.replacement is not None:  # handed over: its hello was read already
                    conn, self.replacement = self.replacement, None
                else:
                    self.shutdown_delay = None
                    conn = await self.dial()
                    if conn is None:
                        continue
                self.conn = conn
                await self.read(conn)
                if self.s.stop.is_set():
                    break
                if self.replacement is not None:
                    continue  # this one was closed by us: its replacement's hello came
                if self.conn is conn:
                    self.conn = None
                code = conn.close_code or 1006
                self.closed_at = now()
                self.close_code = code
                self.error(f"close:{code}")
                if self.refusal:
                    self.error(self.refusal.replace("{close}", str(code)))
                    self.refusal = ""
                if self.handover is not None and not self.handover.done():
                    await self.handover  # the drain ended before the replacement's hello
                    if self.replacement is not None:
                        continue
                if code == 4401:
                    if self.auth_retries < 2 and await self.refresh_tokens():
                        self.auth_retries += 1
                        continue
                    self.stopped = "4401"
                elif code in (4403, 4404):
                    self.stopped = str(code)
                elif self.shutdown_delay is not None:
                    self.attempt = max(self.attempt, 1)
                    await self.sleep(self.shutdown_delay)
                else:
                    await self.sleep(self.backoff())
        finally:
            for task in (actor, self.handover):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task

    async def open_socket(self):
        a = self.s.args
        return await connect(
            f"{a.ws_base}/ws/rooms/{self.room}/",
            origin=a.origin,
            subprotocols=["synctv.v2", "synctv.v1", f"bearer.{self.access}"],
            # A browser gives a handshake far longer than 10 s (the page sets no limit of its
            # own): giving up early only adds connects to a busy node.
            open_timeout=a.open_timeout,
            close_timeout=3,
            ping_interval=None,
            compression=None,
            max_size=2**20,
        )

    async def dial(self):
        """A new socket, or None after recording why not and waiting the backoff."""
        self.connect_started = now()
        try:
            return await self.open_socket()
        except Exception as exc:  # handshake refused (nginx 502, ...), reset, timeout
            self.error(connect_error(exc, "ws_connect"))
            if self.closed_at is None:
                self.closed_at = now()
            await self.sleep(self.backoff())
            return None

    async def read(self, conn) -> None:
        try:
            async for raw in conn:
                if conn is not self.conn:
                    continue  # moved to its replacement; this one is closing
                self.last_heard = now()
                self.s.frames += 1
                self.handle(json.loads(raw))
        except websockets.ConnectionClosed:
            pass
        except Exception as exc:
            self.error(f"client:{type(exc).__name__}")

    async def hand_over(self, delay: float) -> None:
        """Make before break, as static/js/socket.js: while the old socket drains, open the new
        one at its moment; once its hello came, it takes over and the old one is closed."""
        await self.sleep(delay)
        for attempt in range(6):
            if self.s.stop.is_set() or (self.conn is None and attempt):
                return
            started = now()
            try:
                conn = await self.open_socket()
            except Exception as exc:
                self.error(connect_error(exc, "handover_connect"))
                await self.sleep(BASE_DELAY * 2**attempt * (0.5 + random.random() / 2))
                continue
            try:
                first = json.loads(await asyncio.wait_for(conn.recv(), self.s.args.open_timeout))
            except Exception as exc:
                first = {"type": f"client:{type(exc).__name__}"}
            if first.get("type") != "hello":
                self.error(f"handover_refused:{first.get('code') or first.get('type')}")
                await conn.close()
                await self.sleep(BASE_DELAY * 2**attempt * (0.5 + random.random() / 2))
                continue
            old, self.conn, self.replacement = self.conn, conn, conn
            self.shutdown_delay = None
            self.s.handovers.append([round(started, 3), round(now() - started, 3), self.idx])
            self.s.frames += 1
            self.last_heard = now()
            self.handle(first)
            if old is not None:
                await old.close()
            return

    def backoff(self) -> float:
        ceiling = min(MAX_DELAY, BASE_DELAY * 2**self.attempt)
        self.attempt += 1
        return ceiling / 2 + random.random() * ceiling / 2

    async def sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.s.stop.wait(), seconds)

    async def refresh_tokens(self) -> bool:
        r, _ = await self.s.call(
            "POST", "auth/refresh", token=None, body={"refresh": self.refresh}, kind="refresh"
        )
        if r is None or r.status_code != 200:
            return False
        body = r.json()
        self.access, self.refresh = body["access"], body["refresh"]
        return True

    def error(self, kind: str) -> None:
        self.errors[kind] += 1
        self.s.ws_events.append([round(now(), 3), self.idx, kind])

    async def send(self, message: dict) -> bool:
        conn = self.conn
        if conn is None:
            return False
        try:
            await conn.send(json.dumps(message))
            return True
        except Exception:
            return False

    # --- frames -------------------------------------------------------------------------------

    def handle(self, msg: dict) -> None:
        t = now()
        kind = msg.get("type")
        if kind == "hello":
            self.on_hello(msg, t)
        elif kind == "chat":
            self.on_chat(msg, t)
        elif kind == "playback":
            self.on_playback(msg, t)
        elif kind == "playlist":
            self.event(t, None)
        elif kind == "error":
            code = msg.get("code")
            cause = (msg.get("details") or {}).get("cause")
            if code == "connection_refused":  # recorded with the close code that follows it
                self.refusal = "refused:{close}" + (f":{cause}" if cause else "")
            else:
                self.error(f"frame:{code}" + (f":{cause}" if cause else ""))
        elif kind == "server_shutdown":
            self.s.shutdown_asks[f"{msg.get('reconnect_after_ms')}+{msg.get('reconnect_window_ms')}"] += 1
            window = msg.get("reconnect_window_ms")
            window = float(window) if isinstance(window, (int, float)) and window > 0 else 1000.0
            self.shutdown_delay = (
                float(msg.get("reconnect_after_ms") or 2000) + random.random() * window
            ) / 1000
            if (msg.get("drain_ms") or 0) > 0 and (self.handover is None or self.handover.done()):
                self.handover = asyncio.create_task(self.hand_over(self.shutdown_delay))

    def on_hello(self, msg: dict, t: float) -> None:
        self.hellos += 1
        self.attempt = 0
        self.auth_retries = 0
        if self.closed_at is not None:
            self.s.reconnects.append(
                [round(self.closed_at, 3), self.close_code, round(t - self.closed_at, 3), self.idx,
                 round(t - self.connect_started, 3)]
            )  # fmt: skip
            self.closed_at = None
        pb = msg.get("playback") or {}
        version = int(pb.get("version", 0))
        if self.first_hello is None:
            self.first_hello = t
            self.last_event = t
            self.max_version = version
            self.ready.set()
            return
        # Events held while the hello was made follow it at once (a change committed after the
        # room was read): the state survived if it is there once they came.
        self.conn_version = version
        asyncio.get_running_loop().call_later(REPLAY_S, self.check_survival, pb, t)
        if version > self.max_version:
            # The hello brings every change missed while away: each is "had" now.
            for v in range(self.max_version + 1, version + 1):
                sent = self.s.pb_version_t.get((self.room, v))
                if sent is not None:
                    self.lag(sent, t, f"playback({self.s.pb_version_via.get((self.room, v), '?')}):hello")
                self.delivered(v, t)
            self.max_version = version
            self.event(t, None)

    def check_survival(self, pb: dict, t: float) -> None:
        acked = self.s.room_acked.get(self.room)
        if not acked or acked["t"] > t - 0.5:  # nothing acked, or acked just now (may race the hello)
            return
        self.s.hellos_checked += 1
        version = int(pb.get("version", 0))
        problem = None
        if max(version, self.conn_version) < acked["version"]:
            problem = "version_went_back"
        elif version == acked["version"]:
            expected = acked["position"] + ((t - acked["t"]) * acked["rate"] if acked["playing"] else 0.0)
            elapsed = (t * 1000 - float(pb.get("server_time", t * 1000))) / 1000
            got = float(pb.get("position", 0)) + (
                elapsed * float(pb.get("rate", 1)) if pb.get("playing") else 0.0
            )
            if bool(pb.get("playing")) != acked["playing"] or abs(got - expected) > 1.0:
                problem = "position_or_playing_differs"
                acked = {**acked, "got_position": round(got, 3), "expected_position": round(expected, 3)}
        if problem:
            self.s.survival.append(
                {
                    "t": round(t, 3),
                    "client": self.idx,
                    "room": self.room,
                    "problem": problem,
                    "hello_version": version,
                    "acked": acked,
                }
            )

    def on_chat(self, msg: dict, t: float) -> None:
        chat_id = int(msg.get("id") or 0)
        text = msg.get("text", "")
        user = (msg.get("user") or {}).get("id")
        sent = self.s.chat_sent.get(text)
        if (
            user == self.user_id
            and sent is not None
            and not msg.get("history")
            and text.startswith(f"{self.idx}:")
        ):
            self.s.acked_chats.append(chat_id)
        if chat_id > self.max_chat_id:
            self.max_chat_id = chat_id
            if sent is not None:
                self.lag(sent, t, "chat:history" if msg.get("history") else "chat:live")
            self.event(t, sent)

    def on_playback(self, msg: dict, t: float) -> None:
        version = int(msg.get("version", 0))
        self.conn_version = max(self.conn_version, version)
        position = float(msg.get("position", 0))
        seq = round(position / POS_STEP)
        sent = self.s.pb_sent.get((self.room, seq)) if abs(position - seq * POS_STEP) < 1 else None
        if sent is not None:
            self.s.pb_version_t.setdefault((self.room, version), sent)
            self.s.pb_version_via.setdefault((self.room, version), self.s.pb_via.get((self.room, seq), "?"))
        by = (msg.get("by") or {}).get("id")
        if by == self.user_id and seq in self.pending_pb:
            self.pending_pb.discard(seq)
            self.s.acked_playback.append([self.room, version, "ws"])
            self.acked_state(version, position, bool(msg.get("playing")), float(msg.get("rate", 1)), t)
        if version > self.max_version:
            for v in range(self.max_version + 1, version + 1):
                vs = self.s.pb_version_t.get((self.room, v))
                if vs is not None:
                    how = "live" if v == version else "covered_by_later"
                    self.lag(vs, t, f"playback({self.s.pb_version_via.get((self.room, v), '?')}):{how}")
                self.delivered(v, t)
            self.max_version = version
            self.event(t, sent)

    def acked_state(self, version: int, position: float, playing: bool, rate: float, t: float) -> None:
        current = self.s.room_acked.get(self.room)
        if current is None or version > current["version"]:
            self.s.room_acked[self.room] = {
                "version": version,
                "position": position,
                "playing": playing,
                "rate": rate,
                "t": t,
            }

    def event(self, t: float, sent: float | None) -> None:
        """A new room event reached this client at ``t``: the gap since the one before."""
        prev = self.last_event if self.last_event is not None else t
        gap = t - prev
        self.last_event = t
        if gap > self.max_gap:
            self.max_gap = gap
        for name in self.s.windows_hit(prev, t):
            stats = self.s.win_stats[name].setdefault(self.idx, [0.0, 0.0, 0.0])
            stats[0] = max(stats[0], gap)
        if sent is not None and sent >= (self.first_hello or t):
            for name, (_ws, we) in self.s.windows.items():
                if we is not None and sent >= we and self.room not in self.s.flow[name]:
                    self.s.flow[name][self.room] = round(t - we, 3)

    def lag(self, sent: float, t: float, how: str) -> None:
        if self.first_hello is None or sent < self.first_hello:
            return
        lag = t - sent
        if lag > LATE_S and len(self.s.late) < 50000:
            self.s.late.append([round(sent, 3), round(t, 3), self.idx, self.room_idx, how])
        if lag > self.max_lag:
            self.max_lag = lag
        for name in self.s.windows_hit(sent, sent):
            stats = self.s.win_stats[name].setdefault(self.idx, [0.0, 0.0, 0.0])
            stats[1] = max(stats[1], lag)

    def delivered(self, version: int, t: float) -> None:
        """The part of a REST change's lag after its answer (the change committed and published):
        what the WebSocket path alone added. Events that arrive before the answer add nothing."""
        answered = self.s.pb_answered_t.get((self.room, version))
        if answered is None or answered > t or self.first_hello is None or answered < self.first_hello:
            return
        for name in self.s.windows_hit(answered, answered):
            stats = self.s.win_stats[name].setdefault(self.idx, [0.0, 0.0, 0.0])
            stats[2] = max(stats[2], t - answered)

    # --- what the person does -----------------------------------------------------------------

    async def act(self) -> None:
        a = self.s.args
        probe = self.room_idx < a.probe_rooms
        due = {"ping": now() + random.uniform(1, a.ping_every)}
        if self.pos in (0, 1):
            due["chat"] = now() + random.uniform(1, a.chat_every)
        if self.pos == 0 and not probe:
            due["playback"] = now() + random.uniform(2, a.playback_every)
        if self.pos == 0:
            due["movie"] = now() + random.uniform(5, a.movie_every)
        if self.idx % a.read_every_nth == 2:
            due["read"] = now() + random.uniform(1, a.read_every)
        nread = 0
        while not self.s.stop.is_set():
            what = min(due, key=due.get)
            await self.sleep(max(0.0, due[what] - now()))
            if self.s.stop.is_set():
                return
            if self.conn is not None and now() - self.last_heard > SILENCE_S:
                self.error("silence")
                with contextlib.suppress(Exception):
                    await self.conn.close()
            if what == "ping":
                await self.send({"type": "ping", "t": int(now() * 1000)})
                due["ping"] = now() + a.ping_every
            elif what == "chat":
                if self.conn is not None:
                    self.seq += 1
                    text = f"{self.idx}:{self.seq} {uuid.uuid4().hex[:8]}"
                    self.s.chat_sent[text] = now()
                    await self.send({"type": "chat", "text": text, "ref": f"c{self.seq}"})
                due["chat"] = now() + a.chat_every * random.uniform(0.5, 1.5)
            elif what == "playback":
                await self.change_playback()
                due["playback"] = now() + a.playback_every * random.uniform(0.5, 1.5)
            elif what == "movie":
                self.seq += 1
                r, _ = await self.s.call(
                    "POST",
                    f"rooms/{self.room}/movies",
                    token=self.access,
                    kind="movie_add",
                    body={
                        "name": f"m{self.idx}-{self.seq}",
                        "url": f"https://example.com/v{self.idx}-{self.seq}.mp4",
                    },
                )
                if r is not None and r.status_code == 201:
                    self.s.acked_movies.append(r.json()["id"])
                due["movie"] = now() + a.movie_every * random.uniform(0.5, 1.5)
            elif what == "read":
                nread += 1
                path, kind = (
                    (f"rooms/{self.room}", "room_get")
                    if nread % 2
                    else (f"rooms/{self.room}/playback", "playback_get")
                )
                await self.s.call("GET", path, token=self.access, kind=kind)
                due["read"] = now() + a.read_every * random.uniform(0.5, 1.5)

    async def change_playback(self) -> None:
        self.seq += 1
        seq = self.seq
        body = {"playing": bool(self.seq % 3), "position": seq * POS_STEP}
        self.s.pb_sent[(self.room, seq)] = now()
        self.s.pb_via[(self.room, seq)] = "rest" if self.seq % 4 == 0 else "ws"
        if self.seq % 4 == 0:
            await rest_playback(self.s, self.room, self.access, body, seq)
        elif self.conn is not None:
            self.pending_pb.add(seq)
            await self.send({"type": "playback", **body, "ref": f"p{seq}"})


async def rest_playback(s: Shared, room: str, token: str, body: dict, seq: int) -> None:
    r, t0 = await s.call("PUT", f"rooms/{room}/playback", token=token, body=body, kind="playback_put")
    if r is not None and r.status_code == 200:
        state = r.json()
        version = int(state["version"])
        s.pb_version_t.setdefault((room, version), t0)
        s.pb_answered_t.setdefault((room, version), now())
        s.pb_version_via.setdefault((room, version), s.pb_via.get((room, seq), "rest"))
        s.acked_playback.append([room, version, "rest"])
        current = s.room_acked.get(room)
        if current is None or version > current["version"]:
            s.room_acked[room] = {
                "version": version,
                "position": body["position"],
                "playing": body["playing"],
                "rate": 1.0,
                "t": now(),
            }


async def probe_driver(s: Shared, room: str, token: str) -> None:
    """The room plays: a playback change every --probe-ms (REST, through the web nodes), one at a
    time; after an answer slower than the beat the next goes at once (no pause of the driver's
    own in the clients' gaps). One in flight: an open loop would queue changes at the web nodes
    faster than a busy host answers them."""
    seq = 100000  # apart from the owner's own changes (there are none in a probe room)
    beat = s.args.probe_ms / 1000
    while not s.stop.is_set():
        seq += 1
        body = {"playing": True, "position": seq * POS_STEP}
        started = s.pb_sent[(room, seq)] = now()
        s.pb_via[(room, seq)] = "probe"
        await rest_playback(s, room, token, body, seq)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(s.stop.wait(), max(0.0, started + beat - now()))


# --- phases ---------------------------------------------------------------------------------------


async def prepare(s: Shared, sockets: int, rooms: int) -> dict:
    tag = uuid.uuid4().hex[:6]
    sem = asyncio.Semaphore(s.args.prepare_concurrency)

    async def register(i: int) -> dict:
        async with sem:
            for _ in range(5):
                r, _ = await s.call(
                    "POST",
                    "auth/register",
                    token=None,
                    kind="register",
                    body={"username": f"ch{tag}u{i}", "password": PASSWORD},
                )
                if r is not None and r.status_code == 201:
                    b = r.json()
                    return {"id": b["user"]["id"], "access": b["access"], "refresh": b["refresh"]}
                await asyncio.sleep(1)
            raise SystemExit(
                f"register {i} failed: {r.status_code if r else 'no answer'} {r.text[:300] if r else ''}"
            )

    t0 = now()
    accounts = await asyncio.gather(*(register(i) for i in range(sockets)))
    log(f"registered {sockets} users in {now() - t0:.1f}s")
    room_ids: list[str] = []
    for r_i in range(rooms):
        owner = accounts[r_i * (sockets // rooms)]
        r, _ = await s.call(
            "POST", "rooms", token=owner["access"], body={"name": f"chaos {tag} {r_i}"}, kind="room_create"
        )
        if r is None or r.status_code != 201:
            raise SystemExit(
                f"room create failed: {r.status_code if r else 'no answer'} {r.text[:300] if r else ''}"
            )
        room_ids.append(r.json()["id"])

    async def join(i: int) -> None:
        async with sem:
            per = sockets // rooms
            r_i = min(i // per, rooms - 1)
            if i % per == 0 and i // per < rooms:
                return  # the owner
            r, _ = await s.call(
                "POST", f"rooms/{room_ids[r_i]}/join", token=accounts[i]["access"], body={}, kind="join"
            )
            if r is None or r.status_code not in (200, 201):
                raise SystemExit(
                    f"join failed: {r.status_code if r else 'no answer'} {r.text[:300] if r else ''}"
                )

    await asyncio.gather(*(join(i) for i in range(sockets)))
    log(f"rooms created and joined in {now() - t0:.1f}s")
    return {"accounts": accounts, "rooms": room_ids}


def log(text: str) -> None:
    print(f"[load {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def read_commands(loop: asyncio.AbstractEventLoop, s: Shared) -> None:
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "stop":
            loop.call_soon_threadsafe(s.stop.set)
            return
        if parts[0] == "window":
            loop.call_soon_threadsafe(s.windows.__setitem__, parts[1], [float(parts[2]), None])
        elif parts[0] == "window_end":
            loop.call_soon_threadsafe(lambda n=parts[1], e=float(parts[2]): s.windows[n].__setitem__(1, e))
    loop.call_soon_threadsafe(s.stop.set)  # stdin closed: the orchestrator is gone


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True, help="http://127.0.0.1:<nginx port>")
    p.add_argument("--origin", required=True)
    p.add_argument("--sockets", type=int, default=2000)
    p.add_argument("--rooms", type=int, default=200)
    p.add_argument("--chat-every", type=float, default=5.0)
    p.add_argument("--playback-every", type=float, default=20.0)
    p.add_argument("--movie-every", type=float, default=90.0)
    p.add_argument("--read-every", type=float, default=20.0)
    p.add_argument("--read-every-nth", type=int, default=5)
    p.add_argument("--ping-every", type=float, default=10.0)
    p.add_argument("--probe-rooms", type=int, default=5)
    p.add_argument("--open-timeout", type=float, default=60.0)
    p.add_argument("--probe-ms", type=int, default=250)
    p.add_argument("--prepare-concurrency", type=int, default=6)
    p.add_argument("--connect-concurrency", type=int, default=40)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    args.ws_base = args.base.replace("http://", "ws://")
    s = Shared(args)
    s.http = httpx.AsyncClient(base_url=args.base, timeout=20, limits=httpx.Limits(max_connections=64))
    layout = await prepare(s, args.sockets, args.rooms)
    s.rest.clear()  # the figures are about the load phase
    per = args.sockets // args.rooms
    clients = []
    for i, account in enumerate(layout["accounts"]):
        r_i = min(i // per, args.rooms - 1)
        clients.append(Client(s, i, r_i, i - r_i * per, layout["rooms"][r_i], account))
    loop = asyncio.get_running_loop()
    threading.Thread(target=read_commands, args=(loop, s), daemon=True).start()

    t0 = now()
    tasks = []
    sem = asyncio.Semaphore(args.connect_concurrency)

    async def start(c: Client) -> None:
        async with sem:
            tasks.append(asyncio.create_task(c.run()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(c.ready.wait(), 30)

    await asyncio.gather(*(start(c) for c in clients))
    connected = sum(1 for c in clients if c.first_hello)
    log(f"{connected}/{len(clients)} sockets got their hello in {now() - t0:.1f}s")
    probes = [
        asyncio.create_task(probe_driver(s, layout["rooms"][r], layout["accounts"][r * per]["access"]))
        for r in range(min(args.probe_rooms, args.rooms))
    ]
    print(f"READY {now():.3f} {connected}", flush=True)
    t_ready = now()
    await s.stop.wait()
    t_stop = now()
    for c in clients:  # a gap still open at the end counts too
        if c.last_event is not None:
            c.event(t_stop, None)
    await asyncio.gather(*probes, return_exceptions=True)
    closing = [c.conn.close() for c in clients if c.conn is not None]
    await asyncio.gather(*(asyncio.wait_for(x, 5) for x in closing), return_exceptions=True)
    await asyncio.gather(*tasks, return_exceptions=True)
    await s.http.aclose()
    result = {
        "t_ready": t_ready,
        "t_stop": t_stop,
        "connect_s": round(t_ready - t0, 1),
        "sockets": args.sockets,
        "rooms": args.rooms,
        "probe_room_ids": layout["rooms"][: args.probe_rooms],
        "connected_at_ready": connected,
        "config": {k: v for k, v in vars(args).items() if k not in ("out",)},
        "frames_received": s.frames,
        "server_shutdown_asked": dict(s.shutdown_asks),
        "client_cpu_s": round(sum(os.times()[:2]), 1),
        "rest": s.rest,
        "ws_events": s.ws_events,
        "reconnects": s.reconnects,
        "handovers": s.handovers,
        "windows": s.windows,
        "win_stats": {
            name: {str(k): [round(x, 3) for x in v] for k, v in st.items()}
            for name, st in s.win_stats.items()
        },
        "flow": s.flow,
        "acked": {"chats": s.acked_chats, "playback": s.acked_playback, "movies": s.acked_movies},
        "late": s.late,
        "survival": {"hellos_checked": s.hellos_checked, "problems": s.survival},
        "clients": [
            {
                "i": c.idx,
                "room": c.room_idx,
                "probe": c.room_idx < args.probe_rooms,
                "hellos": c.hellos,
                "max_gap": round(c.max_gap, 3),
                "max_lag": round(c.max_lag, 3),
                "errors": dict(c.errors),
                "stopped": c.stopped,
                "connected": c.first_hello is not None,
            }
            for c in clients
        ],
    }
    with open(args.out, "w") as f:
        json.dump(result, f)
    log(f"results in {args.out}")


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
