"""The log scan (tests/secretscan.py) also knows what the test helpers saw: the loopback OIDC
provider's client secret, every code and token it issued and every PKCE verifier sent to it
(tests/oidc_provider.py), every key in a message the test SMTP server received
(tests/mailserver.py); and the browser tests' server.log is scanned when the server stops
(tests/browser_support.py), without the mails the console backend printed there."""

from __future__ import annotations

import http.client
import io
import json
import secrets
from email.message import EmailMessage
from urllib.parse import urlencode, urlsplit

import pytest
from django.core.mail import EmailMultiAlternatives
from django.core.mail.backends.console import EmailBackend as ConsoleBackend

from tests import oidc_provider as loopback
from tests.browser_support import assert_log_clean
from tests.mailserver import Delivered, register_keys
from tests.secretscan import console_mail_removed, find_secrets, register_secret

_oidc_server = loopback._oidc_server
oidc_provider = loopback.oidc_provider


def kinds(line: str) -> list[str]:
    return [what for what, _line in find_secrets([line])]


def test_a_registered_secret_is_found_wherever_it_stands():
    value = secrets.token_urlsafe(24)
    assert kinds(f"something {value} happened") == []
    register_secret(value, "a test secret")
    assert kinds(f"something {value} happened") == ["a test secret"]
    assert kinds(f"prefix{value}suffix") == ["a test secret"]
    register_secret("short", "too short to be told from chance")
    assert kinds("a short line") == []


def test_the_oidc_client_secret_is_known_from_the_start():
    assert kinds(f"client auth {loopback.CLIENT_SECRET}") == ["the OIDC client secret"]


def _token_exchange(provider, verifier: str) -> tuple[str, dict]:
    """authorize (S256 challenge of ``verifier``) then /token, as SyncTV's server does."""
    redirect = "http://testserver/oauth/callback/oidc/"
    query = {
        "client_id": loopback.CLIENT_ID,
        "response_type": "code",
        "redirect_uri": redirect,
        "code_challenge": loopback.s256(verifier),
        "code_challenge_method": "S256",
        "state": "s" * 20,
    }
    _back, answer = loopback.follow_authorize(f"{provider.base}/authorize?{urlencode(query)}")
    form = {
        "grant_type": "authorization_code",
        "code": answer["code"],
        "redirect_uri": redirect,
        "code_verifier": verifier,
        "client_id": loopback.CLIENT_ID,
        "client_secret": loopback.CLIENT_SECRET,
    }
    conn = http.client.HTTPConnection(urlsplit(provider.base).netloc, timeout=10)
    try:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        conn.request("POST", "/token", urlencode(form), headers)
        response = conn.getresponse()
        assert response.status == 200
        return answer["code"], json.loads(response.read())
    finally:
        conn.close()


def test_every_code_token_and_verifier_of_the_oidc_provider_is_known(oidc_provider):
    verifier = secrets.token_urlsafe(64)
    code, tokens = _token_exchange(oidc_provider, verifier)
    assert kinds(f"exchanging {code}") == ["an OIDC authorization code"]
    assert kinds(f"sent verifier {verifier}") == ["a PKCE code verifier"]
    assert kinds(f"got {tokens['access_token']}") == ["an OIDC access token"]
    assert kinds(f"got {tokens['refresh_token']}") == ["an OIDC refresh token"]
    assert kinds(f"got {tokens['id_token']}") == ["a JWT", "an OIDC id token"]


def _message(text: str, html: str) -> Delivered:
    message = EmailMessage()
    message["From"] = "synctv@example.com"
    message["To"] = "ada@example.com"
    message["Subject"] = "Your link"
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return Delivered("synctv@example.com", ["ada@example.com"], message.as_bytes())


def test_every_key_in_a_delivered_message_is_known():
    verify = f"MQ:{secrets.token_urlsafe(6)}:{secrets.token_urlsafe(30)}"
    reset = f"x1-{secrets.token_hex(4)}-{secrets.token_hex(16)}"
    text = f"Confirm: http://tv.example.com/verify-email/?key={verify}\n"
    html = f'<a href="http://tv.example.com/reset-password/?key={reset}">Reset</a>'
    assert register_keys(_message(text, html)) == [verify, reset]
    # Standing alone, not after "?key=" (which the query-string rule would catch anyway).
    assert kinds(f"confirm with {verify}") == ["a verification key"]
    assert kinds(f"POST body key {reset} refused") == ["a password reset key"]


def _console_output(body: str) -> str:
    stream = io.StringIO()
    mail = EmailMultiAlternatives("Your link", body, "synctv@example.com", ["ada@example.com"])
    mail.attach_alternative(f"<p>{body}</p>", "text/html")
    ConsoleBackend(stream=stream).send_messages([mail])
    return stream.getvalue()


def test_mails_the_console_backend_printed_are_left_out_and_nothing_else():
    link = f"http://tv.example.com/verify-email/?key=MQ:{secrets.token_urlsafe(30)}"
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhYmMiLCJleHAiOjE3MDB9.c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWc"
    before = "2026-01-01 10:00:00,000 WARNING apps.x starting"
    after = f"2026-01-01 10:00:01,000 WARNING apps.x leaked {jwt}"
    lines = [before, *_console_output(f"Open {link}").splitlines(), after]
    assert find_secrets(lines)  # the printed mail holds the link
    kept = console_mail_removed(lines)
    assert kept == [before, after]
    assert [what for what, _ in find_secrets(kept)] == ["a JWT"]


def test_a_server_log_holding_a_secret_fails_the_browser_servers_stop(tmp_path):
    log = tmp_path / "server.log"
    link = f"http://127.0.0.1:1/reset-password/?key=x1-{secrets.token_hex(20)}"
    log.write_text("2026-01-01 WARNING apps.x fine\n" + _console_output(f"Reset: {link}"))
    assert_log_clean(log)  # the printed mail alone is what the console backend is for
    with log.open("a") as out:
        out.write(f"2026-01-01 WARNING apps.x GET /reset-password/?key=x1-{secrets.token_hex(20)}\n")
    with pytest.raises(AssertionError, match="hold a secret"):
        assert_log_clean(log)
