"""Shared helpers for the real-time suites (tests/test_ws_*.py).

Everything here is real: a scratch PostgreSQL database migrated by ``manage.py``, a private
``redis-server`` per module (so a test may kill and restart it), ``ws`` processes started with the
Procfile's command (uvicorn on ``synctv.asgi:application``), the REST API over HTTP and a real
WebSocket client (the ``websockets`` package). Every wait is bounded.

Tests are plain functions that run one coroutine with :func:`run`; inside it, :class:`WS` reads
its socket in a background task, timestamps every frame (``msg["_t"]``, ``time.monotonic()``)
and keeps all of them (``ws.frames``) so a test can also assert what did NOT arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect

from tests.procs import PrivateRedis, free_port, procfile_command, production_env, running, wait_http
from tests.procs import run as run_command

ORIGIN = "http://localhost:8000"
PASSWORD = "Corr3ct-horse"
SUBPROTOCOL = "synctv.v1"


# --- services ----------------------------------------------------------------------------------------


def admin_dsn(dbname: str = "postgres") -> str:
    from django.conf import settings

    db = settings.DATABASES["default"]
    user = db.get("USER") or "postgres"
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgresql://{user}@{host}:{port}/{dbname}"


@contextlib.contextmanager
def scratch_database():
    """A real, empty PostgreSQL database for the processes of one test module."""
    name = f"synctv_ws_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_dsn(name)
    finally:
        with psycopg.connect(admin_dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Node:
    name: str
    port: int
    proc: subprocess.Popen
    log: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, room_id: str, query: str = "") -> str:
        return f"ws://127.0.0.1:{self.port}/ws/rooms/{room_id}/{query}"

    def signal(self, sig: int) -> None:
        os.killpg(self.proc.pid, sig)

    def wait_exit(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


class Cluster:
    """Shared production settings (one database, one Redis, one key pair) for any number of
    ``ws`` nodes, each on its own port."""

    def __init__(self, tmp: Path, *, database_url: str, redis: PrivateRedis) -> None:
        self.tmp = tmp
        self.redis = redis
        self.database_url = database_url
        self.env = production_env(
            database_url=database_url,
            redis_url=redis.url(0),
            broker_url=redis.url(1),
            port=8000,
            var_dir=str(tmp / "var"),
        )
        # The site's address, as production sets it: its origin is the one the nodes accept.
        self.env["PUBLIC_URL"] = ORIGIN
        # A node stopped while another runs drains its sockets (docs/realtime.md, "Shutdown"); the
        # test clients do not move, so tests that do not measure the drain keep it short (the
        # teardown stops nodes one by one). The drain tests set their own.
        self.env["WS_DRAIN_SECONDS"] = "3"
        self.nodes: list[Node] = []
        self._stack = ExitStack()

    def release(self) -> None:
        """The Procfile's release step minus collectstatic (the ws process serves no static files)."""
        result = run_command(
            "python manage.py migrate --noinput && python manage.py generate_jwt_keys", env=self.env
        )
        assert result.returncode == 0, result.stdout + result.stderr

    def manage(self, args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """A management command against the cluster's database and Redis, as an operator would run it."""
        result = run_command(f"python manage.py {args}", env=self.env, timeout=timeout)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def start(
        self,
        *names: str,
        timeout: float = 60,
        command: str | None = None,
        port: int | None = None,
        **env_extra: str,
    ) -> list[Node]:
        """Start ``ws`` nodes with the Procfile's command (or ``command``) and the cluster's
        environment (plus ``env_extra``); ``port`` for one node started again where it was."""
        assert port is None or len(names) == 1
        started = []
        for name in names:
            node_port = port or free_port()
            env = {**self.env, **env_extra, "PORT": str(node_port), "SYNCTV_NODE_ID": f"{name}-{node_port}"}
            log = self.tmp / f"{name}-{node_port}.log"
            proc = self._stack.enter_context(running(command or procfile_command("ws"), env=env, log=log))
            started.append(Node(name, node_port, proc, log))
        for node in started:
            r = wait_http(f"{node.http}/healthz", proc=node.proc, log=node.log, timeout=timeout)
            assert r.status_code == 200, r.text
        self.nodes.extend(started)
        return started

    def close(self) -> None:
        self._stack.close()


@contextlib.contextmanager
def cluster_with(tmp: Path, *node_names: str):
    """Private Redis + scratch database + migrated schema + the named nodes, torn down after."""
    redis = PrivateRedis()
    redis.start()
    try:
        with scratch_database() as dsn:
            cluster = Cluster(tmp, database_url=dsn, redis=redis)
            try:
                cluster.release()
                cluster.start(*node_names)
                yield cluster
            finally:
                cluster.close()
    finally:
        redis.kill()


def cluster_fixture(folder: str, *node_names: str) -> Any:
    """A test module's ``cluster`` fixture (module scope): ``cluster_with`` the named nodes in a
    temporary folder called ``folder``. Use as ``cluster = cluster_fixture("ws-chat", "n1", "n2")``;
    the ``nodes`` fixture (tests/conftest.py) gives its first two nodes."""

    @pytest.fixture(scope="module")
    def cluster(tmp_path_factory):
        with cluster_with(tmp_path_factory.mktemp(folder), *node_names) as c:
            yield c

    return cluster


def db_scalar(dsn: str, sql: str, *params) -> Any:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params).fetchone()[0]


# --- REST ---------------------------------------------------------------------------------------------


@dataclass
class Account:
    id: str
    username: str
    access: str
    refresh: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.access}"}


class Api:
    """The REST API of one node. Sync calls for set-up; ``a*`` variants run in a thread so an
    event loop that is timing WebSocket frames is never blocked."""

    def __init__(self, node: Node | str) -> None:
        self.base = node.http if isinstance(node, Node) else node
        self.client = httpx.Client(base_url=self.base, timeout=15)

    def call(self, method: str, path: str, *, who: Account | None = None, body=None, expect=None):
        r = self.client.request(method, f"/api/v1/{path}", json=body, headers=who.auth if who else None)
        if expect is not None:
            codes = expect if isinstance(expect, tuple) else (expect,)
            assert r.status_code in codes, f"{method} {path} -> {r.status_code}: {r.text[:500]}"
        return r

    async def acall(self, *args, **kwargs):
        return await asyncio.to_thread(self.call, *args, **kwargs)

    def register(self, username: str) -> Account:
        r = self.call("POST", "auth/register", body={"username": username, "password": PASSWORD}, expect=201)
        body = r.json()
        return Account(body["user"]["id"], username, body["access"], body["refresh"])

    def create_room(self, owner: Account, name: str, **settings) -> dict:
        body: dict = {"name": name}
        if settings:
            body["settings"] = settings
        return self.call("POST", "rooms", who=owner, body=body, expect=201).json()

    def join(self, who: Account, room: dict) -> dict:
        return self.call("POST", f"rooms/{room['id']}/join", who=who, body={}, expect=(200, 201)).json()

    def room_with_members(self, prefix: str, members: int, **settings) -> tuple[Account, list[Account], dict]:
        """An owner ``{prefix}owner``, a room, and ``members`` registered users who joined it."""
        owner = self.register(f"{prefix}owner")
        joined = [self.register(f"{prefix}member{i}") for i in range(members)]
        room = self.create_room(owner, f"{prefix} room", **settings)
        for who in joined:
            self.join(who, room)
        return owner, joined, room

    def guest(self, room: dict, name: str) -> Account:
        body = self.call("POST", f"rooms/{room['id']}/guest", body={"name": name}, expect=200).json()
        user = body["member"]["user"]
        return Account(user["id"], user["username"], body["access"])

    def playback(self, who: Account, room: dict) -> dict:
        return self.call("GET", f"rooms/{room['id']}/playback", who=who, expect=200).json()

    def close(self) -> None:
        self.client.close()


# --- WebSocket ----------------------------------------------------------------------------------------


class Closed(AssertionError):
    pass


class WS:
    """One client socket. ``frames`` holds every message received, each with ``_t`` (monotonic)."""

    def __init__(self, conn: ClientConnection, label: str) -> None:
        self.conn = conn
        self.label = label
        self.frames: list[dict] = []
        self.queue: asyncio.Queue = asyncio.Queue()
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed_at: float | None = None
        self.hello: dict | None = None
        self._reader = asyncio.create_task(self._read(), name=f"ws-reader-{label}")

    async def _read(self) -> None:
        try:
            async for raw in self.conn:
                now = time.monotonic()
                if isinstance(raw, bytes):
                    message = {"type": "__binary__", "data": raw}
                else:
                    message = json.loads(raw)
                message["_t"] = now
                self.frames.append(message)
                self.queue.put_nowait(message)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed_at = time.monotonic()
            self.close_code = self.conn.close_code
            self.close_reason = self.conn.close_reason or ""
            self.queue.put_nowait(None)

    def types(self) -> list[str]:
        return [f["type"] for f in self.frames]

    async def send(self, message: dict | str | bytes) -> float:
        await self.conn.send(json.dumps(message) if isinstance(message, dict) else message)
        return time.monotonic()

    async def next(self, timeout: float = 5.0) -> dict:
        """The next frame, whatever it is."""
        try:
            message = await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            raise AssertionError(f"[{self.label}] no frame within {timeout}s") from None
        if message is None:
            self.queue.put_nowait(None)
            raise Closed(f"[{self.label}] closed ({self.close_code}) while waiting for a frame")
        return message

    async def expect(self, kind: str, timeout: float = 5.0, where=None) -> dict:
        """Skip frames until one of type ``kind`` (matching ``where``) arrives."""
        deadline = time.monotonic() + timeout
        skipped = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"[{self.label}] no {kind!r} within {timeout}s; got {skipped[-10:]}")
            try:
                message = await self.next(left)
            except Closed:
                raise Closed(
                    f"[{self.label}] closed ({self.close_code}) while waiting for {kind!r}; got {skipped[-10:]}"
                ) from None
            except AssertionError:
                continue
            if message["type"] == kind and (where is None or where(message)):
                return message
            skipped.append(_brief(message))

    async def saw(self, kind: str, timeout: float = 5.0, where=None) -> dict:
        """Like ``expect`` but also looks at frames already consumed by earlier waits."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self.frames:
                if message["type"] == kind and (where is None or where(message)):
                    return message
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"[{self.label}] never saw {kind!r} in {timeout}s; got {self.types()[-10:]}"
                )
            await asyncio.sleep(0.02)

    async def wait_closed(self, timeout: float = 5.0) -> int | None:
        try:
            await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        except TimeoutError:
            raise AssertionError(
                f"[{self.label}] still open after {timeout}s; got {self.types()[-10:]}"
            ) from None
        return self.close_code

    async def ping(self, timeout: float = 5.0) -> dict:
        t = uuid.uuid4().int % 10**9
        await self.send({"type": "ping", "t": t})
        return await self.expect("pong", timeout, where=lambda m: m.get("t") == t)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.conn.close(), 3)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._reader, 3)


def _brief(message: dict) -> str:
    kind = message.get("type")
    if kind == "error":
        return f"error:{message.get('code')}"
    return str(kind)


async def dial(
    url: str,
    *,
    token: str | None = None,
    origin: str | None = ORIGIN,
    label: str = "ws",
    via_query: bool = False,
    subprotocols: list[str] | None = None,
    compression: str | None = "deflate",
    **connect_options: Any,
) -> WS:
    """Open a socket (no waiting for hello): bearer subprotocol, or ``?token=`` with ``via_query``.
    Like a browser, the client offers per-message deflate unless ``compression=None``. Other
    options go to ``websockets.connect`` (``additional_headers``, ``local_addr``...)."""
    if subprotocols is None:
        subprotocols = [SUBPROTOCOL] + ([f"bearer.{token}"] if token and not via_query else [])
    if via_query and token:
        url = f"{url}?token={token}"
    conn = await connect(
        url,
        origin=origin,
        subprotocols=subprotocols or None,
        open_timeout=10,
        close_timeout=3,
        max_size=None,
        ping_interval=None,
        compression=compression,
        **connect_options,
    )
    return WS(conn, label)


async def join(node: Node, room: dict | str, who: Account, *, label: str | None = None, **kwargs) -> WS:
    """Open a socket and wait for ``hello`` (plus the chat history that follows it)."""
    room_id = room if isinstance(room, str) else room["id"]
    ws = await dial(
        node.ws_url(room_id), token=who.access, label=label or f"{who.username}@{node.name}", **kwargs
    )
    first = await ws.next(10)
    assert first["type"] == "hello", f"[{ws.label}] expected hello, got {first}"
    ws.hello = first
    return ws


async def refused(node: Node, room_id: str, token: str | None, **kwargs) -> tuple[dict, int | None]:
    """Connect, expect the refusal: the ``error`` frame and the close code."""
    ws = await dial(node.ws_url(room_id), token=token, label="refused", **kwargs)
    frame = await ws.next(10)
    code = await ws.wait_closed(5)
    return frame, code


def run(coro, timeout: float = 60):
    """Run one test coroutine with an upper bound on its whole duration."""

    async def bounded():
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


async def close_all(*sockets: WS) -> None:
    await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)


def report(name: str, value: str) -> None:
    """Measured numbers, shown with ``-s`` (or ``-rA``)."""
    print(f"[ws-timing] {name}: {value}")
