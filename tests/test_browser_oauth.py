"""Signing in with an OAuth2 provider in Chromium: the login page shows the configured provider's
button; clicking it goes through the loopback OpenID Connect provider (tests/oidc_provider.py:
authorize, then the server's code exchange with its PKCE verifier) and the callback page lands
logged in, with the tokens stored as the login page stores them.

The server is a subprocess (tests/browser_support.py) given OAUTH_OIDC_* for the provider, which
runs in this process.
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests import browser_support as bs
from tests import oidc_provider as loopback

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("browser_tools")]

_oidc_server = loopback._oidc_server
oidc_provider = loopback.oidc_provider


@pytest.fixture(scope="module")
def server(tmp_path_factory, _oidc_server):
    folder = tmp_path_factory.mktemp("browser-oauth-server")
    with bs.serving(folder, **loopback.provider_env(_oidc_server.base, name="Loopback SSO")) as srv:
        yield srv


def test_provider_button_signs_in_and_lands_logged_in(server, browser, oidc_provider):
    oidc_provider.reset(sub="browser-user", preferred_username="grace", email="grace@example.com")
    watcher = bs.open_page(browser, "oauth")
    page = watcher.page
    try:
        page.goto(f"{server.base}/login/?next=/")
        button = page.get_by_test_id("oauth-oidc")
        assert button.inner_text() == "Continue with Loopback SSO"
        button.click()
        page.wait_for_url(f"{server.base}/", timeout=15_000)

        access = page.evaluate("() => localStorage.getItem('synctv.access')")
        refresh = page.evaluate("() => localStorage.getItem('synctv.refresh')")
        user = json.loads(page.evaluate("() => localStorage.getItem('synctv.user')"))
        assert access and refresh and user["username"] == "grace"
        me = httpx.get(f"{server.base}/api/v1/users/me", headers={"Authorization": f"Bearer {access}"})
        assert me.status_code == 200 and me.json()["username"] == "grace"
        # The provider saw a PKCE challenge and got the verifier; the page broke no CSP rule.
        assert oidc_provider.authorize_requests[-1]["code_challenge_method"] == "S256"
        assert oidc_provider.token_requests[-1]["code_verifier"]
        assert oidc_provider.token_refusals == []
        assert watcher.problems == []
    except Exception:
        print(bs.save_evidence("test_provider_button_signs_in_and_lands_logged_in", [watcher], server))
        raise
    finally:
        watcher.close()


def test_signup_page_offers_the_same_button(server, browser):
    watcher = bs.open_page(browser, "oauth-signup")
    try:
        watcher.page.goto(f"{server.base}/signup/")
        # The buttons are drawn after the page fetches auth/providers: wait for the button
        # (is_visible() answers at once and raced that fetch on a loaded machine).
        button = watcher.page.get_by_test_id("oauth-oidc")
        button.wait_for(state="visible", timeout=10_000)
        assert button.inner_text() == "Continue with Loopback SSO"
        assert watcher.problems == []
    except Exception:
        print(bs.save_evidence("test_signup_page_offers_the_same_button", [watcher], server))
        raise
    finally:
        watcher.close()
