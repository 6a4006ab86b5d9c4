"""The web page's server side: the pages render, carry the strict Content-Security-Policy and
pass settings to scripts through data- attributes only. (The page itself is tested in a real
browser in tests/test_browser.py.)"""

from __future__ import annotations

import re

import pytest
from django.test import override_settings

from apps.web.middleware import build_policy

PAGES = ["/", "/login/", "/signup/", "/rooms/Room_id-123/", "/oauth/github/callback/"]


@pytest.mark.parametrize("path", PAGES)
def test_page_renders_with_strict_csp(client, path):
    r = client.get(path)
    assert r.status_code == 200
    assert r["Content-Type"].startswith("text/html")
    csp = dict(part.strip().split(" ", 1) for part in r["Content-Security-Policy"].split(";"))
    assert csp["script-src"] == "'self'"
    assert csp["style-src"] == "'self'"
    assert csp["frame-ancestors"] == "'none'"
    assert csp["object-src"] == "'none'"
    assert "unsafe" not in r["Content-Security-Policy"]
    assert set(csp["media-src"].split()) == {"'self'", "http:", "https:", "blob:"}
    assert {"'self'", "ws:", "wss:"} <= set(csp["connect-src"].split())


@pytest.mark.parametrize("path", PAGES)
def test_no_inline_script_or_style(client, path):
    html = client.get(path).content.decode()
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert re.search(r'\bsrc="/static/', tag), tag
    assert not re.search(r"<script\b[^>]*>\s*[^<\s]", html), "inline script body"
    assert "<style" not in html
    assert not re.search(r"\son[a-z]+=", html), "inline event handler"
    assert not re.search(r"\sstyle=", html), "inline style attribute"


def test_room_page_hooks(client):
    html = client.get("/rooms/abc123/").content.decode()
    for hook in (
        "player", "play-toggle", "seek", "add-movie-url", "add-movie-name", "add-movie-submit",
        "playlist", "chat-log", "chat-input", "chat-send", "members", "join-password",
        "join-submit", "guest-name", "guest-submit", "connection-state",
    ):  # fmt: skip
        assert f'data-testid="{hook}"' in html, hook
    assert 'data-room-id="abc123"' in html
    # Gated controls ship inside <template>: absent from the document until permitted.
    assert re.search(r'<template data-part="play-toggle" data-requires="PLAY_CONTROL">', html)


def test_auth_and_home_hooks(client):
    for path, hooks in (
        ("/login/", ["auth-submit", "auth-error"]),
        ("/signup/", ["auth-submit", "auth-error"]),
        ("/", ["room-search", "room-create-name", "room-create-submit"]),
    ):
        html = client.get(path).content.decode()
        for hook in hooks:
            assert f'data-testid="{hook}"' in html, (path, hook)
    signup = client.get("/signup/").content.decode()
    for name in ("username", "password", "email"):
        assert f'name="{name}"' in signup


@override_settings(WS_PUBLIC_URL="wss://ws.example.com")
def test_websocket_url_travels_in_a_data_attribute(client):
    html = client.get("/rooms/abc/").content.decode()
    assert 'data-ws-url="wss://ws.example.com"' in html


def test_bad_ids_are_not_found(client):
    assert client.get("/rooms/bad.id/").status_code == 404
    assert client.get("/oauth/Bad.Provider/callback/").status_code == 404


def test_pages_answer_get_and_head_only(client):
    assert client.head("/").status_code == 200
    assert client.post("/login/").status_code in (403, 405)


@pytest.mark.django_db
def test_admin_and_api_docs_are_left_alone(client):
    # Third-party pages that need inline script/style get no policy from us.
    assert "Content-Security-Policy" not in client.get("/admin/login/")
    # The API (JSON) gets the policy: harmless there, and it stops a response rendered as HTML.
    assert client.get("/api/v1/rooms")["Content-Security-Policy"] == build_policy()


@pytest.mark.django_db
def test_api_routes_still_win(client):
    r = client.get("/api/v1/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
