"""Redis down -> the service keeps answering; Redis is used again once back (docs/security.md,
"When Redis is down").

Runs its own redis-server on a free port so it can kill and restart it without disturbing the
shared Redis other tests use.
"""

from __future__ import annotations

import shutil
import time

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from apps.accounts.tests.factories import PASSWORD, make_user
from apps.core import redis as core_redis
from tests.procs import PrivateRedis

# transaction=True: revocations reach Redis in on_commit callbacks, which need real commits.
pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def private_redis():
    if not shutil.which("redis-server"):
        pytest.fail("redis-server binary not found")
    server = PrivateRedis()
    server.start()
    url = server.url(0)
    caches = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": url,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
        },
        "local": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "outage"},
    }
    with override_settings(REDIS_URL=url, CACHES=caches):
        core_redis._client_for.cache_clear()
        core_redis.redis_breaker.reset()
        yield server
    server.kill()
    core_redis._client_for.cache_clear()
    core_redis.redis_breaker.reset()


def _me(client: APIClient, access: str):
    return client.get("/api/v1/users/me", HTTP_AUTHORIZATION=f"Bearer {access}")


def test_service_keeps_answering_while_redis_is_down_and_uses_it_again_after(private_redis):
    api = APIClient()
    _user, first = make_user("olga")
    r = api.post("/api/v1/auth/login", {"username": "olga", "password": PASSWORD}, format="json")
    second = r.json()
    assert _me(api, first.access).status_code == 200

    private_redis.kill()

    # Authenticated reads keep working, and fast: the breaker stops us waiting on Redis.
    started = time.monotonic()
    for _ in range(10):
        assert _me(api, first.access).status_code == 200
    assert time.monotonic() - started < 3.0

    # Logging in works (rate limits count in this process meanwhile), and logout still revokes.
    r = api.post("/api/v1/auth/login", {"username": "olga", "password": PASSWORD}, format="json")
    assert r.status_code == 200
    r = api.post(
        "/api/v1/auth/logout",
        {"refresh": first.refresh},
        format="json",
        HTTP_AUTHORIZATION=f"Bearer {first.access}",
    )
    assert r.status_code == 204
    assert _me(api, first.access).status_code == 401

    # Readiness says what is wrong.
    r = api.get("/readyz")
    assert r.status_code == 503
    assert "redis" in r.json()["failed"]

    # Redis comes back (empty: it keeps nothing); within a couple of seconds it is used again.
    private_redis.start()
    deadline = time.monotonic() + 5
    while api.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "Redis not used again after it came back"
        time.sleep(0.2)
    # The breaker lets calls through again at most reset_timeout (1 s) after the last failure.
    time.sleep(core_redis.redis_breaker.reset_timeout + 0.1)
    # The revoked token stays revoked although Redis lost everything (database sessions).
    assert _me(api, first.access).status_code == 401
    r = api.post(
        "/api/v1/auth/logout",
        {"refresh": second["refresh"]},
        format="json",
        HTTP_AUTHORIZATION=f"Bearer {second['access']}",
    )
    assert r.status_code == 204
    from apps.accounts.tokens import AccessToken

    jti = AccessToken(second["access"])["jti"]
    assert core_redis.get_redis().exists(f"token:revoked:{jti}") == 1


def test_rate_limits_count_in_the_process_while_redis_is_down_and_in_redis_again_after(
    private_redis, monkeypatch
):
    """Issue 10, finding 3: the limits used to fail open while Redis was down (40 wrong logins in
    1.5 s, no 429). Now they count in this process meanwhile, and in Redis once it answers."""
    import types

    from django.conf import settings
    from django_ratelimit import core as ratelimit_core

    from apps.core import ratelimit

    # The limits' clock stands still (their windows only; sleeps and the breaker use the real
    # one), so no window edge falls inside the run and the counts below are exact.
    frozen = time.time()
    monkeypatch.setattr(ratelimit_core, "time", types.SimpleNamespace(time=lambda: frozen))

    make_user("olga")
    ratelimit.local_counter.clear()
    limits = {**settings.RATELIMITS, "login_ip": "3/m", "login_user": "100/m"}
    wrong = {"username": "olga", "password": "Wr0ng-passw0rd"}
    with override_settings(RATELIMITS=limits):
        private_redis.kill()
        api = APIClient(REMOTE_ADDR="198.51.100.200")
        codes = [api.post("/api/v1/auth/login", wrong, format="json").status_code for _ in range(5)]
        assert codes == [401, 401, 401, 429, 429]
        assert len(ratelimit.local_counter) > 0

        private_redis.start()
        time.sleep(core_redis.redis_breaker.reset_timeout + 0.1)
        # Back in Redis: another address's attempts are counted there, not in this process.
        ratelimit.local_counter.clear()
        api = APIClient(REMOTE_ADDR="198.51.100.201")
        codes = [api.post("/api/v1/auth/login", wrong, format="json").status_code for _ in range(4)]
        assert codes == [401, 401, 401, 429]
        assert len(ratelimit.local_counter) == 0
        assert any(core_redis.get_redis().scan_iter("*rl:*"))
    ratelimit.local_counter.clear()
