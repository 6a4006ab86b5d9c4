"""A user's linked OAuth identities (GET users/me/identities)."""

from __future__ import annotations

from typing import Any, TypedDict

from allauth.socialaccount.models import SocialAccount

from apps.accounts.models import User


class Identity(TypedDict):
    provider: str
    uid: str
    email: str | None


def _email_in(extra_data: Any) -> str | None:
    """The address in what the provider told us at the last sign-in: userinfo / id_token claims
    (OpenID Connect: ``{"userinfo": ..., "id_token": ...}``) or a provider's own profile shape."""
    if not isinstance(extra_data, dict):
        return None
    for source in (extra_data.get("userinfo"), extra_data.get("id_token"), extra_data):
        if isinstance(source, dict):
            for field in ("email", "mail", "userPrincipalName"):
                value = source.get(field)
                if isinstance(value, str) and "@" in value:
                    return value
    return None


def identities_of(user: User) -> list[Identity]:
    """One query."""
    return [
        Identity(provider=account.provider, uid=account.uid, email=_email_in(account.extra_data))
        for account in SocialAccount.objects.filter(user=user).order_by("provider", "date_joined")
    ]
