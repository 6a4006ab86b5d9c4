"""The raw Redis client for keys whose names the design fixes (``token:revoked:{jti}``, locks,
presence). Django's cache adds its own prefixes and pickling, so it is not used for those.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import redis
from django.conf import settings
from django_redis.exceptions import ConnectionInterrupted
from redis.backoff import NoBackoff
from redis.retry import Retry

from apps.core.resilience import CircuitBreaker, CircuitOpen, register

T = TypeVar("T")

# Errors that mean "Redis is not answering", as opposed to a bug in the caller
# (django-redis wraps the client's errors in ConnectionInterrupted).
REDIS_DOWN_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError, ConnectionInterrupted)


@functools.cache
def _client_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=1,
        socket_timeout=1,
        health_check_interval=30,
        decode_responses=True,
        # After a Redis restart the first command on each pooled connection fails: retry it once
        # at once on a fresh connection instead of treating a healthy Redis as down.
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[redis.ConnectionError],
    )


def get_redis() -> redis.Redis | None:
    """The shared client, or None in the embedded default (no REDIS_URL)."""
    url = settings.REDIS_URL
    return _client_for(url) if url else None


class RedisUnavailable(Exception):
    """Redis did not answer, or failed so recently that it is not being asked (breaker open)."""


# When Redis stops answering, callers stop waiting on socket timeouts after two failures and
# try again a second later: it is used again as soon as it answers (docs/security.md).
redis_breaker = register(
    CircuitBreaker("redis", failure_threshold=2, reset_timeout=1.0, failure_exceptions=REDIS_DOWN_ERRORS)
)


def call_redis(fn: Callable[[redis.Redis], T]) -> T:
    """Run ``fn(client)`` through the breaker. Raises RedisUnavailable; the caller falls back."""
    client = get_redis()
    if client is None:
        raise RedisUnavailable("no REDIS_URL configured")
    try:
        return redis_breaker.call(lambda: fn(client))
    except (CircuitOpen, *REDIS_DOWN_ERRORS) as exc:
        raise RedisUnavailable(str(exc)) from exc
