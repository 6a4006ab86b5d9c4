"""Suite-wide fixtures.

Services: with CI set, PostgreSQL and Redis are required (a missing one is a failure, never a
skip). Without CI, tests marked ``redis``/``postgres`` skip when the service is not configured,
so the README's test command works on a fresh machine with nothing running.
"""

from __future__ import annotations

import os

import pytest
from django.conf import settings

IN_CI = bool(os.environ.get("CI"))
# No secret in any log line of the run (tests/secretscan.py).
pytest_plugins = ["tests.secretscan"]


def pytest_configure(config):
    if IN_CI:
        missing = []
        if not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
            missing.append("DATABASE_URL (PostgreSQL)")
        if not os.environ.get("REDIS_URL"):
            missing.append("REDIS_URL")
        if missing:
            raise pytest.UsageError(f"CI is set but these services are not configured: {', '.join(missing)}")


def _service_available(marker: str) -> bool:
    if marker == "redis":
        return bool(settings.REDIS_URL)
    if marker == "postgres":
        from django.db import connection

        return connection.vendor == "postgresql"
    return True


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item (``item.report_call``) so a fixture's teardown can
    tell whether its test failed and save evidence (the browser tests do)."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def pytest_runtest_setup(item):
    for marker in ("redis", "postgres"):
        if item.get_closest_marker(marker) and not _service_available(marker):
            if IN_CI:
                pytest.fail(f"{marker} is required in CI but not configured")
            pytest.skip(
                f"{marker} not configured (set {'REDIS_URL' if marker == 'redis' else 'DATABASE_URL'})"
            )


@pytest.fixture(autouse=True)
def _fresh_process_state():
    """Each test starts with empty caches and a key store that re-reads the database."""
    from django.core.cache import caches

    from apps.accounts import authcache
    from apps.accounts.keystore import keystore
    from apps.core.ratelimit import local_counter
    from apps.core.redis import get_redis, redis_breaker

    keystore.invalidate()
    local_counter.clear()  # the rate limits' per-process fallback counts
    authcache.forget_all()
    # Process-wide: a test that made Redis fail must not leave the next one on the fallback.
    redis_breaker.reset()
    for alias in settings.CACHES:
        caches[alias].clear()
    client = get_redis()
    if client is not None:
        for pattern in ("token:revoked:*", "auth:stamp:*"):
            for key in client.scan_iter(pattern):
                client.delete(key)
    yield
    keystore.invalidate()
    redis_breaker.reset()


@pytest.fixture
def api():
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def no_api_limit(settings):
    """For tables of cases that send more than the 100 requests a minute one address may make."""
    settings.RATELIMITS = {**settings.RATELIMITS, "api": "100000/m"}


@pytest.fixture
def redis_client():
    from apps.core.redis import get_redis

    client = get_redis()
    if client is None:
        if IN_CI:
            pytest.fail("REDIS_URL is required in CI")
        pytest.skip("REDIS_URL not configured")
    return client
