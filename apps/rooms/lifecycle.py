"""ASGI lifespan for the ``ws`` process: start the room hub, and on SIGTERM tell every socket
``server_shutdown`` before the server closes them (docs/api.md, "WebSocket").

uvicorn handles SIGTERM by no longer accepting connections, closing every WebSocket with 1012 and
waiting for running work (``--timeout-graceful-shutdown``). We put our notice in front of that:
the signal first reaches us, we send the notice to every local socket, then hand the signal to
uvicorn's own handler. (daphne cancels every application at once, with no such chance; the
Procfile uses uvicorn for that reason.)
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal

from django.conf import settings

from apps.rooms.hub import hub

logger = logging.getLogger(__name__)

# A notice tells each socket to come back after RECONNECT_AFTER_MS, at a random moment of a window
# sized from the node's socket count so that the nodes taking them over see at most
# WS_RECONNECTS_PER_SECOND connects a second (hub.reconnect_window_ms; docs/operations.md).
RECONNECT_AFTER_MS = 250
_pending: set = set()  # keeps the notice task referenced until the process exits
SHUTDOWN_MESSAGE = "This server is restarting; reconnect shortly."


def install_shutdown_notice() -> None:
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return  # not under a server that handles SIGTERM itself (tests, shells)

    def on_sigterm() -> None:
        async def notify_then_exit() -> None:
            try:
                count = await hub.announce_shutdown(
                    SHUTDOWN_MESSAGE, RECONNECT_AFTER_MS, settings.WS_RECONNECTS_PER_SECOND
                )
                logger.info("shutdown notice sent to %d socket(s)", count)
                await asyncio.sleep(0.1)  # let the frames leave before the close frames
            finally:
                previous(signal.SIGTERM, None)

        _pending.add(loop.create_task(notify_then_exit()))

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)


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
            return await self.app(scope, receive, send)
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await hub.ensure_started()
                    install_shutdown_notice()
                    tune_garbage_collector()
                except Exception as exc:
                    logger.exception("ws startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
