"""Which OAuth2 providers this server offers: those whose settings are complete
(settings.SOCIALACCOUNT_PROVIDERS, built from OAUTH_* in synctv/settings.py), looked up through
allauth's social account adapter."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from allauth.socialaccount.adapter import get_adapter
from allauth.socialaccount.providers.oauth2.provider import OAuth2Provider
from django.conf import settings
from django.core.exceptions import MultipleObjectsReturned
from django.http import HttpRequest

from apps.core.errors import ApplicationError, NotFound

logger = logging.getLogger(__name__)

# allauth's provider classes we offer; the generic OpenID Connect one appears under its app's
# provider_id ("oidc").
SUPPORTED = ("github", "gitlab", "google", "discord", "microsoft", "openid_connect")


@dataclass(frozen=True)
class ProviderInfo:
    id: str
    name: str


def configured(request: HttpRequest | None = None) -> list[ProviderInfo]:
    """The offered providers, in a stable order: [] when none is configured."""
    found: dict[str, ProviderInfo] = {}
    for app in get_adapter().list_apps(request):
        if app.provider not in SUPPORTED:
            continue
        provider_id = app.provider_id or app.provider
        name = app.name or settings.OAUTH_PROVIDER_NAMES.get(provider_id, provider_id)
        found.setdefault(provider_id, ProviderInfo(id=provider_id, name=name))
    return sorted(found.values(), key=lambda p: p.id)


def provider_get(request: HttpRequest, provider_id: str) -> OAuth2Provider:
    """allauth's provider object for an offered provider id; NotFound for anything else."""
    if provider_id not in {p.id for p in configured(request)}:
        raise NotFound("No such sign-in provider.")
    try:
        provider = get_adapter().get_provider(request, provider_id)
    except MultipleObjectsReturned:
        # Two apps for one provider (settings and a "Social application" added in the admin):
        # allauth cannot tell which to use. An operator's mistake, said once in the log.
        logger.error("OAuth provider %s is configured twice (settings and admin); remove one", provider_id)
        raise ApplicationError(
            "This sign-in provider is misconfigured on the server.", code="provider_unavailable", status=503
        ) from None
    if not isinstance(provider, OAuth2Provider):
        raise NotFound("No such sign-in provider.")
    return provider
