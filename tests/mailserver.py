"""A real SMTP server on loopback (aiosmtpd) and a real Celery worker process, for tests.

Fixtures (import them into a test module or a conftest.py to use them):

- ``smtp_server``: a :class:`MailServer` listening on 127.0.0.1; it records every accepted message
  (``delivered``), can answer the next N messages with a 4xx (``fail_next``) and refuse an address
  with a 5xx (``refuse``). ``url`` is its ``EMAIL_URL``.
- ``smtp_backend``: this process's Django settings pointed at ``smtp_server`` (in-process sends).
- ``celery_worker``: the Procfile's ``worker`` command, started for real against the Redis broker
  of the test run and the test database, with ``EMAIL_URL`` pointing at ``smtp_server``. It needs
  a ``transaction=True`` test (the worker sees only committed rows) on PostgreSQL and Redis.
"""

from __future__ import annotations

import email
import email.policy
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
from aiosmtpd.controller import Controller

from tests.procs import base_env, free_port, procfile_command, running
from tests.secretscan import register_secret

# aiosmtpd logs every line of every message at DEBUG (logger "mail.log"): the bodies hold keys
# and links, and no key may reach a log line of the test run (docs/accounts.md, "E-mail"). Its own
# level, so a test that turns the root logger to DEBUG (caplog) does not bring them back.
logging.getLogger("mail.log").setLevel(logging.WARNING)

# The verification and reset links in a message (their keys act as passwords).
_KEY_LINK = re.compile(r"/(verify-email|reset-password)/\?key=([^\s\"'<>&]+)")

SMTP_TRANSIENT = "451 4.3.0 Temporary failure, please try again later"
SMTP_REFUSED = "550 5.1.1 Recipient address rejected: no such user"


@dataclass(frozen=True)
class Delivered:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])

    @property
    def text(self) -> str:
        return self.message.get_body(("plain",)).get_content()

    @property
    def html(self) -> str:
        return self.message.get_body(("html",)).get_content()


def register_keys(message: Delivered) -> list[str]:
    """Tell the run's log scan (tests/secretscan.py) every key in ``message``'s links, as written
    and URL-decoded; returns them."""
    keys = []
    for body in (message.text, message.html):
        for page, key in _KEY_LINK.findall(body):
            what = "a verification key" if page == "verify-email" else "a password reset key"
            for value in dict.fromkeys((key, unquote(key))):
                register_secret(value, what)
                keys.append(value)
    return list(dict.fromkeys(keys))


class MailServer:
    """aiosmtpd handler and controller in one: the server runs on its own thread and event loop."""

    def __init__(self) -> None:
        self.delivered: list[Delivered] = []
        self.deferred: list[Delivered] = []  # messages answered with a 4xx (fail_next)
        self._fail_next = 0
        self._refused: set[str] = set()
        self._changed = threading.Condition()
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def fail_next(self, count: int) -> None:
        """Answer the next ``count`` messages with a transient 451 after DATA."""
        with self._changed:
            self._fail_next = count

    def refuse(self, address: str) -> None:
        """Refuse ``address`` at RCPT TO with a permanent 550."""
        with self._changed:
            self._refused.add(address.lower())

    def wait_for(self, count: int, *, timeout: float = 30) -> list[Delivered]:
        """Block until ``count`` messages were delivered; returns all of them."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.delivered) >= count, timeout=timeout):
                raise AssertionError(
                    f"{len(self.delivered)} of {count} messages delivered within {timeout}s "
                    f"({len(self.deferred)} deferred)"
                )
            return list(self.delivered)

    # aiosmtpd hooks
    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        with self._changed:
            if address.lower() in self._refused:
                return SMTP_REFUSED
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = Delivered(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content))
        try:
            register_keys(message)
        except (AttributeError, KeyError, LookupError):  # not our text + HTML shape: no keys to learn
            pass
        with self._changed:
            if self._fail_next > 0:
                self._fail_next -= 1
                self.deferred.append(message)
                self._changed.notify_all()
                return SMTP_TRANSIENT
            self.delivered.append(message)
            self._changed.notify_all()
        return "250 2.0.0 Message accepted for delivery"


def serving() -> Iterator[MailServer]:
    """A :class:`MailServer` listening for as long as the generator runs: the body of
    ``smtp_server`` (one per test) and of any fixture of a wider scope, e.g.
    ``mailbox = pytest.fixture(serving, scope="module", name="mailbox")``."""
    server = MailServer()
    server.controller.start()
    try:
        yield server
    finally:
        server.controller.stop()


smtp_server = pytest.fixture(serving, name="smtp_server")


@pytest.fixture
def smtp_backend(settings, smtp_server):
    """Send from this process over SMTP to ``smtp_server`` (the test runner's default is locmem)."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = smtp_server.port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    return smtp_server


class Worker:
    def __init__(self, proc, log: Path, env: dict[str, str]) -> None:
        self.proc = proc
        self.log = log
        self.env = env  # the worker's environment: run other commands against the same services

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_log(self, text: str, *, count: int = 1, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.output().count(text) < count:
            assert self.proc.poll() is None, (
                f"worker exited with {self.proc.returncode}:\n{self.output()[-4000:]}"
            )
            assert time.monotonic() < deadline, (
                f"no {count}x {text!r} within {timeout}s:\n{self.output()[-4000:]}"
            )
            time.sleep(0.2)


def _test_database_url() -> str:
    from django.conf import settings
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.fail("the worker shares the test database: run with DATABASE_URL on PostgreSQL")
    db = settings.DATABASES["default"]
    auth = quote(db.get("USER") or "postgres", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    return f"postgres://{auth}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


@pytest.fixture
def celery_worker(transactional_db, smtp_server, tmp_path):
    """A real ``celery -A synctv worker`` (the Procfile's line) on this run's broker and test
    database, sending to ``smtp_server``, retrying after about a second instead of 8 s."""
    from django.conf import settings

    from synctv.celery import app

    if not settings.REDIS_URL or settings.CELERY_BROKER_URL.startswith("memory"):
        pytest.fail("the worker needs the Redis broker: set REDIS_URL and CELERY_BROKER_URL")
    # Tasks other tests queued without a worker would otherwise be consumed first.
    app.control.purge()
    key = settings.ENCRYPTION_KEY
    env = base_env(
        DATABASE_URL=_test_database_url(),
        REDIS_URL=settings.REDIS_URL,
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        # The bodies are encrypted by this process and decrypted by the worker.
        SYNCTV_ENCRYPTION_KEY=",".join(key) if isinstance(key, list | tuple) else key,
        DJANGO_SECRET_KEY=settings.SECRET_KEY,
        PUBLIC_URL=settings.PUBLIC_URL,
        DEFAULT_FROM_EMAIL=settings.DEFAULT_FROM_EMAIL,
        EMAIL_URL=smtp_server.url,
        EMAIL_RETRY_DELAY="1",
        SYNCTV_VAR_DIR=str(tmp_path / "worker-var"),
        LOG_LEVEL="DEBUG",
        CELERY_CONCURRENCY="2",
    )
    log = tmp_path / f"worker-{uuid.uuid4().hex[:6]}.log"
    with running(procfile_command("worker") + " --loglevel DEBUG", env=env, log=log) as proc:
        worker = Worker(proc, log, env)
        worker.wait_log(" ready.", timeout=60)
        yield worker
