"""ASGI lifespan for the ``ws`` process: start the room hub, and on SIGTERM move every socket to
another node before the server closes them (docs/realtime.md, "Shutdown").

uvicorn handles SIGTERM by no longer accepting connections, closing every WebSocket with 1012 and
waiting for running work (``--timeout-graceful-shutdown``). We put a drain in front of that: the
signal first reaches us; the node leaves the cluster registry, refuses new sockets before their
upgrade (HTTP 503, so the front tries another node: deploy/nginx), tells every socket
``server_shutdown`` and, when another ``ws`` node is live, keeps them open and delivering for up to
WS_DRAIN_SECONDS while their clients open a socket elsewhere and close this one once its hello
came (make before break: a client sees no gap in room events). Then, or as soon as the last socket
is gone, the signal goes on to uvicorn's own handler. A second SIGTERM ends the drain at once.
With no other node (one process, the embedded default) there is nowhere to move to: the sockets
close at once and come back after the restart, as the notice asks. (daphne cancels every
application at once, with no such chance; the Procfile uses uvicorn for that reason.)
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import signal

from django.conf import settings

from apps.core import health
from apps.core.errors import error_body
from apps.rooms.balance import start_balancing
from apps.rooms.hub import hub

logger = logging.getLogger(__name__)

# A notice tells each socket to come back after RECONNECT_AFTER_MS, at a random moment of a window
# sized from the node's socket count so that the nodes taking them over see at most
# WS_RECONNECTS_PER_SECOND connects a second (hub.reconnect_window_ms; docs/operations.md).
RECONNECT_AFTER_MS = 250
DRAIN_POLL_SECONDS = 0.1
_pending: set = set()  # keeps the drain task referenced until the process exits
SHUTDOWN_MESSAGE = "This server is restarting; reconnect shortly."
RESTARTING_BODY = json.dumps(
    error_body(
        "service_degraded",
        "This server is restarting; connect to another one.",
        {"cause": "server_restarting"},
    )
).encode()


def install_shutdown_notice() -> None:
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return  # not under a server that handles SIGTERM itself (tests, shells)
    stop_now = asyncio.Event()

    def on_sigterm() -> None:
        if _pending:  # a second SIGTERM: stop draining
            stop_now.set()
            return
        _pending.add(loop.create_task(drain_then_exit(lambda: previous(signal.SIGTERM, None), stop_now)))

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)


async def drain_then_exit(exit_server, stop_now: asyncio.Event) -> None:
    try:
        hub.shutting_down = True  # from now on a new socket is refused before its upgrade
        health.mark_stopping()  # and /readyz fails
        others = await asyncio.to_thread(leave_cluster)
        drain_ms = int(settings.WS_DRAIN_SECONDS * 1000) if others else 0
        count = await hub.announce_shutdown(
            SHUTDOWN_MESSAGE, RECONNECT_AFTER_MS, settings.WS_RECONNECTS_PER_SECOND, drain_ms
        )
        logger.info("shutdown notice sent to %d socket(s); draining for %d ms at most", count, drain_ms)
        if drain_ms:
            left = await sockets_left_after(drain_ms / 1000, stop_now)
            logger.info("drain over: %d of %d socket(s) still here are closed now", left, count)
        await asyncio.sleep(0.1)  # let the last frames leave before the close frames
    finally:
        exit_server()


def leave_cluster() -> bool:
    """Leave the cluster registry now (docs/streaming.md, "Nodes": failover need not wait for
    this node's heartbeat to expire); whether another ``ws`` node is live to take the sockets.
    Blocking (Redis): run on a thread."""
    from apps.core.redis import RedisUnavailable
    from apps.streaming.cluster import live_nodes, stop_heartbeat

    stop_heartbeat("ws")
    try:
        return any(node.role == "ws" for node in live_nodes())
    except RedisUnavailable:
        return False  # cannot tell; and without Redis the other nodes miss this one's events


async def sockets_left_after(seconds: float, stop_now: asyncio.Event) -> int:
    """Wait until every local socket is gone, ``seconds`` passed or ``stop_now`` is set; how many
    are left."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := len(hub.local_subscribers())) and loop.time() < deadline and not stop_now.is_set():
        await asyncio.sleep(DRAIN_POLL_SECONDS)
    return left


async def refuse_while_stopping(scope, receive, send) -> None:
    """A WebSocket handshake on a stopping node: HTTP 503 before the upgrade, which the front
    takes as "try the next node" (``proxy_next_upstream http_503``); a server without the ASGI
    HTTP-response extension answers a close before accept with 403."""
    await receive()  # websocket.connect
    if "websocket.http.response" not in (scope.get("extensions") or {}):
        await send({"type": "websocket.close", "code": 1012})
        return
    headers = [(b"content-type", b"application/json"), (b"retry-after", b"1")]
    await send({"type": "websocket.http.response.start", "status": 503, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": RESTARTING_BODY})


def tune_garbage_collector() -> None:
    """WS_GC_THRESHOLD for the cyclic collector, and what was loaded at startup (Django, the
    apps, the URL and model registries) frozen out of its full passes. A ``ws`` node allocates
    fast while sockets join: at Python's default (700, 10, 10) a 1,000-member room filling over
    two nodes cost each node ~450 collections and a full pass over its whole heap, ~0.45 ms of
    CPU per connect; at (10000, 20, 20) ~30 and none (bench/ws/README.md, "Joins and moves").
    Garbage with cycles waits longer to be freed: a few MB at most."""
    threshold = settings.WS_GC_THRESHOLD
    if threshold:
        gc.set_threshold(*threshold)
    gc.freeze()


class Lifespan:
    """Wraps the ASGI application: answers ``lifespan`` itself, passes everything else on."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "lifespan":
            if scope["type"] == "websocket" and hub.shutting_down:
                return await refuse_while_stopping(scope, receive, send)
            return await self.app(scope, receive, send)
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await hub.ensure_started()
                    install_shutdown_notice()
                    start_balancing(hub)
                    tune_garbage_collector()
                except Exception as exc:
                    logger.exception("ws startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
