"""apps/core/postgresql: the health check of a persistent connection polls the socket; a
connection PostgreSQL ended is still found and replaced before the request uses it."""

from __future__ import annotations

import time

import psycopg
import pytest
from django.db import close_old_connections, connection, connections
from django.test import Client

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


class StatementSpy:
    """Records what goes through the psycopg connection's ``execute`` and ``cursor`` (Django's
    own check opens a cursor and runs ``SELECT 1``): the statements actually sent."""

    def __init__(self, conn) -> None:
        self.conn, self.sent = conn, []

    def __enter__(self):
        real_execute, real_cursor, sent = self.conn.execute, self.conn.cursor, self.sent

        def execute(query, *args, **kwargs):
            sent.append(query)
            return real_execute(query, *args, **kwargs)

        def cursor(*args, **kwargs):
            cur = real_cursor(*args, **kwargs)
            real = cur.execute

            def cursor_execute(query, *a, **kw):
                sent.append(query)
                return real(query, *a, **kw)

            cur.execute = cursor_execute
            return cur

        self.conn.execute, self.conn.cursor = execute, cursor
        return self

    def __exit__(self, *exc) -> None:
        del self.conn.execute, self.conn.cursor


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def terminate(pid: int) -> None:
    """End that session from another connection, as an operator or a failover would."""
    params = connection.get_connection_params()
    with psycopg.connect(**params, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone()[0] is True
    # The server's FATAL message and EOF reach our socket asynchronously.
    deadline = time.monotonic() + 5
    while not connection._socket_has_input(connection.connection):
        assert time.monotonic() < deadline, "the terminated session's socket never became readable"
        time.sleep(0.01)


def test_the_engine_is_ours_and_health_checks_are_on():
    assert type(connections["default"]).__module__ == "apps.core.postgresql.base"
    assert connection.settings_dict["CONN_HEALTH_CHECKS"] is True


def test_an_idle_healthy_connection_is_usable_without_a_round_trip():
    backend_pid()
    with StatementSpy(connection.connection) as spy:
        assert connection.is_usable() is True
    assert spy.sent == []


def test_a_connection_inside_a_transaction_gets_the_real_check():
    backend_pid()
    with connection.cursor() as cursor:
        cursor.execute("BEGIN")
        try:
            with StatementSpy(connection.connection) as spy:
                assert connection.is_usable() is True
            assert spy.sent == ["SELECT 1"]
        finally:
            cursor.execute("ROLLBACK")


def test_a_terminated_session_is_not_usable():
    terminate(backend_pid())
    try:
        assert connection.is_usable() is False
    finally:
        connection.close()  # the test database's teardown needs a working connection


def test_the_next_request_after_a_terminated_session_is_served_on_a_new_connection():
    old = backend_pid()
    terminate(old)
    # What request_started does in a server (Django's test Client disconnects it): the next
    # query runs the health check first.
    close_old_connections()
    response = Client(raise_request_exception=False).get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json()["checks"]["database"]["ok"] is True
    assert backend_pid() != old
