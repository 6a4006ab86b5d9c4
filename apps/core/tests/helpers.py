"""Helpers shared by the test modules of several apps."""

from __future__ import annotations

import threading
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from django.conf import settings
from django.contrib.admin.utils import quote
from django.db import OperationalError, connection
from django.db.models import Model
from django.test import Client
from django.urls import reverse
from django_ratelimit import core as ratelimit_core
from rest_framework.test import APIClient

T = TypeVar("T")


def admin_url(obj: Model, view: str = "change") -> str:
    """The admin page ``view`` ("change", "delete", "history") of ``obj``.

    The key goes through the admin's own quoting: the admin reads ``_`` followed by one of its
    escape codes (``_5F`` is ``_``, ``_2F`` is ``/``, ...) as an escape, so a random id written raw
    into the URL now and then names another object (measured: about one signing-key id in 340).
    """
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=[quote(obj.pk)])


def admin_client_fixture(ip: str, user_agent: str) -> Any:
    """An ``admin_client`` fixture for a module: a Django test client logged in as the module's
    ``root`` fixture, sending from ``ip`` with ``user_agent`` (what the admin's audit events
    record). Use as ``admin_client = admin_client_fixture(ADMIN_IP, ADMIN_UA)``."""

    @pytest.fixture
    def admin_client(root) -> Client:
        c = Client(raise_request_exception=False, REMOTE_ADDR=ip, HTTP_USER_AGENT=user_agent)
        c.force_login(root)
        return c

    return admin_client


class FakeClock:
    """A clock that stands still until a test moves ``now``: call it, or use ``.time()``."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now


def ratelimit_clock_fixture(*, autouse: bool = False) -> Any:
    """A ``clock`` fixture: django-ratelimit's fixed windows on a frozen ``FakeClock``, so no test
    straddles a window edge (and a test can step past a window by moving ``clock.now``)."""

    @pytest.fixture(autouse=autouse)
    def clock(monkeypatch) -> FakeClock:
        frozen = FakeClock(1_800_000_000.0)
        monkeypatch.setattr(ratelimit_core, "time", types.SimpleNamespace(time=frozen.time))
        return frozen

    return clock


def ratelimits(**overrides: str) -> dict:
    """settings.RATELIMITS with ``overrides`` (for ``override_settings(RATELIMITS=...)``)."""
    return {**settings.RATELIMITS, **overrides}


def client_for(token: str | None = None, *, header: str | None = None, **defaults: Any) -> APIClient:
    """An API client that sends ``Authorization: Bearer <token>``, or ``header`` as it is, or no
    credentials. ``defaults`` go to APIClient (``raise_request_exception=False``: a server error
    comes back as a 500 response instead of raising in the test)."""
    client = APIClient(**defaults)
    if header is not None:
        client.credentials(HTTP_AUTHORIZATION=header)
    elif token is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def error_code(response: Any) -> str | None:
    """The ``error.code`` of an API error body; None for any other body (or none)."""
    try:
        body = response.json()
    except (ValueError, TypeError):
        return None
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return None
    return body["error"].get("code")


def assert_error(response: Any, status: int | None = None, code: str | None = None) -> dict[str, Any]:
    """``response`` is a refusal in the API's error format (apps/core/errors.py): ``status`` (any
    4xx if None), a JSON body {"error": {"code", "message", "details"}} and nothing else, and
    ``code`` if given. Returns the error object."""
    if status is None:
        assert 400 <= response.status_code < 500, (response.status_code, response.content[:500])
    else:
        assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["code"], str) and error["code"], error
    assert error["code"] == error["code"].lower() and " " not in error["code"], error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["details"], dict), error
    if code is not None:
        assert error["code"] == code, error
    return error


def retry_if_sqlite_locked(call: Callable[[], T], *, seconds: float = 1.0, pause: float = 0.005) -> T:
    """``call()``, retried while SQLite answers "database table is locked".

    SQLite's in-memory test database (shared cache) answers that at once where a file database
    would wait out its busy timeout; retrying stands in for that wait, for up to ``seconds``. Each
    call is one atomic transaction, so a retry starts from scratch. PostgreSQL never takes this
    path: there the database's own locks decide the race the test is about."""
    for _ in range(round(seconds / pause)):
        try:
            return call()
        except OperationalError as exc:
            if connection.vendor != "sqlite" or "locked" not in str(exc):
                raise
            time.sleep(pause)
    raise AssertionError("SQLite stayed locked")


ROOT = Path(__file__).resolve().parents[3]


def server_modules() -> list[Path]:
    """The server's own Python modules (apps/ and synctv/), without tests and migrations: what the
    source-reading tests (every event handled, every audit action typed) walk."""
    out = []
    for base in (ROOT / "apps", ROOT / "synctv"):
        for path in sorted(base.rglob("*.py")):
            parts = set(path.relative_to(ROOT).parts)
            if "tests" in parts or "migrations" in parts or path.name.startswith("test_"):
                continue
            out.append(path)
    return out


def run_at_once(work: Callable[[int], T], count: int, *, timeout: float = 60.0) -> list[T | Exception]:
    """``work(0)`` … ``work(count - 1)`` on ``count`` threads released together by a barrier, the
    way parallel requests arrive. Returns what each returned, or the exception it raised, in
    order (the tests inspect what each contender got). Each thread closes its own database
    connection; all must have finished within ``timeout`` seconds."""
    barrier = threading.Barrier(count)
    results: list[T | Exception | None] = [None] * count

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = work(i)
        except Exception as exc:
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,), name=f"at-once-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    stuck = [thread.name for thread in threads if thread.is_alive()]
    assert not stuck, f"still running after {timeout} s: {stuck}"
    return results  # type: ignore[return-value]  # every slot was written: no thread is left
