"""tests/secretscan.py finds what must never be in a log line, and leaves redacted lines alone."""

from __future__ import annotations

import base64

import pytest
from django.test import override_settings

from tests.secretscan import find_secrets

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhYmMiLCJleHAiOjE3MDB9.c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWc"


@pytest.mark.parametrize(
    ("line", "what"),
    [
        (f"auth failed for {JWT}", "a JWT"),
        ("loaded -----BEGIN PRIVATE KEY----- MIIE...", "a private key"),
        ("GET /ws/rooms/r1/?token=abcdef123456 HTTP/1.1", "a query-string credential"),
        ("GET /reset-password/?key=MQ-cx3k9-4b1f HTTP/1.1", "a query-string credential"),
        ("POST /token code_verifier=0123456789abcdef", None),  # not in a URL: a body is not logged
    ],
)
def test_secret_shapes_are_found(line, what):
    found = [name for name, _line in find_secrets([line])]
    assert found == ([what] if what else [])


def test_configured_keys_are_found_and_redacted_lines_are_not():
    key = base64.b64encode(b"k" * 32).decode()
    with override_settings(ENCRYPTION_KEY=f"{key}"):
        assert [n for n, _ in find_secrets([f"key is {key}"])] == ["a configured key"]
        assert find_secrets(["GET /ws/rooms/r1/?token=[redacted] HTTP/1.1", "user 42 logged in"]) == []


def test_the_run_records_every_log_line_as_the_console_writes_it():
    import logging

    from tests import secretscan

    logging.getLogger("apps.test").warning("GET /x/?token=%s done", "abcdef123456")
    assert secretscan._recorder in logging.getLogger().handlers
    assert secretscan._recorder.lines[-1] == "apps.test WARNING GET /x/?token=[redacted] done"


def test_stream_keys_and_the_streaming_secrets_are_found():
    from django.conf import settings

    from apps.streaming.keys import new_key

    assert [n for n, _ in find_secrets([f"publishing with {new_key()}"])] == ["a stream key"]
    assert [n for n, _ in find_secrets([f"signing with {settings.HLS_SIGNING_SECRET}"])] == [
        "a configured key"
    ]
