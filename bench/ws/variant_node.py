"""Experiments, not production: the `ws` node with proposed changes applied as monkeypatches, so
their effect can be measured with bench/ws/load.js before anyone edits the app.

Built into the app since (no-ops here, kept so old VARIANTS= lines still run): db_threads
(WS_DB_THREADS), lean_connect, frame_once, no_close_hop. To measure the app WITHOUT one of them,
WS_DB_THREADS=1 gives back the single database thread; the others have no switch.

    VARIANTS=db_threads,lean_connect .venv/bin/python bench/ws/variant_node.py \
        synctv.asgi:application --port 8101 ...        # then uvicorn's own options

bench/ws/run (with VARIANTS=...) starts it with the Procfile `ws` line, `uvicorn` replaced by this
script, so the options and environment are the Procfile's. Each variant mirrors one proposal in
bench/ws/README.md ("What limits it"):

  no_health_check  CONN_HEALTH_CHECKS off: channels' database_sync_to_async calls
                   close_old_connections() around every call, which with health checks on costs a
                   `SELECT 1` before the first query of every call (only with persistent
                   connections, i.e. without DB_POOL_MAX_SIZE; the Procfile now sets a pool).
  db_threads       consumer DB calls on a small thread pool (thread_sensitive=False) instead of
                   the one thread every consumer of the process shares.
  lean_connect     connect with 5 queries instead of 8: the member row brings its user and room
                   (already loaded), and the room is loaded once, with its member count.
  frame_once       the hub frames an event once (header + UTF-8 payload) and writes the same bytes
                   to every local socket's transport (uvicorn websockets-sansio, no per-message
                   deflate), instead of one ASGI send + one websockets frame build per socket.
  baseline         nothing patched (the same launcher, for a like-for-like comparison)
  no_close_hop     skip channels' aclose_old_connections() thread hop on every received frame
                   (database_sync_to_async already does it around each DB call).
  pass_times       an observation, not a change: for every `playback` event the hub passes to
                   its local sockets, one line "version hub_in_ns pass_end_ns sockets" (time.time_ns)
                   in $PASS_TIMES_DIR/node-<pid>.txt. hub_in = the event came off Redis; pass_end =
                   the last socket's transport.write returned. On loopback a write returns with the
                   bytes in the receiving socket's buffer, so pass_end is when the last member of
                   this node had the event, whatever the load client does next (load.js
                   --pass-times reads these files: the "server" columns).
  write_trace      an observation, not a change: for every playback change a socket of this node
                   sends, one JSON line in $PASS_TIMES_DIR/write-<pid>.txt with the times (ns) of
                   its stages: frame received (consumer.receive), handler entered, service entered
                   (database thread), each SQL statement's duration, publish start/end (after
                   commit), service returned, handler resumed on the event loop.
  gc_freeze        a proposal (not adopted): gc.freeze() once the node has started, so full
                   collections during connect storms skip the start-up heap.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "synctv.settings")

import django

django.setup()

VARIANTS = {v.strip() for v in os.environ.get("VARIANTS", "").split(",") if v.strip()}


def no_health_check() -> None:
    from django.db import connections

    connections["default"].settings_dict["CONN_HEALTH_CHECKS"] = False


def _built_in(name: str, where: str) -> None:
    # Proposals that are now part of the app: the variant name still runs (old VARIANTS= command
    # lines keep working) but patches nothing; the baseline has them.
    print(f"variant {name}: built into the app ({where}); nothing to patch", file=sys.stderr, flush=True)


def db_threads() -> None:
    _built_in("db_threads", "apps/rooms/consumers.py database_sync_to_async, WS_DB_THREADS")


def lean_connect() -> None:
    _built_in("lean_connect", "RoomConsumer.connect, selectors.membership")


def frame_once() -> None:
    _built_in("frame_once", "RoomHub.send_many, hub.direct_protocol")


def no_close_hop() -> None:
    _built_in("no_close_hop", "RoomConsumer.dispatch")


def pass_times() -> None:
    import re
    import time

    from apps.rooms.hub import RoomHub

    out = open(Path(os.environ["PASS_TIMES_DIR"]) / f"node-{os.getpid()}.txt", "a", buffering=1)
    version = re.compile(r'"version":(\d+)')
    dispatch = RoomHub.dispatch

    async def timed_dispatch(self, channel: str, text: str) -> None:
        hub_in = time.time_ns()
        await dispatch(self, channel, text)
        if text.startswith('{"type":"playback"'):
            found = version.search(text)
            if found:
                out.write(
                    f"{found.group(1)} {hub_in} {time.time_ns()} {len(self.channels.get(channel, ()))}\n"
                )

    RoomHub.dispatch = timed_dispatch


def gc_log() -> None:
    """An observation: every cyclic garbage collection of the node (generation, objects collected,
    duration) as a line in $PASS_TIMES_DIR/gc-<pid>.txt (the same directory as pass_times)."""
    import gc
    import time

    out = open(Path(os.environ["PASS_TIMES_DIR"]) / f"gc-{os.getpid()}.txt", "a", buffering=1)
    started = {}

    def callback(phase: str, info: dict) -> None:
        if phase == "start":
            started["t"] = time.perf_counter_ns()
        else:
            took = time.perf_counter_ns() - started.get("t", time.perf_counter_ns())
            out.write(f"{time.time_ns()} {info['generation']} {info['collected']} {took}\n")

    gc.callbacks.append(callback)


def bare_pass() -> None:
    """An experiment, NOT safe: the hub's pass skips every per-socket check (on_event, the
    writable/closing/queued tests) and writes the frame to each local socket's transport. What is
    left is the floor of the pass inside this app: how much of the node's CPU per delivery the
    checks cost, measured in place."""
    import json

    from websockets.frames import Frame, Opcode

    from apps.rooms.hub import RoomHub

    dispatch = RoomHub.dispatch

    async def bare_dispatch(self, channel: str, text: str) -> None:
        if not text.startswith('{"type":"playback"'):
            return await dispatch(self, channel, text)
        json.loads(text)
        frame = Frame(Opcode.TEXT, text.encode()).serialize(mask=False, extensions=[])
        for sub in list(self.channels.get(channel, ())):
            proto = sub.direct
            if proto is not None:
                proto.transport.write(frame)

    RoomHub.dispatch = bare_dispatch


def write_trace() -> None:
    import contextvars
    import json
    import time

    from django.db import connection

    from apps.core import realtime
    from apps.rooms import consumers, services

    out = open(Path(os.environ["PASS_TIMES_DIR"]) / f"write-{os.getpid()}.txt", "a", buffering=1)
    # The handler's trace, seen by the database thread too (asgiref runs it in a copy of the
    # handler's context), and by the publish that runs there after commit.
    current: contextvars.ContextVar[dict | None] = contextvars.ContextVar("write_trace", default=None)
    receive, on_playback, update, publish = (
        consumers.RoomConsumer.receive,
        consumers.RoomConsumer.on_playback,
        services.playback_update,
        realtime.publish,
    )

    async def traced_receive(self, text_data=None, bytes_data=None):
        self._trace_in = time.perf_counter_ns()
        return await receive(self, text_data, bytes_data)

    async def traced_on_playback(self, message):
        trace = {"in": getattr(self, "_trace_in", 0), "handler": time.perf_counter_ns(), "sql": []}
        token = current.set(trace)
        try:
            await on_playback(self, message)
        finally:
            current.reset(token)
        trace["resumed"] = time.perf_counter_ns()
        out.write(json.dumps(trace) + "\n")

    def sql_timer(execute, sql, params, many, context):
        started = time.perf_counter_ns()
        try:
            return execute(sql, params, many, context)
        finally:
            current.get()["sql"].append([sql.split(None, 1)[0], started, time.perf_counter_ns()])

    def traced_update(*, actor, room, origin, **change):
        trace = current.get()
        if trace is None:  # not from a socket's playback frame (the REST view)
            return update(actor=actor, room=room, origin=origin, **change)
        trace["service"] = time.perf_counter_ns()
        with connection.execute_wrapper(sql_timer):
            state = update(actor=actor, room=room, origin=origin, **change)
        trace["returned"] = time.perf_counter_ns()
        trace["version"] = state.version
        return state

    def traced_publish(channel, event):
        trace = current.get() if event.get("type") == "playback" else None
        if trace is not None:
            trace["pub_start"] = time.perf_counter_ns()
        publish(channel, event)
        if trace is not None:
            trace["pub_end"] = time.perf_counter_ns()

    consumers.RoomConsumer.receive = traced_receive
    consumers.RoomConsumer.on_playback = traced_on_playback
    services.playback_update = traced_update
    realtime.publish = traced_publish


def gc_freeze() -> None:
    """A proposal: once the node has started (Django, the app and the hub loaded), move every
    object alive then into the permanent generation (gc.freeze), so the full collections that
    connect storms trigger no longer walk the start-up heap."""
    import gc

    from apps.rooms.hub import RoomHub

    ensure_started = RoomHub.ensure_started

    async def started_then_frozen(self) -> None:
        first = self.loop is None
        await ensure_started(self)
        if first:
            gc.collect()
            gc.freeze()

    RoomHub.ensure_started = started_then_frozen


KNOWN = {
    "no_health_check": no_health_check,
    "db_threads": db_threads,
    "lean_connect": lean_connect,
    "frame_once": frame_once,
    "no_close_hop": no_close_hop,
    "pass_times": pass_times,
    "gc_log": gc_log,
    "bare_pass": bare_pass,
    "write_trace": write_trace,
    "gc_freeze": gc_freeze,
}
for name in sorted(VARIANTS - {"baseline"}):  # "baseline": the same launcher, nothing patched
    KNOWN[name]()
    print(f"variant applied: {name}", file=sys.stderr, flush=True)

if __name__ == "__main__":
    # The rest of the command line is uvicorn's (bench/ws/run passes the Procfile `ws` line with
    # `uvicorn` replaced by this script), so a variant runs with exactly the Procfile's options.
    import uvicorn.main

    sys.argv = ["uvicorn", *sys.argv[1:]]
    uvicorn.main.main()
