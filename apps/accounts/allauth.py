"""allauth's adapters: how its account and socialaccount internals fit our API (docs/accounts.md).

We use allauth for e-mail addresses, verification and reset keys and OAuth2 providers, never its
pages or its session login: every flow ends in our own RS256 pair (apps.accounts.services).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from allauth.account.adapter import DefaultAccountAdapter
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from django.conf import settings
from django.http import HttpRequest

from apps.mail.services import email_queue

# allauth's mail templates -> ours (templates/email/). A mail allauth would send that is not
# listed here is refused rather than sent by allauth's own synchronous path: every e-mail goes
# through the Celery queue (apps.mail), and only the ones we wrote exist.
_TEMPLATES = {
    "account/email/email_confirmation": "verify_email",
    "account/email/email_confirmation_signup": "verify_email",
    "account/email/password_reset_key": "reset_password",
    "account/email/account_already_exists": "account_exists",
}


def _page_url(path: str, key: str | None = None) -> str:
    url = f"{settings.PUBLIC_URL.rstrip('/')}/{path}/"
    return f"{url}?key={quote(key, safe='')}" if key is not None else url


class AccountAdapter(DefaultAccountAdapter):
    """allauth's mail and links, ours: mail is queued (``email_queue``: sent by Celery after
    commit), links point at the web page, which posts the key to our API (docs/accounts.md)."""

    def send_mail(self, template_prefix: str, email: str, context: dict) -> None:
        template = _TEMPLATES.get(template_prefix)
        if template is None:
            raise ValueError(f"no SyncTV template for allauth's {template_prefix!r}")
        user = context.get("user")
        plain: dict[str, Any] = {
            "email": email,
            "username": getattr(user, "username", ""),
            "url": context.get("activate_url") or context.get("password_reset_url") or "",
            "forgot_password_url": _page_url("forgot-password"),
            "login_url": _page_url("login"),
        }
        email_queue(to=email, template=template, context=plain)

    def get_email_confirmation_url(self, request: HttpRequest | None, emailconfirmation: Any) -> str:
        return _page_url("verify-email", emailconfirmation.key)

    def get_reset_password_from_key_url(self, key: str) -> str:
        return _page_url("reset-password", key)

    def send_account_already_exists_mail(self, email: str) -> None:
        self.send_mail("account/email/account_already_exists", email, {})


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    pass
