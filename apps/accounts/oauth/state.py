"""The state of one OAuth2 sign-in between ``start`` and ``callback``: which provider it is for
and its PKCE verifier, kept server side in the shared cache (Redis in production) for
settings.OAUTH_STATE_TTL seconds and usable once (docs/security.md, "OAuth2 with PKCE").

Taking a state is read-then-delete where only the caller whose delete removed the key wins: of
two callbacks racing with one state, one gets it and the other is refused, on Redis (DEL answers
how many keys it removed) and on the embedded locmem cache alike.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from apps.core.errors import ServiceDegraded
from apps.core.redis import REDIS_DOWN_ERRORS

PREFIX = "oauth:state:"


@dataclass(frozen=True)
class PendingSignIn:
    provider: str
    code_verifier: str


def state_stash(*, provider: str, code_verifier: str) -> str:
    """Keep a new sign-in's verifier; returns its state (256 random bits)."""
    state = secrets.token_urlsafe(32)
    try:
        cache.set(
            PREFIX + state,
            {"provider": provider, "code_verifier": code_verifier},
            timeout=settings.OAUTH_STATE_TTL,
        )
    except REDIS_DOWN_ERRORS as exc:
        raise ServiceDegraded() from exc
    return state


def state_take(state: str) -> PendingSignIn | None:
    """The sign-in ``state`` names, removed from the cache; None if it is unknown, has expired or
    was already taken (by this or a concurrent request)."""
    key = PREFIX + state
    try:
        value = cache.get(key)
        if not isinstance(value, dict) or not cache.delete(key):
            return None
    except REDIS_DOWN_ERRORS as exc:
        raise ServiceDegraded() from exc
    return PendingSignIn(provider=value["provider"], code_verifier=value["code_verifier"])
