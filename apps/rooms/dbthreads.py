"""The threads the room WebSocket's database calls run on (docs/realtime.md).

channels' ``database_sync_to_async`` runs every call of the process on ONE thread (thread-
sensitive), so chat inserts and playback writes of all sockets queue there. On PostgreSQL they run
on a small pool of threads instead, each with its own connection (from the psycopg pool when one
is configured; DatabaseSyncToAsync returns it after every call). Calls of one socket still run one
at a time: a consumer handles its frames in order. SQLite keeps the one thread: concurrent
writers there fail with "database is locked".
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from channels.db import DatabaseSyncToAsync
from django.conf import settings
from django.db import connections

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


def database_sync_to_async(func: Callable[..., Any]) -> DatabaseSyncToAsync:
    """channels' ``database_sync_to_async`` (old connections closed before and after each call),
    on this process's consumer database threads (see above)."""
    executor = db_executor()
    if executor is None:
        return DatabaseSyncToAsync(func)
    return DatabaseSyncToAsync(func, thread_sensitive=False, executor=executor)
