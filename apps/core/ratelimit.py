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
from apps.core.redis import REDIS_DOWN_ERRORS, redis_breaker
from apps.core.resilience import CircuitOpen

logger = logging.getLogger(__name__)


def _usage(request, *, limit: str, key: str, increment: bool) -> dict | None:
    rate = settings.RATELIMITS[limit]

    def count():
        return get_usage(
            request,
            group=f"synctv.{limit}",
            key=lambda _group, _request: key,
            rate=rate,
            increment=increment,
        )

    if not settings.REDIS_URL:
        return count()
    try:
        # Through the Redis breaker: while Redis is down, do not wait on it for every request.
        return redis_breaker.call(count)
    except (CircuitOpen, *REDIS_DOWN_ERRORS):
        logger.warning("rate limit %s not checked: Redis unavailable", limit)
        return None


def _retry_after(usage: dict) -> int:
    """Seconds until a new window. django-ratelimit's ``time_left`` is ``window_end - now`` and
    the window still holds *at* ``window_end``, so a client that waited exactly ``time_left``
    was refused again: one more second is when it may really retry."""
    return max(0, usage["time_left"]) + 1


def hit(request, *, limit: str, key: str) -> None:
    """Count one event against ``limit`` for ``key``; raise RateLimited when over."""
    usage = _usage(request, limit=limit, key=key, increment=True)
    if usage and usage["should_limit"]:
        raise RateLimited(_retry_after(usage))


def check(request, *, limit: str, key: str) -> None:
    """Raise RateLimited if ``key`` is already over ``limit``, without counting."""
    usage = _usage(request, limit=limit, key=key, increment=False)
    if usage and usage["count"] >= usage["limit"]:
        raise RateLimited(_retry_after(usage))


def hit_ip(request, *, limit: str) -> None:
    hit(request, limit=limit, key=f"ip:{client_ip(request)}")


class ApiRateThrottle(BaseThrottle):
    """SECURITY.md §3.4: 100 API requests a minute per client IP."""

    def allow_request(self, request, view) -> bool:
        usage = _usage(request, limit="api", key=f"ip:{client_ip(request)}", increment=True)
        self._wait = _retry_after(usage) if usage else None
        return not (usage and usage["should_limit"])

    def wait(self):
        return self._wait
