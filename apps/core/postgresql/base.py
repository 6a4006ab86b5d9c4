"""PostgreSQL backend whose connection health check usually costs no round trip.

Django's ``CONN_HEALTH_CHECKS`` runs ``SELECT 1`` before the first query of every request on a
persistent connection, so a connection PostgreSQL dropped (restart, failover, an administrator's
``pg_terminate_backend``) is replaced instead of failing that request. The check is one database
round trip per request: on the authenticated ``users/me`` read it was ~0.1 ms of CPU and the
largest single cost SyncTV added over the bare floor (bench/README.md).

An idle connection between requests has nothing to read: PostgreSQL only writes to it in answer to
a query, except when it ends the session (a FATAL ``terminating connection`` message, then EOF)
or, rarely, sends an asynchronous notice or parameter change. So: poll the socket without
waiting. Nothing readable → the connection is as good as ``SELECT 1`` would find it. Anything
readable, or a connection that is not idle → Django's own ``SELECT 1`` check decides.

What neither check can see is a peer that vanished without closing the TCP connection (a host
that lost power); the first query then fails, the request errors, and Django discards the
connection at the end of that request, as it does without this backend.

It also carries the database's fault handling (apps.core.dbfaults, docs/security.md): every
outcome goes to the database breaker, which refuses at once while open; and the connection counts
what it commits (``commits``: each COMMIT and each statement that commits by itself), so a unit of
work that failed is retried only when none of it was committed.
"""

from __future__ import annotations

import contextlib
import select

from django.db import DatabaseError
from django.db.backends.postgresql import base
from django.db.backends.utils import CursorWrapper
from django.db.utils import DatabaseErrorWrapper
from django.utils.functional import cached_property
from psycopg.pq import TransactionStatus

from apps.core.dbfaults import DatabaseUnavailable, database_breaker, lost_connection


class BreakerErrorWrapper(DatabaseErrorWrapper):
    """Django's error wrapper (around every connect, query, commit and rollback) that also tells
    the database breaker how it went."""

    def __exit__(self, exc_type, exc_value, traceback):
        if exc_type is None:
            database_breaker.record_success()
            return
        try:
            super().__exit__(exc_type, exc_value, traceback)
        except DatabaseError as exc:
            if lost_connection(exc):
                database_breaker.record_failure()
            raise


class CommitCounting:
    """A statement run outside a transaction commits by itself: count it (a SELECT does not)."""

    db: DatabaseWrapper

    def _execute(self, sql, params, *ignored):
        result = super()._execute(sql, params, *ignored)
        self._count(sql)
        return result

    def _executemany(self, sql, param_list, *ignored):
        result = super()._executemany(sql, param_list, *ignored)
        self._count(sql)
        return result

    def _count(self, sql) -> None:
        db = self.db
        if db.in_atomic_block or not db.autocommit:
            return
        if isinstance(sql, str) and sql.lstrip()[:6].upper() == "SELECT":
            return
        db.commits += 1


class CountingCursorWrapper(CommitCounting, CursorWrapper):
    pass


class CountingCursorDebugWrapper(CommitCounting, base.CursorDebugWrapper):
    pass


class DatabaseWrapper(base.DatabaseWrapper):
    commits = 0  # see the module docstring

    @cached_property
    def wrap_database_errors(self):
        return BreakerErrorWrapper(self)

    def ensure_connection(self):
        if database_breaker.refusing():
            raise DatabaseUnavailable("The database breaker is open.")
        super().ensure_connection()

    def close_if_unusable_or_obsolete(self):
        # Django's check asks the connection its autocommit mode, which goes through
        # ensure_connection: with the breaker open that raised at the end of every request and
        # database call (bench/chaos). The database being down, the connection goes instead.
        if self.connection is not None and database_breaker.refusing():
            with contextlib.suppress(DatabaseError):
                self.close()  # Django drops the connection even when closing it fails
            return
        super().close_if_unusable_or_obsolete()

    def _commit(self):
        result = super()._commit()
        self.commits += 1
        return result

    def make_cursor(self, cursor):
        return CountingCursorWrapper(cursor, self)

    def make_debug_cursor(self, cursor):
        return CountingCursorDebugWrapper(cursor, self)

    def is_usable(self) -> bool:
        conn = self.connection
        if conn is None or conn.closed:
            return False
        if conn.info.transaction_status == TransactionStatus.IDLE and not self._socket_has_input(conn):
            return True
        return super().is_usable()

    @staticmethod
    def _socket_has_input(conn) -> bool:
        try:
            poller = select.poll()
            poller.register(conn.fileno(), select.POLLIN | select.POLLPRI)
            return bool(poller.poll(0))  # POLLERR/POLLHUP are always reported
        except (OSError, ValueError):  # no usable descriptor: let the real check decide
            return True
