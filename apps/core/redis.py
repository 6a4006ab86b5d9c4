"""The raw Redis client for keys whose names the design fixes (``token:revoked:{jti}``, locks,
presence). Django's cache adds its own prefixes and pickling, so it is not used for those.
"""

from __future__ import annotations

import functools

import redis
from django.conf import settings

# Errors that mean "Redis is not answering", as opposed to a bug in the caller.
REDIS_DOWN_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


@functools.cache
def _client_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=1,
        socket_timeout=1,
        health_check_interval=30,
        decode_responses=True,
    )


def get_redis() -> redis.Redis | None:
    """The shared client, or None in the embedded default (no REDIS_URL)."""
    url = settings.REDIS_URL
    return _client_for(url) if url else None
