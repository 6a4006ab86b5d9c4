"""Limits (docs/security.md): 429 ``rate_limited`` with ``Retry-After`` on login (per IP and per
username), registration (per IP) and the whole API (100/min per IP); RATELIMIT_ENABLE=False turns them off.

Limits are shrunk with override_settings to keep the tests fast. django-ratelimit counts in fixed
windows; its clock is frozen here so a test can never straddle a window edge (and so the tests
can step past a window to see the limit lift).
"""

from __future__ import annotations

import time

import pytest
from django.conf import settings
from django.db import transaction
from django.test import override_settings
from rest_framework.test import APIClient

from apps.accounts import services
from apps.accounts.models import AuthSession, User
from apps.accounts.tests.factories import PASSWORD, TEST_ORIGIN, password_hash
from apps.audit.models import AuditEvent
from apps.core import ratelimit
from apps.core.tests.helpers import ratelimit_clock_fixture, ratelimits, retry_if_sqlite_locked, run_at_once

pytestmark = pytest.mark.django_db

LOGIN = "/api/v1/auth/login"
REGISTER = "/api/v1/auth/register"
ME = "/api/v1/users/me"
WRONG = "Wr0ng-passw0rd"


clock = ratelimit_clock_fixture(autouse=True)


def client(ip: str = "127.0.0.1", **extra) -> APIClient:
    return APIClient(raise_request_exception=False, REMOTE_ADDR=ip, **extra)


def login(c: APIClient, username: str = "alice", password: str = PASSWORD):
    return c.post(LOGIN, {"username": username, "password": password}, format="json")


def assert_rate_limited(response, max_seconds: int) -> int:
    assert response.status_code == 429, response.content
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == "rate_limited"
    retry_after = response["Retry-After"]
    assert retry_after.isdigit(), retry_after
    seconds = int(retry_after)
    assert 0 < seconds <= max_seconds
    assert body["error"]["details"]["retry_after"] == seconds
    return seconds


# --- login per IP --------------------------------------------------------------------------------


@override_settings(RATELIMITS=ratelimits(login_ip="3/m", login_user="100/m"))
def test_login_per_ip(alice, clock):
    c = client("198.51.100.1")
    for _ in range(3):
        assert login(c, password=WRONG).status_code == 401
    sessions = AuthSession.objects.count()
    # Over the limit even the right password is refused, before any password is checked.
    r = login(c)
    seconds = assert_rate_limited(r, 60)
    assert AuthSession.objects.count() == sessions
    # Another address is not affected.
    assert login(client("198.51.100.2")).status_code == 200
    # Retry-After is exact: a second early is still refused, at Retry-After the address may retry.
    clock.now += seconds - 1
    assert_rate_limited(login(c), 1)
    clock.now += 1
    assert login(c).status_code == 200


@override_settings(RATELIMITS=ratelimits(login_ip="2/m", login_user="100/m"))
def test_login_per_ip_counts_successful_logins_and_unknown_users(alice):
    c = client("198.51.100.3")
    assert login(c).status_code == 200
    assert login(c, username="nobody", password=WRONG).status_code == 401
    assert_rate_limited(login(c), 60)


@override_settings(RATELIMITS=ratelimits(login_ip="2/m", login_user="100/m"), TRUSTED_PROXY_COUNT=0)
def test_login_per_ip_ignores_spoofed_forwarded_for(alice):
    """Without a trusted proxy, X-Forwarded-For is the client's own claim and changes nothing."""
    for i in range(2):
        r = login(client("198.51.100.4", HTTP_X_FORWARDED_FOR=f"10.0.0.{i}"), password=WRONG)
        assert r.status_code == 401
    assert_rate_limited(login(client("198.51.100.4", HTTP_X_FORWARDED_FOR="10.0.0.99")), 60)


@override_settings(RATELIMITS=ratelimits(login_ip="2/m", login_user="100/m"), TRUSTED_PROXY_COUNT=1)
def test_login_per_ip_behind_a_trusted_proxy_uses_the_forwarded_address(alice):
    proxy = "10.0.0.1"
    for _ in range(2):
        assert login(client(proxy, HTTP_X_FORWARDED_FOR="203.0.113.5"), password=WRONG).status_code == 401
    assert_rate_limited(login(client(proxy, HTTP_X_FORWARDED_FOR="203.0.113.5")), 60)
    # Another client behind the same proxy is a different address.
    assert login(client(proxy, HTTP_X_FORWARDED_FOR="203.0.113.6")).status_code == 200


# --- login per username --------------------------------------------------------------------------


@override_settings(RATELIMITS=ratelimits(login_ip="100/m", login_user="3/15m"))
def test_login_per_username_across_addresses(alice, clock):
    for i in range(3):
        assert login(client(f"192.0.2.{i + 1}"), password=WRONG).status_code == 401
    # A fourth address, the right password: the account is locked for the window.
    r = login(client("192.0.2.50"))
    assert_rate_limited(r, 15 * 60)
    # Case does not get around it: the key is the lower-cased identifier.
    assert_rate_limited(login(client("192.0.2.51"), username="ALICE"), 15 * 60)
    # Another account is unaffected.
    User.objects.create(username="bob", password=password_hash())
    assert login(client("192.0.2.52"), username="bob").status_code == 200
    # After the window the account opens again.
    clock.now += 15 * 60
    assert login(client("192.0.2.53")).status_code == 200


@override_settings(RATELIMITS=ratelimits(login_ip="100/m", login_user="2/15m"))
def test_login_per_username_counts_only_failures(alice):
    c = client("192.0.2.60")
    for _ in range(4):
        assert login(c).status_code == 200  # successes do not count against the account
    assert login(c, password=WRONG).status_code == 401
    assert login(c).status_code == 200
    assert login(c, password=WRONG).status_code == 401
    assert_rate_limited(login(c), 15 * 60)


@override_settings(RATELIMITS=ratelimits(login_ip="100/m", login_user="2/15m"))
def test_login_per_username_also_limits_unknown_names(db):
    """Guessing at a name that does not exist is limited the same way (no account oracle)."""
    for i in range(2):
        assert login(client(f"192.0.2.{70 + i}"), username="ghost", password=WRONG).status_code == 401
    assert_rate_limited(login(client("192.0.2.79"), username="ghost", password=WRONG), 15 * 60)


# --- registration per IP -------------------------------------------------------------------------


@override_settings(RATELIMITS=ratelimits(register_ip="2/h"))
def test_registration_per_ip(db, clock):
    c = client("198.51.100.20")
    for i in range(2):
        r = c.post(REGISTER, {"username": f"newbie{i}", "password": "N3w-passw0rd"}, format="json")
        assert r.status_code == 201, r.content
    r = c.post(REGISTER, {"username": "newbie9", "password": "N3w-passw0rd"}, format="json")
    seconds = assert_rate_limited(r, 3600)
    assert not User.objects.filter(username="newbie9").exists()
    # Another address may register.
    r = client("198.51.100.21").post(
        REGISTER, {"username": "newbie8", "password": "N3w-passw0rd"}, format="json"
    )
    assert r.status_code == 201
    clock.now += seconds
    r = c.post(REGISTER, {"username": "newbie9", "password": "N3w-passw0rd"}, format="json")
    assert r.status_code == 201


# --- the whole API: 100 requests a minute per IP -----------------------------------------------------


@pytest.fixture
def alice_access(alice) -> str:
    with transaction.atomic():
        return services._session_open(user=alice, origin=TEST_ORIGIN).access


def test_general_api_limit_is_100_per_minute(alice_access, clock):
    assert settings.RATELIMITS["api"] == "100/m"
    c = client("198.51.100.30", HTTP_AUTHORIZATION=f"Bearer {alice_access}")
    for i in range(100):
        r = c.get(ME)
        assert r.status_code == 200, (i, r.content)
    seconds = assert_rate_limited(c.get(ME), 60)
    # Other endpoints share the budget; other addresses have their own.
    assert_rate_limited(c.patch(ME, {"email": "x@example.com"}, format="json"), 60)
    other = client("198.51.100.31", HTTP_AUTHORIZATION=f"Bearer {alice_access}")
    assert other.get(ME).status_code == 200
    clock.now += seconds
    assert c.get(ME).status_code == 200


@override_settings(RATELIMITS=ratelimits(api="3/m", login_ip="100/m"))
def test_general_api_limit_covers_public_endpoints(alice):
    c = client("198.51.100.32")
    for _ in range(3):
        assert login(c, password=WRONG).status_code == 401
    assert_rate_limited(login(c), 60)


# --- switched off ----------------------------------------------------------------------------------


@override_settings(
    RATELIMIT_ENABLE=False,
    RATELIMITS=ratelimits(api="1/m", login_ip="1/m", login_user="1/m", register_ip="1/h"),
)
def test_ratelimit_enable_false_turns_them_off(alice, alice_access):
    c = client("198.51.100.40")
    for _ in range(3):
        assert login(c, password=WRONG).status_code == 401
    assert login(c).status_code == 200
    for i in range(2):
        r = c.post(REGISTER, {"username": f"free{i}", "password": "N3w-passw0rd"}, format="json")
        assert r.status_code == 201
    authed = client("198.51.100.40", HTTP_AUTHORIZATION=f"Bearer {alice_access}")
    for _ in range(3):
        assert authed.get(ME).status_code == 200


@override_settings(RATELIMITS=ratelimits(login_ip="1/m"))
def test_limits_are_on_by_default(alice):
    assert settings.RATELIMIT_ENABLE is True
    c = client("198.51.100.41")
    login(c, password=WRONG)
    assert_rate_limited(login(c), 60)


# --- the per-account login limit counts before hashing (issue 10, finding 13) -----------------------


def _count_hashes(monkeypatch, *, delay: float = 0.0) -> list:
    """Count the Argon2id verifications that run (and slow them, so parallel attempts overlap)."""
    # Django looks the verifier up by the hash's "argon2" tag, which Argon2idHasher shares with
    # the Argon2PasswordHasher it subclasses: patch the method both use.
    from django.contrib.auth.hashers import Argon2PasswordHasher

    ran: list = []
    real_verify = Argon2PasswordHasher.verify

    def verify(self, password, encoded):
        ran.append(password)
        time.sleep(delay)
        return real_verify(self, password, encoded)

    monkeypatch.setattr(Argon2PasswordHasher, "verify", verify)
    return ran


@pytest.mark.django_db(transaction=True)
@override_settings(RATELIMITS=ratelimits(login_ip="100/m", login_user="3/15m"))
def test_parallel_login_attempts_beyond_the_account_limit_are_refused_before_hashing(monkeypatch):
    """Eight wrong guesses at once against a limit of 3: only 3 passwords are hashed, the other
    five are refused with rate_limited first (the old check-then-count let all eight through)."""
    from django.db import connection

    from apps.core.errors import InvalidCredentials, RateLimited

    User.objects.create(username="alice", email="alice@example.com", password=password_hash())
    hashes = _count_hashes(monkeypatch, delay=0.3)
    contenders = 8
    results = run_at_once(
        lambda i: retry_if_sqlite_locked(
            lambda: services.user_login(identifier="alice", password=WRONG, origin=TEST_ORIGIN)
        ),
        contenders,
    )
    outcomes = [type(r) if isinstance(r, Exception) else r for r in results]
    assert len(hashes) <= 3, f"{len(hashes)} hashes ran for a limit of 3"
    assert outcomes.count(RateLimited) >= contenders - 3, outcomes
    assert set(outcomes) <= {RateLimited, InvalidCredentials}, outcomes
    failed_rows = AuditEvent.objects.filter(action="auth.login_failed").count()
    if connection.vendor == "postgresql":  # no retries there: exactly the limit got through
        assert len(hashes) == 3 and outcomes.count(InvalidCredentials) == 3 and failed_rows == 3
    else:  # a retried attempt whose audit row met a locked table is counted again, not hashed
        assert failed_rows <= len(hashes)


@override_settings(RATELIMITS=ratelimits(login_ip="100/m", login_user="4/15m"))
def test_username_and_email_share_one_budget(alice, monkeypatch):
    hashes = _count_hashes(monkeypatch)
    for i in range(4):
        identifier = "alice" if i % 2 else "ALICE@example.com"
        assert login(client(f"192.0.2.{90 + i}"), username=identifier, password=WRONG).status_code == 401
    # The account has had its four failures, whichever name they used.
    assert_rate_limited(login(client("192.0.2.98"), username="alice@example.com"), 15 * 60)
    assert_rate_limited(login(client("192.0.2.99")), 15 * 60)
    assert len(hashes) == 4


@override_settings(RATELIMITS=ratelimits(login_ip="100/m", login_user="2/15m"))
def test_refused_logins_with_the_right_password_do_not_use_the_budget(alice):
    """A banned or pending account's owner knows the password: those attempts are refunded too."""
    alice.role = "banned"
    alice.save()
    c = client("192.0.2.61")
    for _ in range(3):
        assert login(c).status_code == 403
    assert login(c, password=WRONG).status_code == 401
    assert login(c).status_code == 403
    assert login(c, password=WRONG).status_code == 401
    assert_rate_limited(login(c), 15 * 60)


# --- Redis unreachable: limits count per process (issue 10, finding 3) ------------------------------


@pytest.fixture
def redis_unreachable():
    """A real outage: the cache and the Redis client point at a port nobody listens on."""
    from apps.core import redis as core_redis
    from tests.procs import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"
    caches = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": url,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
        },
        "local": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "unreachable"},
    }
    ratelimit.local_counter.clear()
    with override_settings(REDIS_URL=url, CACHES=caches):
        core_redis._client_for.cache_clear()
        core_redis.redis_breaker.reset()
        yield url
    core_redis._client_for.cache_clear()
    core_redis.redis_breaker.reset()
    ratelimit.local_counter.clear()


@override_settings(RATELIMITS=ratelimits(login_ip="3/m", login_user="100/m"))
def test_login_limit_holds_while_redis_is_unreachable(alice, redis_unreachable):
    c = client("198.51.100.60")
    for _ in range(3):
        assert login(c, password=WRONG).status_code == 401
    sessions = AuthSession.objects.count()
    assert_rate_limited(login(c), 60)
    assert AuthSession.objects.count() == sessions
    assert login(client("198.51.100.61")).status_code == 200


@override_settings(RATELIMITS=ratelimits(login_ip="100/m", login_user="2/15m"))
def test_account_limit_holds_while_redis_is_unreachable(alice, redis_unreachable):
    for i in range(2):
        assert login(client(f"198.51.100.{70 + i}"), password=WRONG).status_code == 401
    assert_rate_limited(login(client("198.51.100.79")), 15 * 60)


@override_settings(RATELIMITS=ratelimits(api="3/m"))
def test_api_limit_holds_while_redis_is_unreachable(alice_access, redis_unreachable):
    c = client("198.51.100.80", HTTP_AUTHORIZATION=f"Bearer {alice_access}")
    for _ in range(3):
        assert c.get(ME).status_code == 200
    assert_rate_limited(c.get(ME), 60)


@override_settings(RATELIMITS=ratelimits(login_ip="2/m", login_user="100/15m", register_ip="2/h"))
def test_an_ipv6_client_is_limited_by_its_64_not_by_each_address():
    """One home or host holds a whole /64 and picks new addresses at will: counting each IPv6
    address separately would be no limit at all."""
    for host in ("2001:db8:1:2::10", "2001:db8:1:2:ffff::77"):
        assert login(client(host), username=f"nobody-{host}").status_code == 401
    assert_rate_limited(login(client("2001:db8:1:2::abcd"), username="someone-else"), 60)
    # Another /64 is another client; an IPv4-mapped address counts as its IPv4 address.
    assert login(client("2001:db8:1:3::10"), username="nobody-x").status_code == 401
    for _ in range(2):
        assert login(client("192.0.2.44"), username="nobody-y").status_code == 401
    assert_rate_limited(login(client("::ffff:192.0.2.44"), username="nobody-z"), 60)
    # The same rule for every per-address limit (registration here).
    for i in range(2):
        r = client(f"2001:db8:9:9::{i + 1}").post(
            "/api/v1/auth/register", {"username": f"six{i}", "password": "Corr3ct-horse"}, format="json"
        )
        assert r.status_code == 201, r.content
    r = client("2001:db8:9:9::99").post(
        "/api/v1/auth/register", {"username": "six9", "password": "Corr3ct-horse"}, format="json"
    )
    assert_rate_limited(r, 3600)
