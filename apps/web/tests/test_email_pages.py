"""The e-mail pages (issue 12, item 6): /forgot-password/, /reset-password/?key=,
/verify-email/?key= render with the strict policy, carry the contract's hooks, and render nothing
of the key (the page's script reads it from the URL and posts it to the API)."""

from __future__ import annotations

import re

import pytest

EMAIL_PAGES = ["/forgot-password/", "/reset-password/?key=abc-def-123", "/verify-email/?key=MQ:1x:abc"]


@pytest.mark.parametrize("path", EMAIL_PAGES)
def test_pages_render_with_strict_csp_and_no_inline_code(client, path):
    r = client.get(path)
    assert r.status_code == 200
    policy = r["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe" not in policy
    html = r.content.decode()
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts and all('src="/static/' in tag for tag in scripts)
    assert any("email_pages.js" in tag for tag in scripts)
    assert not re.search(r"<script\b[^>]*>\s*[^<\s]", html)
    assert "<style" not in html and not re.search(r"\s(on[a-z]+|style)=", html)


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/forgot-password/", ["email"]),
        ("/reset-password/?key=k", ["password"]),
        ("/verify-email/?key=k", []),
    ],
)
def test_hooks(client, path, fields):
    html = client.get(path).content.decode()
    for hook in ("auth-submit", "auth-message", "auth-error"):
        assert f'data-testid="{hook}"' in html, (path, hook)
    for name in fields:
        assert f'name="{name}"' in html, (path, name)


@pytest.mark.parametrize("path", EMAIL_PAGES)
def test_the_key_is_not_rendered(client, path):
    html = client.get(path).content.decode()
    assert "abc-def-123" not in html and "MQ:1x:abc" not in html


def test_login_links_to_forgot_password_and_signup_has_a_message(client):
    login = client.get("/login/").content.decode()
    assert re.search(r'<a href="/forgot-password/" data-testid="forgot-password">', login)
    assert 'data-testid="auth-message"' in client.get("/signup/").content.decode()


@pytest.mark.parametrize("path", ["/forgot-password/", "/reset-password/", "/verify-email/"])
def test_get_and_head_only(client, path):
    assert client.head(path).status_code == 200
    assert client.post(path).status_code == 405
