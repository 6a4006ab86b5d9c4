"""The threads the room WebSocket's database calls run on (docs/realtime.md).

channels' ``database_sync_to_async`` runs every call of the process on ONE thread (thread-
sensitive), so chat inserts and playback writes of all sockets queue there. On PostgreSQL they run
on a small pool of threads instead, each with its own connection (from the psycopg pool when one
is configured; DatabaseSyncToAsync returns it after every call). Calls of one socket still run one
at a time: a consumer handles its frames in order. SQLite keeps the one thread: concurrent
writers there fail with "database is locked".
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from channels.db import DatabaseSyncToAsync
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connections

from apps.core import dbfaults

logger = logging.getLogger(__name__)

DEFAULT_PG_DB_THREADS = 4


def resolve_db_threads(*, requested: int, vendor: str, pool: object) -> int:
    """Threads for consumer database calls. ``requested``: WS_DB_THREADS (0 = automatic);
    ``pool``: the database's ``OPTIONS["pool"]`` (None, True or psycopg_pool arguments)."""
    if vendor != "postgresql":
        return 1
    threads = requested if requested > 0 else DEFAULT_PG_DB_THREADS
    if pool:
        # psycopg_pool's own default when Django is given pool=True: min_size 4, max_size = min_size.
        options = pool if isinstance(pool, dict) else {}
        max_size = options.get("max_size") or options.get("min_size") or 4
        # Leave one connection for the process's other sync work (the HTTP requests it answers);
        # a thread with no connection to take would wait for the pool's timeout, then fail.
        threads = min(threads, max_size - 1)
    return max(1, threads)


@functools.cache
def db_executor() -> ThreadPoolExecutor | None:
    """The pool for consumer database calls, or None for channels' one shared thread."""
    db = connections["default"]
    requested = settings.WS_DB_THREADS
    pool = (db.settings_dict.get("OPTIONS") or {}).get("pool")
    threads = resolve_db_threads(requested=requested, vendor=db.vendor, pool=pool)
    if requested > threads:
        logger.warning("WS_DB_THREADS=%d lowered to %d (%s, pool %s)", requested, threads, db.vendor, pool)
    logger.info("WebSocket database calls on %d thread(s)", threads)
    if threads == 1:
        return None
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ws-db")


class OnDatabaseThreads:
    """``func`` as a coroutine function run on the consumer database threads: what channels'
    ``DatabaseSyncToAsync`` does there (old connections closed before and after the call, the
    caller's context variables visible), without asgiref's machinery around it. asgiref copies
    every context variable back after each call and routes exceptions through a thread handler
    built for nested ``async_to_sync``, which nothing on this path uses; that costs ~50 µs of
    CPU per call on top of the ~140 µs the thread hand-over itself costs, and a WebSocket
    connect makes two calls (bench/ws/README.md, "Joins and moves"). A cancelled caller stops
    waiting; a call already running finishes on its thread, as under asgiref."""

    __slots__ = ("executor", "func")

    def __init__(self, func: Callable[..., Any], executor: ThreadPoolExecutor) -> None:
        self.func, self.executor = func, executor

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        call = functools.partial(_closing_old_connections, functools.partial(self.func, *args, **kwargs))
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self.executor, context.run, call)


def _closing_old_connections(call: Callable[[], Any]) -> Any:
    close_old_connections()
    try:
        return degrading(call)
    finally:
        close_old_connections()


def degrading(call: Callable[[], Any]) -> Any:
    """``call()`` as one unit of work (apps.core.dbfaults): tried again after a transient database
    failure when it committed nothing; a database that still fails raises ServiceDegraded, which
    a socket answers with an ``error`` frame and stays open."""
    try:
        return dbfaults.run_with_retries(call)
    except DatabaseError as exc:
        if dbfaults.degraded(exc):
            raise dbfaults.as_service_degraded(exc) from exc
        raise


def database_sync_to_async(func: Callable[..., Any]) -> DatabaseSyncToAsync | OnDatabaseThreads:
    """``func`` on this process's consumer database threads (see above), old connections closed
    before and after each call; on SQLite channels' ``database_sync_to_async`` (its one thread).
    A database outage raises ServiceDegraded (``degrading``)."""
    executor = db_executor()
    if executor is None:
        return DatabaseSyncToAsync(functools.partial(_degrading_call, func))
    return OnDatabaseThreads(func, executor)


def _degrading_call(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return degrading(functools.partial(func, *args, **kwargs))
