"""allauth's adapters: how its account and socialaccount internals fit our API (docs/accounts.md).

We use allauth for e-mail addresses, verification and reset keys and OAuth2 providers, never its
pages or its session login: every flow ends in our own RS256 pair (apps.accounts.services).
"""

from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter


class AccountAdapter(DefaultAccountAdapter):
    pass


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    pass
