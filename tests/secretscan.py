"""A pytest plugin: no token, secret or key of any kind in a log line of the whole test run.

Every record that reaches the root logger during the run is formatted the way the real console
handler writes it (with the same redaction filter, apps.core.logredact) and kept; at the end of
the session the lines are searched for anything secret-shaped — a JWT (access, refresh, guest,
OIDC id token), a PEM private key, a configured encryption key or the Django secret key, a
credential in a URL's query string that escaped redaction — and the run fails with the lines
that hold one. Tests that run servers in other processes check those processes' own log files
with :func:`find_secrets` (the e-mail worker's, for example).
"""

from __future__ import annotations

import logging
import re

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


def find_secrets(lines: list[str]) -> list[tuple[str, str]]:
    """(what, line) for every line holding something secret-shaped."""
    found = []
    known = _configured_secrets()
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
    return found


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
