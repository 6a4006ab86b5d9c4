"""apps.core.logredact: credentials in query strings are masked in log records, nothing else."""

from __future__ import annotations

import logging

import pytest

from apps.core.logredact import RedactSecretsFilter, redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET /ws/rooms/r1/?token=abc.def-ghi HTTP/1.1", "GET /ws/rooms/r1/?token=[redacted] HTTP/1.1"),
        ("/cb/?code=xyz&state=s&TOKEN=t", "/cb/?code=[redacted]&state=s&TOKEN=[redacted]"),
        ("token=abc&page=2", "token=[redacted]&page=2"),  # gunicorn's bare query string atom
        ("/x/?a=1;access_token=q#frag", "/x/?a=1;access_token=[redacted]#frag"),
        ("GET /rooms/r1/?invite=cwOs69OCE-xA HTTP/1.1", "GET /rooms/r1/?invite=[redacted] HTTP/1.1"),
        # The e-mail links: a reset key is the account's password for an hour.
        ("GET /reset-password/?key=MQ-cx3k9-4b1f HTTP/1.1", "GET /reset-password/?key=[redacted] HTTP/1.1"),
        ("GET /verify-email/?key=MQ:1vXY:abc HTTP/1.1", "GET /verify-email/?key=[redacted] HTTP/1.1"),
        ("/rooms/?monkey=1&key=k", "/rooms/?monkey=1&key=[redacted]"),  # only the whole name
        # The RTMP server's callbacks carry their shared secret in the URL.
        (
            "POST /internal/rtmp/on_publish?secret=Zx-9_q HTTP/1.1",
            "POST /internal/rtmp/on_publish?secret=[redacted] HTTP/1.1",
        ),
        # A URL inside another's parameter (the login page's ?next= keeps the room's invite link).
        (
            "GET /login/?next=%2Frooms%2Fr1%2F%3Finvite%3DcwOs69OCE-xA%26x%3D1 HTTP/1.1",
            "GET /login/?next=%2Frooms%2Fr1%2F%3Finvite=[redacted]%26x%3D1 HTTP/1.1",
        ),
        # Percent-encoded names and separators read the same to a query parser.
        ("/ws/rooms/r1/?%74oken=SECRET&x=1", "/ws/rooms/r1/?%74oken=[redacted]&x=1"),
        ("/x/?a=1&%54OKEN%3DSECRET", "/x/?a=1&%54OKEN=[redacted]"),
        # Not a query parameter: left alone.
        ("socket closed with code=4401", "socket closed with code=4401"),
        ("/x/?mytoken=1&tokens=2", "/x/?mytoken=1&tokens=2"),
    ],
)
def test_redact(text, expected):
    assert redact(text) == expected


def test_filter_keeps_positional_and_mapping_args_usable():
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, "", 0, '%s - "%s %s"', ("1.2.3.4", "GET", "/?token=s"), None
    )
    RedactSecretsFilter().filter(record)
    assert record.args == ("1.2.3.4", "GET", "/?token=[redacted]")
    assert record.getMessage() == '1.2.3.4 - "GET /?token=[redacted]"'
    record = logging.LogRecord(
        "gunicorn.access",
        logging.INFO,
        "",
        0,
        "%(r)s %(q)s",
        ({"r": "GET /?token=s", "q": "token=s", "s": 200},),
        None,
    )
    RedactSecretsFilter().filter(record)
    assert record.getMessage() == "GET /?token=[redacted] token=[redacted]"


def test_gunicorn_atoms_keep_their_lookups():
    """gunicorn's access log formats a dict subclass that answers header atoms and missing atoms
    (SafeAtoms); the filter must redact it in place, not swap in a plain dict that raises
    KeyError for them and loses the line."""
    from gunicorn.glogging import SafeAtoms

    atoms = SafeAtoms({"r": "GET /?token=s HTTP/1.1", "q": "token=s", "{x-forwarded-for}i": "203.0.113.9"})
    record = logging.LogRecord(
        "gunicorn.access", logging.INFO, "", 0, "%(r)s %(q)s %({X-Forwarded-For}i)s %(M)s", (), None
    )
    record.args = atoms
    RedactSecretsFilter().filter(record)
    assert record.getMessage() == "GET /?token=[redacted] HTTP/1.1 token=[redacted] 203.0.113.9 -"


@pytest.mark.parametrize(
    ("msg", "args", "line"),
    [
        ("GET /x/?token=%s done", ("abcdef123456",), "GET /x/?token=[redacted] done"),
        ("callback %s?code=%s&state=%s", ("/cb/", "c0de", "st"), "callback /cb/?code=[redacted]&state=st"),
        (
            "link %(url)s?key=%(key)s",
            {"url": "/reset-password/", "key": "MQ-k3y"},
            "link /reset-password/?key=[redacted]",
        ),
    ],
)
def test_a_credential_passed_as_an_argument_is_redacted_and_the_line_still_formats(msg, args, line):
    """``token=%s`` with the value as an argument: redacting the placeholder alone left an
    argument over, and the handler failed to format the line (it was lost)."""
    record = logging.LogRecord("apps.x", logging.INFO, __file__, 1, msg, args, None)
    RedactSecretsFilter().filter(record)
    assert record.getMessage() == line


def test_an_object_argument_that_prints_a_credential_is_redacted():
    """httpx logs "HTTP Request: %s %s" with its URL object, not a string: the token in it used to
    reach the log line (found by tests/secretscan.py over a whole test run)."""
    import httpx

    url = httpx.URL("http://127.0.0.1:8000/api/v1/users/me?token=eyJhbGciOi.eyJzdWIi.sig&page=2")
    record = logging.LogRecord("httpx", logging.INFO, __file__, 1, "HTTP Request: %s %s", ("GET", url), None)
    RedactSecretsFilter().filter(record)
    assert (
        record.getMessage()
        == "HTTP Request: GET http://127.0.0.1:8000/api/v1/users/me?token=[redacted]&page=2"
    )
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "%s took %s s", (httpx.URL("http://h/p"), 0.5), None
    )
    RedactSecretsFilter().filter(record)
    assert record.args[0] == httpx.URL("http://h/p")  # nothing to hide: the object itself stays
