"""OAuth2 sign-in around the happy path: bad input on every new endpoint (a 4xx in the error
format, never a 500, and nothing spent or created), the per-IP rate limit, the admin's view of
linked providers (never their tokens) and the state store's single use on the real cache.
"""

from __future__ import annotations

import json

import pytest
from allauth.socialaccount.models import SocialAccount
from django.test import Client

from apps.accounts.models import ProviderToken, Role, User
from apps.accounts.oauth import services as oauth_services
from apps.accounts.oauth.state import state_stash, state_take
from apps.accounts.tests.factories import make_user
from apps.audit.models import AuditEvent
from apps.core.tests.helpers import admin_url, assert_error, client_for
from tests import oidc_provider as loopback

pytestmark = pytest.mark.django_db

_oidc_server = loopback._oidc_server
oidc_provider = loopback.oidc_provider
oidc_settings = loopback.oidc_settings

START = "/api/v1/auth/oauth/oidc/start"
CALLBACK = "/api/v1/auth/oauth/oidc/callback"


def _post_raw(path: str, raw: bytes | str, content_type: str = "application/json"):
    return client_for(raise_request_exception=False).generic("POST", path, raw, content_type=content_type)


BAD_CALLBACK_BODIES = {
    "empty_object": {},
    "no_state": {"code": "abc"},
    "no_code": {"state": "abc"},
    "null_values": {"code": None, "state": None},
    "numbers": {"code": 1, "state": 2},
    "lists": {"code": ["a"], "state": ["b"]},
    "objects": {"code": {"a": 1}, "state": {"b": 2}},
    "empty_strings": {"code": "", "state": ""},
    "huge_code": {"code": "a" * 100_000, "state": "abc"},
    "huge_state": {"code": "abc", "state": "s" * 10_000},
    "state_with_nul": {"code": "abc", "state": "ab\x00c"},
    "state_not_base64url": {"code": "abc", "state": "../../etc/passwd"},
    "state_unicode": {"code": "abc", "state": "ünïcödé"},
}


@pytest.mark.parametrize("name", BAD_CALLBACK_BODIES)
def test_callback_bad_bodies_are_400(oidc_settings, name):
    state = client_for().post(START, {}, format="json").json()["state"]
    r = _post_raw(CALLBACK, json.dumps(BAD_CALLBACK_BODIES[name]))
    assert_error(r, 400, "invalid")
    assert oidc_settings.token_requests == []
    # Nothing was spent: the real state still works (is still in the cache).
    assert state_take(state) is not None


@pytest.mark.parametrize(
    ("raw", "content_type", "status"),
    [
        ("{not json", "application/json", 400),
        ("[" * 100_000, "application/json", 400),
        ("[]", "application/json", 400),
        ('"a string"', "application/json", 400),
        ("null", "application/json", 400),
        ("code=a&state=b", "application/x-www-form-urlencoded", 415),
        (b"\x00\xff" * 100, "application/octet-stream", 415),
    ],
)
@pytest.mark.parametrize("path", [START, CALLBACK])
def test_start_and_callback_refuse_malformed_bodies(oidc_settings, path, raw, content_type, status):
    r = _post_raw(path, raw, content_type)
    assert_error(r, status)
    assert User.objects.count() == 0


@pytest.mark.parametrize("provider", ["nope", "OIDC", "openid_connect", "a" * 2000, "%00", "github"])
@pytest.mark.parametrize("action", ["start", "callback"])
def test_unknown_provider_is_404(oidc_settings, provider, action):
    body = {"code": "abc", "state": "abc"} if action == "callback" else {}
    r = client_for(raise_request_exception=False).post(
        f"/api/v1/auth/oauth/{provider}/{action}", body, format="json"
    )
    assert_error(r, 404, "not_found")


def test_callback_on_an_unknown_provider_does_not_spend_the_state(oidc_settings):
    state = client_for().post(START, {}, format="json").json()["state"]
    r = client_for().post("/api/v1/auth/oauth/nope/callback", {"code": "a", "state": state}, format="json")
    assert_error(r, 404, "not_found")
    assert state_take(state) is not None


def test_wrong_methods_are_405_in_the_error_format(oidc_settings):
    client = client_for(raise_request_exception=False)
    assert_error(client.get(START), 405)
    assert_error(client.get(CALLBACK), 405)
    assert_error(client.post("/api/v1/auth/providers", {}, format="json"), 405)


def test_identities_bad_input(oidc_settings):
    _user, pair = make_user("grace")
    client = client_for(pair.access, raise_request_exception=False)
    assert_error(client.delete("/api/v1/users/me/identities/" + "x" * 2000), 404, "not_found")
    assert_error(client.delete("/api/v1/users/me/identities/%00"), 404, "not_found")
    assert_error(client.post("/api/v1/users/me/identities", {}, format="json"), 405)
    assert_error(client.get("/api/v1/users/me/identities/oidc"), 405)
    r = client.generic("GET", "/api/v1/users/me/identities", "[" * 10_000, content_type="application/json")
    assert r.status_code == 200 and r.json() == []


def test_providers_ignores_bodies_and_queries(oidc_settings):
    client = client_for()
    r = client.generic("GET", "/api/v1/auth/providers?a=%00&b=[", "{junk", content_type="application/json")
    assert r.status_code == 200 and r.json() == [{"id": "oidc", "name": "Test OIDC"}]


def test_start_and_callback_are_rate_limited_per_ip(oidc_settings, settings):
    settings.RATELIMIT_ENABLE = True
    settings.RATELIMITS = {**settings.RATELIMITS, "oauth_ip": "3/m"}
    for _ in range(3):
        assert client_for().post(START, {}, format="json").status_code == 200
    assert_error(client_for().post(START, {}, format="json"), 429, "rate_limited")
    r = client_for().post(CALLBACK, {"code": "a", "state": "b"}, format="json")
    assert_error(r, 429, "rate_limited")
    # Another address has its own budget.
    other = client_for(REMOTE_ADDR="198.51.100.7")
    assert other.post(START, {}, format="json").status_code == 200


def test_state_is_single_use_and_bound_to_its_provider():
    state = state_stash(provider="oidc", code_verifier="v" * 64)
    pending = state_take(state)
    assert pending is not None and (pending.provider, pending.code_verifier) == ("oidc", "v" * 64)
    assert state_take(state) is None
    assert state_take("never-issued") is None


# --- the admin ---------------------------------------------------------------------------------------


def test_admin_user_page_shows_linked_providers_never_tokens(oidc_settings):
    client = client_for()
    start = client.post(START, {}, format="json").json()
    _back, query = loopback.follow_authorize(start["authorize_url"])
    code, state = query["code"], query["state"]
    result = client.post(CALLBACK, {"code": code, "state": state}, format="json").json()
    user = User.objects.get(pk=result["user"]["id"])
    access_token, refresh_token = oauth_services.provider_token_read(ProviderToken.objects.get())

    root = User.objects.create(username="root", role=Role.ROOT)
    admin = Client()
    admin.force_login(root)
    page = admin.get(admin_url(user))
    assert page.status_code == 200
    html = page.content.decode()
    assert "linked providers" in html.lower() and "oidc-user-1" in html
    assert access_token not in html and refresh_token not in html
    assert SocialAccount.objects.filter(user=user).count() == 1
    assert AuditEvent.objects.filter(user_id=user.pk).exists()


def test_a_provider_configured_twice_is_a_clean_503_not_a_crash(oidc_settings, caplog):
    """An operator who adds a "Social application" in the admin for a provider the environment
    already configures: allauth cannot choose between them. The API says so; nothing crashes."""
    from allauth.socialaccount.models import SocialApp

    SocialApp.objects.create(provider="openid_connect", provider_id="oidc", name="again", client_id="x")
    r = client_for(raise_request_exception=False).post(START, {}, format="json")
    assert_error(r, 503, "provider_unavailable")
    assert "configured twice" in caplog.text
