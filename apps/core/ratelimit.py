"""Rate limits on the shared cache (Redis in production), with Retry-After.

Counting is django-ratelimit's fixed window (``get_usage``); this module only names the limits
(settings.RATELIMITS), keys them, and raises the API's error. If the cache itself is down the
limit fails open: refusing every login because Redis restarted would be worse.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django_ratelimit.core import get_usage
from rest_framework.throttling import BaseThrottle

from apps.core.errors import RateLimited
from apps.core.net import client_ip

logger = logging.getLogger(__name__)


def _usage(request, *, limit: str, key: str, increment: bool) -> dict | None:
    rate = settings.RATELIMITS[limit]
    try:
        return get_usage(
            request,
            group=f"synctv.{limit}",
            key=lambda _group, _request: key,
            rate=rate,
            increment=increment,
        )
    except Exception:  # the cache is unreachable: fail open, loudly
        logger.warning("rate limit %s not checked: cache unavailable", limit, exc_info=True)
        return None


def hit(request, *, limit: str, key: str) -> None:
    """Count one event against ``limit`` for ``key``; raise RateLimited when over."""
    usage = _usage(request, limit=limit, key=key, increment=True)
    if usage and usage["should_limit"]:
        raise RateLimited(usage["time_left"])


def check(request, *, limit: str, key: str) -> None:
    """Raise RateLimited if ``key`` is already over ``limit``, without counting."""
    usage = _usage(request, limit=limit, key=key, increment=False)
    if usage and usage["count"] >= usage["limit"]:
        raise RateLimited(usage["time_left"])


def hit_ip(request, *, limit: str) -> None:
    hit(request, limit=limit, key=f"ip:{client_ip(request)}")


class ApiRateThrottle(BaseThrottle):
    """SECURITY.md §3.4: 100 API requests a minute per client IP."""

    def allow_request(self, request, view) -> bool:
        usage = _usage(request, limit="api", key=f"ip:{client_ip(request)}", increment=True)
        self._wait = usage["time_left"] if usage else None
        return not (usage and usage["should_limit"])

    def wait(self):
        return self._wait
