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
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base
from psycopg.pq import TransactionStatus


class DatabaseWrapper(base.DatabaseWrapper):
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
