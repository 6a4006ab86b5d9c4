"""A pytest plugin: no token, secret or key of any kind in a log line of the whole test run.

Every record that reaches the root logger during the run is formatted the way the real console
handler writes it (with the same redaction filter, apps.core.logredact) and kept; at the end of
the session the lines are searched for anything secret-shaped — a JWT (access, refresh, guest,
OIDC id token), a PEM private key, a configured encryption key or the Django secret key, a
credential in a URL's query string that escaped redaction, and every secret the test helpers
registered with :func:`register_secret` as they saw it (the loopback OIDC provider's client
secret, codes, tokens and the PKCE verifiers sent to it: tests/oidc_provider.py; the keys in
every message the test SMTP server received: tests/mailserver.py) — and the run fails with the
lines that hold one. Tests that run servers in other processes check those processes' own log
files with :func:`find_secrets` (the e-mail worker's; the browser tests' server.log, whose
console-printed mails :func:`console_mail_removed` leaves out: docs/accounts.md, "E-mail").
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable

import pytest

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}")
PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
STREAM_KEY = re.compile(r"\bsk_[A-Za-z0-9_-]{40,}")  # apps/streaming/keys.py
QUERY_CREDENTIAL = re.compile(
    r"[?&;](?:token|access_token|refresh_token|code|invite|key|secret|code_verifier|password)=(?!\[redacted\])[^&\s\"']{6,}",
    re.IGNORECASE,
)


def _configured_secrets() -> list[str]:
    from django.conf import settings

    values = [part.strip() for part in str(settings.ENCRYPTION_KEY).split(",")]
    values += [settings.SECRET_KEY, settings.RTMP_CALLBACK_SECRET, settings.HLS_SIGNING_SECRET]
    return [v for v in values if len(v) >= 16]


# Secrets the test helpers saw, by value: what each is. Shorter values are not taken (they could
# occur by chance); every real one is longer.
REGISTERED_MIN_LENGTH = 16
_registered: dict[str, str] = {}
_registered_lock = threading.Lock()
_registered_pattern: tuple[int, re.Pattern[str] | None] = (0, None)


def register_secret(value: str | None, what: str) -> None:
    """Make the scan know ``value`` (a token, key or secret a test helper issued or saw) as
    ``what`` ("an OIDC access token", ...), for the rest of the run."""
    if value and len(value) >= REGISTERED_MIN_LENGTH:
        with _registered_lock:
            _registered.setdefault(value, what)


def _registered_search() -> re.Pattern[str] | None:
    """One alternation of every registered value (longest first), rebuilt when more came in."""
    global _registered_pattern
    with _registered_lock:
        count, pattern = _registered_pattern
        if count != len(_registered):
            values = sorted(_registered, key=len, reverse=True)
            pattern = re.compile("|".join(re.escape(v) for v in values)) if values else None
            _registered_pattern = (len(values), pattern)
        return pattern


def find_secrets(lines: Iterable[str]) -> list[tuple[str, str]]:
    """(what, line) for every line holding something secret-shaped or registered."""
    found = []
    known = _configured_secrets()
    registered = _registered_search()
    for line in lines:
        for name, pattern in (
            ("a JWT", JWT),
            ("a private key", PEM),
            ("a stream key", STREAM_KEY),
            ("a query-string credential", QUERY_CREDENTIAL),
        ):
            if pattern.search(line):
                found.append((name, line))
        found.extend(("a configured key", line) for secret in known if secret in line)
        if registered is not None:
            kinds = dict.fromkeys(_registered[m] for m in registered.findall(line))
            found.extend((kind, line) for kind in kinds)
    return found


# Django's console mail backend (the embedded default, EMAIL_URL=consolemail://) writes each
# message as its MIME text, headers first, then a line of 79 dashes.
_MAIL_START = re.compile(r"^(?:Content-Type|MIME-Version): ")
_MAIL_END = "-" * 79


def console_mail_removed(lines: Iterable[str]) -> list[str]:
    """``lines`` of a server's output without the messages its console mail backend printed:
    printing each mail, links and all, is what that backend is for; a log line never starts
    with a MIME header (the log format starts with the time)."""
    kept: list[str] = []
    in_mail = False
    for line in lines:
        if in_mail:
            in_mail = line.rstrip("\n") != _MAIL_END
        elif _MAIL_START.match(line):
            in_mail = True
        else:
            kept.append(line)
    return kept


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # a record that cannot be formatted is the test's business, not ours
            pass


_recorder = _Recorder()


def _attach() -> None:
    root = logging.getLogger()
    if _recorder not in root.handlers:
        root.addHandler(_recorder)


def pytest_sessionstart(session: pytest.Session) -> None:
    # After pytest-django has configured Django (its LOGGING replaces the root's handlers).
    from apps.core.logredact import RedactSecretsFilter

    _recorder.addFilter(RedactSecretsFilter())
    _attach()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Again before every test: a test that reconfigures logging (dictConfig, a server started in
    # this process) replaces the root's handlers, and the lines after it would go unread.
    _attach()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    logging.getLogger().removeHandler(_recorder)
    found = find_secrets(_recorder.lines)
    if not found:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("=", f"{len(found)} log line(s) of this run hold a secret", red=True)
        for what, line in found[:20]:
            reporter.write_line(f"{what}: {line[:300]}")
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
