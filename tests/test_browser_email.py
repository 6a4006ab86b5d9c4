"""The e-mail pages in Chromium (issue 12, item 6): "forgot password" on the login page, the
reset link read from the delivered message, the reset page, and a login with the new password;
sign-up with an address shows "check your inbox" and the verify page confirms the address.

The server is a subprocess on the embedded default (tests/browser_support.py: e-mail is sent
eagerly, after commit) with ``EMAIL_URL`` pointing at a real SMTP server on loopback
(tests/mailserver.py, aiosmtpd) in this process, so the links come from the delivered message.
"""

from __future__ import annotations

import re

import httpx
import pytest

from tests import browser_support as bs
from tests.mailserver import MailServer, serving

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("browser_tools")]

NEW_PASSWORD = "Fresh-passw0rd!"
LINK = re.compile(r"(https?://\S+/(?:reset-password|verify-email)/\?key=\S+)")


mailbox = pytest.fixture(serving, scope="module", name="mailbox")


@pytest.fixture(scope="module")
def server(tmp_path_factory, mailbox):
    folder = tmp_path_factory.mktemp("browser-email-server")
    with bs.serving(folder, EMAIL_URL=mailbox.url, ACCOUNT_EMAIL_VERIFICATION="mandatory") as srv:
        yield srv


def link_in(mailbox: MailServer, count: int, to: str, page: str) -> str:
    """The ``page`` link of the newest message to ``to`` once ``count`` were delivered."""
    for message in reversed(mailbox.wait_for(count, timeout=30)):
        if to in message.rcpt_tos:
            found = [url for url in LINK.findall(message.text) if f"/{page}/" in url]
            assert found, message.text
            return found[0]
    raise AssertionError(f"no message to {to}")


def test_sign_up_verify_forget_and_reset_the_password(server, browser, mailbox):
    watcher = bs.open_page(browser, "email")
    page = watcher.page
    delivered = len(mailbox.delivered)
    try:
        # Sign up: mandatory verification, so a 202 and "check your inbox".
        page.goto(f"{server.base}/signup/")
        page.fill("input[name=username]", "erin")
        page.fill("input[name=email]", "erin@example.com")
        page.fill("input[name=password]", bs.PASSWORD)
        page.get_by_test_id("auth-submit").click()
        message = page.get_by_test_id("auth-message")
        message.wait_for(state="visible", timeout=10_000)
        assert "Check your inbox" in message.inner_text()
        link_in(mailbox, delivered + 1, "erin@example.com", "verify-email")

        # "Send the link again": the resend without a login (a pending account cannot log in).
        page.get_by_test_id("resend-link").click()
        bs.wait_until(lambda: "new link" in message.inner_text(), message="the resend's answer")

        # The verify page, from the newest delivered message's link.
        verify_url = link_in(mailbox, delivered + 2, "erin@example.com", "verify-email")
        assert verify_url.startswith(f"{server.base}/verify-email/?key=")
        page.goto(verify_url)
        page.get_by_test_id("auth-submit").click()
        message = page.get_by_test_id("auth-message")
        message.wait_for(state="visible", timeout=10_000)
        assert "confirmed" in message.inner_text()

        # Forgot password: from the login page's link.
        page.goto(f"{server.base}/login/")
        page.get_by_test_id("forgot-password").click()
        page.wait_for_url(f"{server.base}/forgot-password/")
        page.fill("input[name=email]", "erin@example.com")
        page.get_by_test_id("auth-submit").click()
        message = page.get_by_test_id("auth-message")
        message.wait_for(state="visible", timeout=10_000)
        assert "Check your inbox" in message.inner_text()

        reset_url = link_in(mailbox, delivered + 3, "erin@example.com", "reset-password")
        assert reset_url.startswith(f"{server.base}/reset-password/?key=")
        page.goto(reset_url)
        page.fill("input[name=password]", NEW_PASSWORD)
        page.get_by_test_id("auth-submit").click()
        message = page.get_by_test_id("auth-message")
        message.wait_for(state="visible", timeout=10_000)
        assert "password is changed" in message.inner_text()

        # The link was single use: a second try on a fresh page says so.
        page.goto(reset_url)
        page.fill("input[name=password]", "An0ther-passw0rd")
        page.get_by_test_id("auth-submit").click()
        error = page.get_by_test_id("auth-error")
        error.wait_for(state="visible", timeout=10_000)
        assert "invalid, already used or expired" in error.inner_text()

        # Log in with the new password on the login page.
        page.goto(f"{server.base}/login/?next=/")
        page.fill("input[name=username]", "erin")
        page.fill("input[name=password]", NEW_PASSWORD)
        page.get_by_test_id("auth-submit").click()
        page.wait_for_url(f"{server.base}/", timeout=10_000)
        access = page.evaluate("() => localStorage.getItem('synctv.access')")
        me = httpx.get(f"{server.base}/api/v1/users/me", headers={"Authorization": f"Bearer {access}"})
        assert me.status_code == 200
        assert me.json()["username"] == "erin" and me.json()["email_verified"] is True
        assert watcher.problems == []
    except Exception:
        print(bs.save_evidence("test_sign_up_verify_forget_and_reset_the_password", [watcher], server))
        raise
    finally:
        watcher.close()
