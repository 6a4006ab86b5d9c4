"""apps/core/middleware.py: the JSON API skips the browser-only middleware (sessions, cookie
login, messages); pages and the admin keep it, CSRF included; both in sync and async mode."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, Client

from apps.accounts.models import Role
from apps.accounts.tests.factories import PASSWORD, make_user

pytestmark = pytest.mark.django_db


def admin_user():
    user, _ = make_user()
    user.role = Role.ROOT  # is_staff / is_superuser follow the role
    user.save()
    return user


def test_an_api_request_touches_no_session_and_sets_no_cookie():
    _, pair = make_user()
    r = Client().get("/api/v1/users/me", HTTP_AUTHORIZATION=f"Bearer {pair.access}")
    assert r.status_code == 200, r.content
    assert not hasattr(r.wsgi_request, "session")
    assert not hasattr(r.wsgi_request, "_messages")
    assert r.cookies == {}
    assert "Cookie" not in r.get("Vary", "")
    # Headers every response gets still come from the middleware that runs for all requests.
    assert r["X-Frame-Options"] == "DENY"
    assert r["X-Content-Type-Options"] == "nosniff"


def test_a_session_cookie_does_not_log_anyone_in_to_the_api():
    user = admin_user()
    c = Client()
    c.force_login(user)
    r = c.get("/api/v1/users/me")
    assert r.status_code == 401, r.content


def test_the_admin_still_has_sessions_login_and_csrf():
    user = admin_user()
    c = Client(enforce_csrf_checks=True)
    page = c.get("/admin/login/")
    assert page.status_code == 200
    assert "csrftoken" in page.cookies
    refused = c.post("/admin/login/", {"username": user.username, "password": PASSWORD})
    assert refused.status_code == 403  # no CSRF token in the form
    token = page.cookies["csrftoken"].value
    ok = c.post(
        "/admin/login/?next=/admin/",
        {"username": user.username, "password": PASSWORD, "csrfmiddlewaretoken": token},
    )
    assert ok.status_code == 302 and ok["Location"] == "/admin/", ok.content[:300]
    assert c.get("/admin/").status_code == 200


def test_async_mode_serves_the_api_and_the_admin():
    _, pair = make_user()

    async def requests():
        c = AsyncClient()
        api = await c.get("/api/v1/users/me", headers={"authorization": f"Bearer {pair.access}"})
        page = await c.get("/admin/login/")
        return api, page

    api, page = async_to_sync(requests)()
    assert api.status_code == 200, api.content
    assert api.cookies == {}
    assert page.status_code == 200 and "csrftoken" in page.cookies
