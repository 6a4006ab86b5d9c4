"""apps/core/dbfaults.py with the PostgreSQL backend, against the real database: which errors are
retried, that nothing committed is ever run twice, the breaker opening on lost connections and
refusing without trying, and requests retried or answered 503 ``service_degraded``.

The errors are PostgreSQL's own: a statement raising SQLSTATE 40001 / 40P01 (what a serializable
transaction or a deadlock gets), and a connection to a port where nothing listens."""

from __future__ import annotations

import json
import time

import pytest
from django.db import DatabaseError, IntegrityError, connection, connections, transaction
from django.http import JsonResponse
from django.test import Client, override_settings
from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core import dbfaults
from apps.core.dbfaults import DatabaseUnavailable, database_breaker, run_with_retries
from tests.procs import free_port
from tests.tcpproxy import TcpProxy

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

TABLE = "dbfaults_probe"


def fail_with(sqlstate: str) -> None:
    """PostgreSQL raises an error with that SQLSTATE (Django wraps it as it wraps every error)."""
    with connection.cursor() as cursor:
        cursor.execute(f"DO $$ BEGIN RAISE EXCEPTION 'test' USING ERRCODE = '{sqlstate}'; END $$")


@pytest.fixture(autouse=True)
def fresh_breaker():
    database_breaker.reset()
    yield
    database_breaker.reset()


@pytest.fixture
def probe_table():
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (n integer)")
        cursor.execute(f"DELETE FROM {TABLE}")
    yield
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")


def rows() -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {TABLE}")
        return cursor.fetchone()[0]


def insert() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {TABLE} VALUES (1)")


class Flaky:
    """Fails with ``sqlstate`` the first ``failures`` calls, after running ``before`` each time."""

    def __init__(self, sqlstate: str, failures: int, before=None) -> None:
        self.sqlstate, self.failures, self.before, self.calls = sqlstate, failures, before, 0

    def __call__(self):
        self.calls += 1
        if self.before is not None:
            self.before()
        if self.calls <= self.failures:
            fail_with(self.sqlstate)
        return "done"


@pytest.mark.parametrize("sqlstate", ["40001", "40P01"])
def test_a_serialization_failure_or_deadlock_is_tried_again_100_then_200_ms_later(sqlstate):
    slept: list[float] = []
    flaky = Flaky(sqlstate, failures=2)
    assert run_with_retries(flaky, sleep=slept.append) == "done"
    assert (flaky.calls, slept) == (3, [0.1, 0.2])
    assert database_breaker.state == "closed"  # a busy database is not a dead one


def test_three_tries_at_most():
    slept: list[float] = []
    flaky = Flaky("40001", failures=5)
    with pytest.raises(DatabaseError) as caught:
        run_with_retries(flaky, sleep=slept.append)
    assert dbfaults.transient(caught.value)
    assert (flaky.calls, slept) == (3, [0.1, 0.2])


def test_work_that_committed_anything_is_never_run_twice(probe_table):
    flaky = Flaky("40001", failures=1, before=insert)  # a statement that commits by itself
    with pytest.raises(DatabaseError):
        run_with_retries(flaky, sleep=lambda s: None)
    assert (flaky.calls, rows()) == (1, 1)

    def in_a_transaction():
        with transaction.atomic():
            insert()
        fail_with("40001")

    calls = []
    with pytest.raises(DatabaseError):
        run_with_retries(lambda: calls.append(1) or in_a_transaction(), sleep=lambda s: None)
    assert (len(calls), rows()) == (1, 2)


def test_work_whose_transaction_rolled_back_is_run_again(probe_table):
    def whole():
        with transaction.atomic():
            insert()
            if rows() == 1 and not whole.failed:
                whole.failed = True
                fail_with("40P01")

    whole.failed = False
    run_with_retries(whole, sleep=lambda s: None)
    assert rows() == 1  # the first try's row went with its rollback


def test_work_inside_a_transaction_it_does_not_own_is_not_retried():
    flaky = Flaky("40001", failures=1)
    with pytest.raises(DatabaseError), transaction.atomic():
        run_with_retries(flaky, sleep=lambda s: None)
    assert flaky.calls == 1


def test_other_errors_are_not_retried(probe_table):
    calls = []

    def broken():
        calls.append(1)
        fail_with("23505")  # unique_violation

    with pytest.raises(IntegrityError):
        run_with_retries(broken, sleep=lambda s: None)
    assert len(calls) == 1
    assert not dbfaults.degraded(IntegrityError("x"))


def dead_connection(port: int):
    """A connection of the project's backend to ``port`` (the test database's name and user)."""
    settings_dict = {**connections["default"].settings_dict, "PORT": str(port), "CONN_MAX_AGE": 0}
    return connections["default"].__class__(settings_dict, alias="dbfaults-test")


def test_the_breaker_opens_on_lost_connections_refuses_without_trying_then_closes(monkeypatch):
    monkeypatch.setattr(database_breaker, "reset_timeout", 0.3)
    db_port = int(connections["default"].settings_dict.get("PORT") or 5432)
    proxy = TcpProxy(db_port).start()
    try:
        proxy.cut()
        conn = dead_connection(proxy.port)
        for _ in range(database_breaker.failure_threshold):
            with pytest.raises(DatabaseError) as caught:
                conn.ensure_connection()
            assert dbfaults.lost_connection(caught.value) and dbfaults.transient(caught.value)
        assert database_breaker.state == "open"
        proxy.restore()  # the database is back, but the breaker does not know yet
        with pytest.raises(DatabaseUnavailable) as refused:
            conn.ensure_connection()
        assert proxy.accepted == 0  # refused without a connect
        assert dbfaults.degraded(refused.value) and not dbfaults.transient(refused.value)
        assert dbfaults.retry_after_seconds() == 1
        time.sleep(0.35)
        assert database_breaker.state == "half_open"
        conn.ensure_connection()  # one try goes through, and it works
        assert proxy.accepted == 1
        assert database_breaker.state == "closed"
        conn.close()
    finally:
        proxy.stop()


def test_a_refused_connection_is_a_lost_connection_for_the_classifier():
    conn = dead_connection(free_port())
    try:
        with pytest.raises(DatabaseError) as caught:
            conn.ensure_connection()
        assert dbfaults.lost_connection(caught.value)
    finally:
        database_breaker.reset()


# --- requests --------------------------------------------------------------------------------


class Counter:
    calls = 0


def flaky_echo(request):
    """Fails transiently on its first call, then echoes the JSON body it was sent."""
    Counter.calls += 1
    if Counter.calls == 1:
        fail_with("40001")
    return JsonResponse({"body": json.loads(request.body), "tries": Counter.calls})


def insert_then_fail(request):
    Counter.calls += 1
    insert()
    fail_with("40001")


def always_down(request):
    Counter.calls += 1
    raise DatabaseUnavailable("The database breaker is open.")


class FlakyApiView(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    def post(self, request):
        Counter.calls += 1
        if Counter.calls == 1:
            fail_with("40P01")
        return Response({"body": request.data, "tries": Counter.calls})


urlpatterns = [
    path("api/t/flaky", flaky_echo),
    path("api/t/flaky-drf", FlakyApiView.as_view()),
    path("api/t/committed", insert_then_fail),
    path("api/t/down", always_down),
    path("page/down", always_down),
]
handler500 = "apps.core.errors.server_error"


@pytest.fixture
def client():
    Counter.calls = 0
    with override_settings(ROOT_URLCONF=__name__, DEBUG=False):
        yield Client(raise_request_exception=False)


@pytest.mark.parametrize("url", ["/api/t/flaky", "/api/t/flaky-drf"])
def test_a_request_that_failed_transiently_and_committed_nothing_runs_again_with_its_body(client, url):
    r = client.post(url, {"text": "hello"}, content_type="application/json")
    assert r.status_code == 200, r.content
    assert r.json() == {"body": {"text": "hello"}, "tries": 2}


def test_a_request_that_committed_is_answered_503_and_not_run_again(client, probe_table):
    r = client.post("/api/t/committed", {}, content_type="application/json")
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "service_degraded"
    assert (Counter.calls, rows()) == (1, 1)


@pytest.mark.parametrize(("url", "kind"), [("/api/t/down", "application/json"), ("/page/down", "text/html")])
def test_an_open_breaker_answers_503_with_retry_after_at_once(client, url, kind):
    r = client.get(url)
    assert r.status_code == 503
    assert r["Content-Type"].startswith(kind)
    assert int(r["Retry-After"]) >= 1
    assert Counter.calls == 1  # not tried again: the breaker said no
    if kind == "application/json":
        assert r.json()["error"] == {
            "code": "service_degraded",
            "message": "The database is unavailable; retry shortly.",
            "details": {},
        }


def test_a_failure_that_opens_the_breaker_is_not_retried():
    """A half-open probe that fails (the database still down) answers at once: waiting 100 ms to
    be refused by the breaker it just opened would only delay the 503."""
    db_port = int(connections["default"].settings_dict.get("PORT") or 5432)
    proxy = TcpProxy(db_port).start()
    proxy.cut()
    conn = dead_connection(proxy.port)
    connections["dbfaults-test"] = conn  # run_with_retries looks its connection up by alias
    slept: list[float] = []
    try:
        for _ in range(database_breaker.failure_threshold - 1):
            database_breaker.record_failure()
        with pytest.raises(DatabaseError) as caught:
            run_with_retries(conn.ensure_connection, alias="dbfaults-test", sleep=slept.append)
        assert dbfaults.lost_connection(caught.value)
        assert database_breaker.state == "open"
        assert slept == []
    finally:
        del connections["dbfaults-test"]
        proxy.stop()


def test_the_end_of_a_unit_of_work_drops_the_connection_while_the_breaker_is_open():
    """Django's end-of-request check asks the connection its autocommit mode through
    ensure_connection; with the breaker open that raised where nothing may (bench/chaos saw a
    socket's chat end in server_error from it). The connection is dropped instead."""
    from django.db import close_old_connections

    connection.ensure_connection()
    assert connection.connection is not None
    try:
        for _ in range(database_breaker.failure_threshold):
            database_breaker.record_failure()
        close_old_connections()
        assert connection.connection is None
    finally:
        database_breaker.reset()
