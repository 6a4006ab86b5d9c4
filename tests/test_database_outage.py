"""PostgreSQL cut off under a running ``web`` and ``ws`` node, then back (docs/security.md, "When
PostgreSQL is down"): requests answer 503 ``service_degraded`` with ``Retry-After`` (quickly
once the breaker is open, never a 500 or a hang), a socket stays open and answers a write with an
``error`` frame, a new socket still connects from the copies in Redis (its hello marked stale) or,
without them, is told to come back (1013), and everything resumes by itself within 5 s of the
database's return, with every acknowledged write kept.

The nodes reach PostgreSQL through a TCP proxy of the test's own (tests/tcpproxy.py): cutting it
is the database stopping (connections dropped, new ones refused), for these nodes only."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
import pytest

from tests.procs import procfile_command
from tests.tcpproxy import TcpProxy
from tests.wsclient import (
    Account,
    Api,
    Cluster,
    Node,
    PrivateRedis,
    close_all,
    db_scalar,
    dial,
    join,
    report,
    run,
    scratch_database,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

BREAKER_RESET_SECONDS = 2.0  # the production default (DB_BREAKER_RESET_SECONDS)


@dataclass
class Outage:
    proxy: TcpProxy
    web: Node
    ws: Node
    api: Api
    owner: Account
    mia: Account
    room: dict
    dsn: str  # the database, not through the proxy
    redis_url: str

    def redis_client(self):
        import redis

        return redis.Redis.from_url(self.redis_url, decode_responses=True)


@pytest.fixture(scope="module")
def outage(tmp_path_factory):
    """A ``web`` node (gunicorn, the Procfile's command) and a ``ws`` node whose database is
    behind a proxy, with a room of two members."""
    tmp = tmp_path_factory.mktemp("db-outage")
    redis = PrivateRedis()
    redis.start()
    proxy = None
    try:
        with scratch_database() as dsn:
            host_port, name = dsn.rsplit("/", 1)
            proxy = TcpProxy(int(host_port.rsplit(":", 1)[1])).start()
            cluster = Cluster(
                tmp, database_url=f"{host_port.rsplit(':', 1)[0]}:{proxy.port}/{name}", redis=redis
            )
            try:
                cluster.release()
                (web,) = cluster.start("web", command=procfile_command("web"), WEB_CONCURRENCY="1")
                (ws,) = cluster.start("ws")
                api = Api(web)
                owner, (mia,), room = api.room_with_members("dbo", 1)
                yield Outage(proxy, web, ws, api, owner, mia, room, dsn, redis.url(0))
            finally:
                cluster.close()
    finally:
        if proxy is not None:
            proxy.stop()
        redis.kill()


def timed(call) -> tuple[float, httpx.Response]:
    t0 = time.perf_counter()
    response = call()
    return (time.perf_counter() - t0) * 1000, response


def assert_degraded(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "service_degraded"
    assert int(response.headers["Retry-After"]) >= 1


def test_a_database_outage_degrades_then_recovers_by_itself(outage):
    proxy, web, ws, api, owner, mia, room = (
        outage.proxy,
        outage.web,
        outage.ws,
        outage.api,
        outage.owner,
        outage.mia,
        outage.room,
    )
    room_path = f"rooms/{room['id']}"
    movies_path = f"{room_path}/movies"  # a read no copy answers: 503 while the database is down
    api.call("GET", room_path, who=owner, expect=200)

    stranger = api.register("dbostranger")  # a member who has never opened a socket
    api.join(stranger, room)

    async def scenario():
        sock = await join(ws, room, mia)
        try:
            await sock.send({"type": "chat", "text": "before the cut"})
            await sock.expect("chat", 5)
            first = await join(ws, room, owner, label="owner-before")  # the room read with the chat
            await close_all(first)
            body = {"playing": True, "position": 12.5}  # a change after that reading
            playback = (
                await api.acall("PUT", f"{room_path}/playback", who=owner, body=body, expect=200)
            ).json()
            await sock.expect("playback", 5, where=lambda m: m["version"] == playback["version"])
            proxy.cut()
            # REST: the first request finds the database gone (tried 3 times, 100 + 200 ms apart),
            # opens the breaker and answers 503; from then on 503 at once.
            first_ms, first = await asyncio.to_thread(timed, lambda: api.call("GET", movies_path, who=owner))
            assert_degraded(first)
            answers = [
                await asyncio.to_thread(timed, lambda: api.call("GET", movies_path, who=owner))
                for _ in range(40)
            ]
            for _, response in answers:
                assert_degraded(response)
            times = sorted(ms for ms, _ in answers)
            p99 = times[int(0.99 * (len(times) - 1))]
            report(
                "db outage: first request",
                f"{first_ms:.0f} ms; then p50 {times[len(times) // 2]:.1f} / p99 {p99:.1f} ms",
            )
            assert p99 <= 50, times
            assert_degraded(api.call("POST", "rooms", who=owner, body={"name": "made while down"}))
            # The room and its playback state answer from their copies in Redis, marked stale.
            copied = api.call("GET", room_path, who=owner, expect=200)
            assert copied.headers["SyncTV-Stale"] == "true" and copied.json()["id"] == room["id"]
            state = api.call("GET", f"{room_path}/playback", who=mia, expect=200)
            assert state.headers["SyncTV-Stale"] == "true"
            assert state.json()["version"] == playback["version"], state.json()
            ready = httpx.get(f"{web.http}/readyz", timeout=5)
            assert ready.status_code == 503 and ready.json()["breakers"]["database"] == "open", ready.text

            # WebSocket: a write is answered with an error frame; the socket stays open.
            await sock.send({"type": "chat", "text": "while down", "ref": "c1"})
            error = await sock.expect("error", 15)
            assert (error["code"], error.get("ref")) == ("service_degraded", "c1"), error
            assert (await sock.ping())["type"] == "pong"
            # A new socket still gets in, from the copies its last reads left in Redis: a hello
            # marked stale, with the room's last playback state and chat.
            late = await join(ws, room, owner, label="late")
            assert late.hello.get("stale") is True, late.hello
            assert late.hello["playback"]["version"] == playback["version"]
            assert (await late.expect("chat", 5))["text"] == "before the cut"
            await close_all(late)
            # Without copies (a member whose reads left none: here removed), the socket is told
            # to come back later (1013), not that its token is bad.
            redis = outage.redis_client()
            kept = [
                key for pattern in ("auth", "member") for key in redis.keys(f"copy:{pattern}:*{stranger.id}*")
            ]
            assert any(key.startswith("copy:auth:") for key in kept), kept  # its REST calls left one
            redis.delete(*kept)
            refused = await dial(ws.ws_url(room["id"]), token=stranger.access, label="refused")
            frame = await refused.next(15)
            assert (frame["type"], await refused.wait_closed(5)) == ("error", 1013), frame
            assert frame["details"] == {"cause": "service_degraded"}, frame

            await asyncio.sleep(1.0)  # the outage goes on a little
            proxy.restore()
            back = time.monotonic()
            while True:
                response = await asyncio.to_thread(api.call, "GET", movies_path, who=owner)
                if response.status_code == 200:
                    break
                assert_degraded(response)
                assert time.monotonic() - back < 5, "REST did not recover within 5 s"
                await asyncio.sleep(0.1)
            rest_recovered = time.monotonic() - back
            while True:
                await sock.send({"type": "chat", "text": "back again"})
                got = await sock.next(10)
                while got["type"] not in ("chat", "error"):  # presence news meanwhile
                    got = await sock.next(10)
                if got["type"] == "chat":
                    break
                assert got["type"] == "error" and got["code"] == "service_degraded", got
                assert time.monotonic() - back < 5, "the socket's writes did not recover within 5 s"
                await asyncio.sleep(0.2)
            report(
                "db outage: recovered after return",
                f"REST {rest_recovered:.2f} s, socket {time.monotonic() - back:.2f} s",
            )
            assert "SyncTV-Stale" not in api.call("GET", room_path, who=owner, expect=200).headers
            again = await join(ws, room, owner)  # a new socket is welcome again, not stale
            assert "stale" not in again.hello, again.hello
            await close_all(again)
        finally:
            proxy.restore()
            await close_all(sock)

    run(scenario(), timeout=90)
    # The refused writes left nothing; the acknowledged one is kept.
    texts = db_scalar(
        outage.dsn, "SELECT array_agg(text ORDER BY id) FROM rooms_chatmessage WHERE room_id = %s", room["id"]
    )
    assert texts == ["before the cut", "back again"]
    assert db_scalar(outage.dsn, "SELECT count(*) FROM rooms_room WHERE name = %s", "made while down") == 0
