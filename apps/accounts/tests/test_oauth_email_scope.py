"""Every provider is asked for the address (docs/accounts.md, "OAuth2 sign-in"):
``SOCIALACCOUNT_QUERY_EMAIL`` is on, so GitHub's authorize URL carries the ``user:email`` scope
(and allauth then reads /user/emails, with the verified flags) and Google's the ``email`` scope.
Without it a provider sign-in never gets an address: it never links by verified e-mail, and the
account it creates can never reset a password.

The providers are configured as an operator does, through OAUTH_<P>_CLIENT_ID/SECRET: the
settings module is run under that environment and its SOCIALACCOUNT_PROVIDERS used here."""

from __future__ import annotations

import runpy
from urllib.parse import parse_qs, urlsplit

import pytest
from allauth.account.models import EmailAddress as AllauthAddress
from allauth.socialaccount.adapter import get_adapter
from allauth.socialaccount.models import SocialLogin
from django.conf import settings as django_settings
from django.test import RequestFactory

from apps.accounts.oauth import services as oauth_services
from apps.core.tests.helpers import client_for

pytestmark = pytest.mark.django_db

SETTINGS_FILE = django_settings.BASE_DIR / "synctv" / "settings.py"
START = "/api/v1/auth/oauth/{}/start"


@pytest.fixture
def env_providers(monkeypatch, tmp_path, settings):
    """GitHub and Google configured from the environment, as synctv/settings.py reads it."""
    for name in ("GITHUB", "GOOGLE"):
        monkeypatch.setenv(f"OAUTH_{name}_CLIENT_ID", f"{name.lower()}-client-id")
        monkeypatch.setenv(f"OAUTH_{name}_CLIENT_SECRET", f"{name.lower()}-client-secret")
    monkeypatch.delenv("OAUTH_OIDC_SERVER_URL", raising=False)
    monkeypatch.setenv("SYNCTV_VAR_DIR", str(tmp_path / "var"))
    values = runpy.run_path(str(SETTINGS_FILE))
    assert set(values["SOCIALACCOUNT_PROVIDERS"]) == {"github", "google"}
    settings.SOCIALACCOUNT_PROVIDERS = values["SOCIALACCOUNT_PROVIDERS"]
    return values


def scopes(provider: str) -> tuple[str, set[str]]:
    r = client_for().post(START.format(provider), {}, format="json")
    assert r.status_code == 200, r.content
    url = urlsplit(r.json()["authorize_url"])
    query = parse_qs(url.query)
    # GitHub separates scopes with "," or " " (allauth joins them with " "); Google with " ".
    found = set(query.get("scope", [""])[0].replace(",", " ").split())
    return f"{url.netloc}{url.path}", found


def test_the_settings_ask_providers_for_the_address(env_providers):
    assert env_providers["SOCIALACCOUNT_QUERY_EMAIL"] is True
    assert django_settings.SOCIALACCOUNT_QUERY_EMAIL is True


def test_github_authorize_url_asks_for_user_email(env_providers):
    where, found = scopes("github")
    assert where == "github.com/login/oauth/authorize"
    assert "user:email" in found


def test_google_authorize_url_asks_for_email(env_providers):
    where, found = scopes("google")
    assert where == "accounts.google.com/o/oauth2/v2/auth"
    assert {"email", "profile"} <= found


def test_githubs_address_list_gives_the_verified_primary_first(env_providers):
    """What allauth makes of GitHub's /user/emails (its documented shape): every address with
    its verified flag. The primary verified one is used first (linking, a new account's address);
    an unverified one never."""
    request = RequestFactory().get("/")
    provider = get_adapter().get_provider(request, "github")
    emails = [
        {"email": "old@example.com", "primary": False, "verified": True, "visibility": None},
        {"email": "typo@example.com", "primary": False, "verified": False, "visibility": None},
        {"email": "ada@example.com", "primary": True, "verified": True, "visibility": "private"},
    ]
    addresses = provider.extract_email_addresses({"id": 1, "login": "ada", "emails": emails})
    assert all(isinstance(a, AllauthAddress) for a in addresses)
    login = SocialLogin(email_addresses=addresses)
    assert oauth_services._provider_verified_emails(login) == ["ada@example.com", "old@example.com"]
