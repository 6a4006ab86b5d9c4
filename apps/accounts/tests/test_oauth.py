"""OAuth2 sign-in with PKCE, end to end against the loopback OpenID Connect provider
(tests/oidc_provider.py): start → the provider's /authorize → code → callback (our server calls
its token endpoint with the verifier, then userinfo) → our own token pair.

docs/accounts.md, "OAuth2 sign-in"; docs/security.md, "OAuth2 with PKCE".
"""

from __future__ import annotations

import base64
import hashlib
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from allauth.account.models import EmailAddress
from allauth.socialaccount.models import SocialAccount
from django.db import connection

from apps.accounts import services as account_services
from apps.accounts.models import ProviderToken, Role, User
from apps.accounts.oauth import services as oauth_services
from apps.accounts.oauth.state import PREFIX, state_take
from apps.accounts.tests.factories import TEST_ORIGIN, make_user
from apps.audit.actions import AuditAction
from apps.audit.models import AuditEvent
from apps.core import crypto
from apps.core.tests.helpers import assert_error, client_for, run_at_once
from tests import oidc_provider as loopback
from tests.oidc_provider import LoopbackProvider, provider_settings

# The loopback provider's fixtures (tests/oidc_provider.py).
_oidc_server = loopback._oidc_server
oidc_provider = loopback.oidc_provider
oidc_settings = loopback.oidc_settings

pytestmark = pytest.mark.django_db

START = "/api/v1/auth/oauth/{}/start"
CALLBACK = "/api/v1/auth/oauth/{}/callback"


def start(client=None, provider: str = "oidc") -> dict:
    r = (client or client_for()).post(START.format(provider), {}, format="json")
    assert r.status_code == 200, r.content
    return r.json()


def authorize(url: str) -> tuple[str, str]:
    """Follow ``authorize_url`` as the browser would; returns (code, state) from the redirect."""
    back, query = loopback.follow_authorize(url)
    assert back == oauth_services.redirect_uri("oidc")
    return query["code"], query["state"]


def callback(code: str, state: str, provider: str = "oidc", client=None):
    return (client or client_for()).post(
        CALLBACK.format(provider), {"code": code, "state": state}, format="json"
    )


def sign_in(provider: str = "oidc") -> dict:
    code, state = authorize(start(provider=provider)["authorize_url"])
    r = callback(code, state, provider)
    assert r.status_code == 200, r.content
    return r.json()


# --- providers ----------------------------------------------------------------------------------------


def test_providers_is_empty_when_none_is_configured(settings):
    settings.SOCIALACCOUNT_PROVIDERS = {}
    r = client_for().get("/api/v1/auth/providers")
    assert r.status_code == 200 and r.json() == []
    assert_error(client_for().post(START.format("oidc"), {}, format="json"), 404, "not_found")


def test_providers_lists_exactly_the_configured_ones(settings, oidc_settings):
    settings.SOCIALACCOUNT_PROVIDERS = {
        **provider_settings(oidc_settings.base, name="Company SSO"),
        "github": {"APPS": [{"client_id": "gh-id", "secret": "gh-secret"}], "OAUTH_PKCE_ENABLED": True},
    }
    r = client_for().get("/api/v1/auth/providers")
    assert r.status_code == 200
    assert r.json() == [{"id": "github", "name": "GitHub"}, {"id": "oidc", "name": "Company SSO"}]
    # A provider that is not configured, or allauth's internal name of the OIDC one: not offered.
    for name in ("gitlab", "openid_connect", "x" * 300):
        assert_error(client_for().post(START.format(name), {}, format="json"), 404, "not_found")


def test_start_of_a_real_provider_carries_pkce_state_and_our_redirect_uri(settings):
    settings.SOCIALACCOUNT_PROVIDERS = {
        "github": {"APPS": [{"client_id": "gh-id", "secret": "gh-secret"}], "OAUTH_PKCE_ENABLED": True}
    }
    settings.PUBLIC_URL = "https://tv.example.com"
    body = start(provider="github")
    url = urlsplit(body["authorize_url"])
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert (url.scheme, url.netloc, url.path) == ("https", "github.com", "/login/oauth/authorize")
    assert query["client_id"] == "gh-id"
    assert query["redirect_uri"] == "https://tv.example.com/oauth/callback/github/"
    assert query["state"] == body["state"]
    assert query["code_challenge_method"] == "S256"
    assert "gh-secret" not in body["authorize_url"]


# --- end to end ----------------------------------------------------------------------------------------


def test_end_to_end_sign_in_creates_the_account_and_our_tokens_work(oidc_settings: LoopbackProvider):
    body = start()
    query = {k: v[0] for k, v in parse_qs(urlsplit(body["authorize_url"]).query).items()}
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert query["state"] == body["state"]
    assert query["redirect_uri"] == "http://testserver/oauth/callback/oidc/"
    # The verifier stays on the server: nothing the client sees can be it.
    cached = state_take(body["state"])
    assert cached is not None and cached.code_verifier not in body["authorize_url"]
    state_stash_back(body["state"], cached)

    code, state = authorize(body["authorize_url"])
    r = callback(code, state)
    assert r.status_code == 200, r.content
    result = r.json()
    assert set(result) == {"user", "access", "refresh"}
    assert result["user"]["username"] == "ada"

    # The provider was sent the verifier, and it matched the challenge it saw.
    sent = oidc_settings.token_requests[-1]
    digest = hashlib.sha256(sent["code_verifier"].encode()).digest()
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == query["code_challenge"]

    me = client_for(result["access"]).get("/api/v1/users/me")
    assert me.status_code == 200 and me.json()["username"] == "ada"
    refreshed = client_for().post("/api/v1/auth/refresh", {"refresh": result["refresh"]}, format="json")
    assert refreshed.status_code == 200

    user = User.objects.get(username="ada")
    assert not user.has_usable_password()
    assert user.email == "ada@example.com"
    assert EmailAddress.objects.filter(
        user=user, email="ada@example.com", verified=True, primary=True
    ).exists()
    assert SocialAccount.objects.filter(user=user, provider="oidc", uid="oidc-user-1").exists()
    actions = list(AuditEvent.objects.filter(user_id=user.pk).values_list("action", flat=True))
    for action in (AuditAction.USER_REGISTER, AuditAction.OAUTH_LINK, AuditAction.OAUTH_LOGIN):
        assert action in actions


def state_stash_back(state: str, pending) -> None:
    """Put a taken state back under the same name (to peek at it in a test)."""
    from django.conf import settings
    from django.core.cache import cache

    value = {"provider": pending.provider, "code_verifier": pending.code_verifier}
    cache.set(PREFIX + state, value, timeout=settings.OAUTH_STATE_TTL)


def test_second_sign_in_finds_the_same_account(oidc_settings: LoopbackProvider):
    first = sign_in()
    oidc_settings.user["preferred_username"] = "someone-else"  # a renamed login changes nothing
    second = sign_in()
    assert first["user"]["id"] == second["user"]["id"]
    assert User.objects.count() == 1 and SocialAccount.objects.count() == 1


def test_wrong_verifier_is_refused_by_the_provider(oidc_settings: LoopbackProvider, monkeypatch):
    body = start()
    code, state = authorize(body["authorize_url"])
    real_take = oauth_services.state_take

    def take_and_swap(raw):
        pending = real_take(raw)
        return type(pending)(provider=pending.provider, code_verifier=pending.code_verifier[::-1])

    monkeypatch.setattr(oauth_services, "state_take", take_and_swap)
    r = callback(code, state)
    assert_error(r, 400, "oauth_refused")
    assert oidc_settings.token_refusals == ["invalid_grant"]
    assert User.objects.count() == 0


def test_replayed_state_is_refused(oidc_settings: LoopbackProvider):
    code, state = authorize(start()["authorize_url"])
    assert callback(code, state).status_code == 200
    # The same state again, even with a fresh code for it: the state was spent.
    fresh_code, _ = authorize(start()["authorize_url"])
    error = assert_error(callback(fresh_code, state), 400, "invalid")
    assert "state" in error["details"]


def test_concurrent_callbacks_with_one_state_let_one_through(oidc_settings: LoopbackProvider):
    state = start()["state"]
    taken = run_at_once(lambda _i: state_take(state), 8)
    assert sum(1 for t in taken if t is not None and not isinstance(t, Exception)) == 1


def test_expired_state_is_refused(oidc_settings: LoopbackProvider, settings):
    settings.OAUTH_STATE_TTL = 1
    code, state = authorize(start()["authorize_url"])
    time.sleep(2.1)
    assert_error(callback(code, state), 400, "invalid")
    assert oidc_settings.token_requests == []  # refused before any call to the provider


def test_unknown_state_and_another_providers_state_are_refused(oidc_settings: LoopbackProvider, settings):
    settings.SOCIALACCOUNT_PROVIDERS = {
        **provider_settings(oidc_settings.base),
        "github": {"APPS": [{"client_id": "gh-id", "secret": "gh-secret"}], "OAUTH_PKCE_ENABLED": True},
    }
    code, _state = authorize(start()["authorize_url"])
    assert_error(callback(code, "A" * 43), 400, "invalid")
    github_state = start(provider="github")["state"]
    assert_error(callback(code, github_state), 400, "invalid")
    assert oidc_settings.token_requests == []


def test_userinfo_failure_is_a_clean_error(oidc_settings: LoopbackProvider):
    code, state = authorize(start()["authorize_url"])
    oidc_settings.userinfo_fails = True
    assert_error(callback(code, state), 502, "provider_unavailable")
    assert User.objects.count() == 0


def test_unreachable_provider_is_a_clean_error(settings):
    settings.SOCIALACCOUNT_PROVIDERS = provider_settings("http://127.0.0.1:9")  # discard: refused
    r = client_for().post(START.format("oidc"), {}, format="json")
    assert_error(r, 502, "provider_unavailable")


# --- accounts: usernames, linking by e-mail, bans ------------------------------------------------------


def test_username_collision_gets_a_suffix(oidc_settings: LoopbackProvider):
    make_user("ada")
    result = sign_in()
    assert result["user"]["username"] == "ada-2"


def test_username_from_the_email_when_the_provider_gives_none(oidc_settings: LoopbackProvider):
    oidc_settings.user.pop("preferred_username")
    oidc_settings.user["email"] = "grace.hopper+tv@example.com"
    assert sign_in()["user"]["username"] == "grace.hoppertv"


def test_existing_account_is_linked_when_both_sides_verified_the_address(oidc_settings: LoopbackProvider):
    user, _ = make_user("adalovelace", email="ada@example.com")
    EmailAddress.objects.update_or_create(
        user=user, email="ada@example.com", defaults={"verified": True, "primary": True}
    )
    result = sign_in()
    assert result["user"]["id"] == user.pk
    assert SocialAccount.objects.get(provider="oidc").user_id == user.pk


def test_not_linked_when_our_side_has_not_verified_the_address(oidc_settings: LoopbackProvider):
    user, _ = make_user("adalovelace", email="ada@example.com")
    EmailAddress.objects.filter(user=user).update(verified=False)
    result = sign_in()
    assert result["user"]["id"] != user.pk
    # The new account does not get the address another account holds.
    assert User.objects.get(pk=result["user"]["id"]).email is None


def test_not_linked_when_the_provider_has_not_verified_the_address(oidc_settings: LoopbackProvider):
    user, _ = make_user("adalovelace", email="ada@example.com")
    EmailAddress.objects.update_or_create(
        user=user, email="ada@example.com", defaults={"verified": True, "primary": True}
    )
    oidc_settings.user["email_verified"] = False
    result = sign_in()
    assert result["user"]["id"] != user.pk


def test_unverified_provider_address_is_not_stored(oidc_settings: LoopbackProvider):
    oidc_settings.user["email_verified"] = False
    result = sign_in()
    assert User.objects.get(pk=result["user"]["id"]).email is None
    assert not EmailAddress.objects.exists()


def test_banned_user_is_refused(oidc_settings: LoopbackProvider):
    result = sign_in()
    user = User.objects.get(pk=result["user"]["id"])
    user.role = Role.BANNED
    user.save(update_fields=["role"])
    code, state = authorize(start()["authorize_url"])
    assert_error(callback(code, state), 403, "user_banned")
    assert AuditEvent.objects.filter(action=AuditAction.AUTH_LOGIN_REFUSED, user_id=user.pk).exists()


def test_pending_account_is_refused_as_login_does(oidc_settings: LoopbackProvider, settings):
    settings.ACCOUNT_REVIEW_REQUIRED = True
    code, state = authorize(start()["authorize_url"])
    assert_error(callback(code, state), 403, "account_pending")
    assert User.objects.get(username="ada").role == Role.PENDING  # created, awaiting review


# --- provider tokens at rest ------------------------------------------------------------------------


def test_provider_tokens_are_encrypted_at_rest(oidc_settings: LoopbackProvider):
    sign_in()
    access = next(iter(oidc_settings.tokens))
    row = ProviderToken.objects.get()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT access_token_encrypted, refresh_token_encrypted FROM accounts_providertoken WHERE id = %s",
            [row.pk],
        )
        raw_access, raw_refresh = (bytes(v) for v in cursor.fetchone())
    # Ciphertext: a random 12-byte nonce, the encrypted token and its 16-byte tag (docs/security.md).
    assert access.encode() not in raw_access and len(raw_access) >= 12 + len(access) + 16
    assert raw_refresh is not None and len(raw_refresh) > 28
    clear_access, clear_refresh = oauth_services.provider_token_read(row)
    assert clear_access == access and clear_refresh
    # Bound to its row and column: moved elsewhere, it does not decrypt.
    row.refresh_token_encrypted = row.access_token_encrypted
    with pytest.raises(crypto.DecryptionError):
        oauth_services.provider_token_read(row)
    # allauth's own plain-text token table stays empty.
    from allauth.socialaccount.models import SocialToken

    assert not SocialToken.objects.exists()


def test_a_later_sign_in_replaces_the_stored_tokens(oidc_settings: LoopbackProvider):
    sign_in()
    first = oauth_services.provider_token_read(ProviderToken.objects.get())
    sign_in()
    assert ProviderToken.objects.count() == 1
    assert oauth_services.provider_token_read(ProviderToken.objects.get()) != first


# --- identities -------------------------------------------------------------------------------------


def test_identities_list_and_unlink_with_a_password(oidc_settings: LoopbackProvider):
    user, pair = make_user("adalovelace", email="ada@example.com")
    EmailAddress.objects.update_or_create(
        user=user, email="ada@example.com", defaults={"verified": True, "primary": True}
    )
    sign_in()
    client = client_for(pair.access)
    r = client.get("/api/v1/users/me/identities")
    assert r.status_code == 200
    assert r.json() == [{"provider": "oidc", "uid": "oidc-user-1", "email": "ada@example.com"}]
    assert client.delete("/api/v1/users/me/identities/oidc").status_code == 204
    assert client.get("/api/v1/users/me/identities").json() == []
    assert not ProviderToken.objects.exists()
    assert AuditEvent.objects.filter(action=AuditAction.OAUTH_UNLINK, user_id=user.pk).exists()
    assert_error(client.delete("/api/v1/users/me/identities/oidc"), 404, "not_found")


def test_the_last_way_to_log_in_cannot_be_unlinked(oidc_settings: LoopbackProvider):
    result = sign_in()
    client = client_for(result["access"])
    assert_error(client.delete("/api/v1/users/me/identities/oidc"), 409, "last_login_method")
    assert SocialAccount.objects.count() == 1
    # With another identity it can go.
    user = User.objects.get(pk=result["user"]["id"])
    SocialAccount.objects.create(user=user, provider="github", uid="42", extra_data={})
    assert client.delete("/api/v1/users/me/identities/oidc").status_code == 204
    assert_error(client.delete("/api/v1/users/me/identities/github"), 409, "last_login_method")


def test_identities_need_a_login():
    assert_error(client_for().get("/api/v1/users/me/identities"), 401)
    assert_error(client_for().delete("/api/v1/users/me/identities/oidc"), 401)


def test_password_login_is_not_possible_for_an_oauth_only_account(oidc_settings: LoopbackProvider):
    result = sign_in()
    r = client_for().post(
        "/api/v1/auth/login", {"username": result["user"]["username"], "password": ""}, format="json"
    )
    assert r.status_code in (400, 401)
    with pytest.raises(Exception):
        account_services.user_login(identifier="ada", password="anything-At-all-1", origin=TEST_ORIGIN)


# --- the OpenAPI schema describes the real answers -------------------------------------------------


def test_answers_match_the_openapi_schema(oidc_settings: LoopbackProvider):
    from tests.test_openapi_conformance import check

    start_path, callback_path = (
        "/api/v1/auth/oauth/{provider}/start",
        "/api/v1/auth/oauth/{provider}/callback",
    )
    check(client_for().get("/api/v1/auth/providers"), "/api/v1/auth/providers", "get", "providers")
    r = client_for().post(START.format("oidc"), {}, format="json")
    check(r, start_path, "post", "start")
    code, state = authorize(r.json()["authorize_url"])
    r = callback(code, state)
    check(r, callback_path, "post", "callback")
    check(callback(code, state), callback_path, "post", "callback replayed")
    access = r.json()["access"]
    check(client_for(access).get("/api/v1/users/me/identities"), "/api/v1/users/me/identities", "get", "list")
    identity = "/api/v1/users/me/identities/{provider}"
    check(client_for(access).delete("/api/v1/users/me/identities/oidc"), identity, "delete", "last")
    check(client_for(access).delete("/api/v1/users/me/identities/gitlab"), identity, "delete", "none")
    code, state = authorize(start()["authorize_url"])
    oidc_settings.userinfo_fails = True
    check(callback(code, state), callback_path, "post", "provider down")
