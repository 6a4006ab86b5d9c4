"""The ``ws`` process's lifecycle (apps/rooms/lifecycle.py): the garbage collector tuned at
start-up, and the drain when it stops."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time

import pytest

from apps.core import health
from apps.rooms import lifecycle
from apps.rooms.hub import hub
from apps.streaming import cluster


@pytest.fixture
def collector_restored():
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_startup_sets_the_configured_thresholds_and_freezes_what_is_loaded(settings, collector_restored):
    settings.WS_GC_THRESHOLD = (12345, 7, 9)
    loaded = [object()]  # a container the collector tracks, there before start-up
    assert any(o is loaded for o in gc.get_objects())
    lifecycle.tune_garbage_collector()
    assert gc.get_threshold() == (12345, 7, 9)
    assert not any(o is loaded for o in gc.get_objects())  # frozen: in no generation any more


def test_an_empty_setting_keeps_pythons_thresholds(settings, collector_restored):
    settings.WS_GC_THRESHOLD = ()
    gc.set_threshold(700, 10, 10)
    lifecycle.tune_garbage_collector()
    assert gc.get_threshold() == (700, 10, 10)


# --- stopping: the drain (docs/realtime.md, "Shutdown") -------------------------------------------


@pytest.fixture
def local_registry(settings):
    """The cluster registry in process memory (the embedded default), empty before and after;
    the hub's and /readyz's stopping flags put back."""
    settings.REDIS_URL = ""
    cluster._local.clear()
    yield
    cluster._local.clear()
    hub.shutting_down = False
    health._stopping.clear()


def drain() -> float:
    """Run the SIGTERM drain with a stand-in for uvicorn's handler: the seconds it took."""
    exited: list[float] = []

    async def go() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await lifecycle.drain_then_exit(lambda: exited.append(loop.time()), asyncio.Event())
        return exited[0] - started

    return asyncio.run(go())


def test_a_node_alone_does_not_drain_and_a_node_with_company_does(local_registry, settings, caplog):
    settings.WS_DRAIN_SECONDS = 30
    caplog.set_level(logging.INFO, logger="apps.rooms.lifecycle")
    assert health.CHECKS["accepting"]() is None
    took = drain()
    assert took < 1 and hub.shutting_down
    assert "draining for 0 ms" in caplog.text
    with pytest.raises(RuntimeError, match="stopping"):  # /readyz fails from the signal on
        health.CHECKS["accepting"]()
    caplog.clear()
    cluster.register("other-node", "ws", started=time.time())
    took = drain()
    # No socket is left to wait for: the drain ends at once.
    assert took < 1 and "draining for 30000 ms" in caplog.text and "0 of 0 socket(s)" in caplog.text


def test_only_a_live_ws_node_counts_as_somewhere_to_go(local_registry):
    cluster.register("a-web-node", "web", started=time.time())
    assert lifecycle.leave_cluster() is False
    cluster.register("a-ws-node", "ws", started=time.time(), ttl=1)
    assert lifecycle.leave_cluster() is True
    time.sleep(1.1)
    assert lifecycle.leave_cluster() is False  # its entry expired


def test_the_drain_waits_for_the_last_socket_its_deadline_or_a_second_sigterm(local_registry):
    channel = "room:drain-test"

    async def wait(seconds: float, *, leave_after: float | None = None, stop_after: float | None = None):
        stop_now = asyncio.Event()
        loop = asyncio.get_running_loop()
        if leave_after is not None:
            loop.call_later(leave_after, hub.channels[channel].clear)
        if stop_after is not None:
            loop.call_later(stop_after, stop_now.set)
        started = loop.time()
        left = await lifecycle.sockets_left_after(seconds, stop_now)
        return left, loop.time() - started

    try:
        hub.channels[channel].add(object())  # one socket, as the hub knows it
        left, took = asyncio.run(wait(5, leave_after=0.3))
        assert left == 0 and 0.25 < took < 1.5
        hub.channels[channel].add(object())
        left, took = asyncio.run(wait(0.4))
        assert left == 1 and 0.35 < took < 1.5
        left, took = asyncio.run(wait(5, stop_after=0.2))
        assert left == 1 and took < 1.5
    finally:
        hub.channels.pop(channel, None)


@pytest.mark.parametrize("extension", [True, False])
def test_a_handshake_on_a_stopping_node_is_refused_before_the_upgrade(local_registry, extension):
    hub.shutting_down = True
    scope = {"type": "websocket", "path": "/ws/rooms/x/", "extensions": {}}
    if extension:
        scope["extensions"]["websocket.http.response"] = {}
    sent: list[dict] = []

    async def receive():
        return {"type": "websocket.connect"}

    async def send(message):
        sent.append(message)

    async def never_reached(scope, receive, send):
        raise AssertionError("a stopping node passed a handshake on")

    asyncio.run(lifecycle.Lifespan(never_reached)(scope, receive, send))
    if not extension:
        assert sent == [{"type": "websocket.close", "code": 1012}]  # the server answers 403
        return
    start, body = sent
    assert start["status"] == 503 and (b"retry-after", b"1") in start["headers"]
    assert json.loads(body["body"])["error"] == {
        "code": "service_degraded",
        "message": "This server is restarting; connect to another one.",
        "details": {"cause": "server_restarting"},
    }
