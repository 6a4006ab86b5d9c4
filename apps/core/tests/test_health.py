"""Operator endpoints (docs/security.md): /healthz (the process answers), /readyz (database,
cache, Redis, channel layer: 200, or 503 naming what failed)."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import OperationalError, connection
from django.test import Client, override_settings

from apps.core import health
from apps.core.dbfaults import database_breaker
from apps.core.redis import RedisUnavailable, _client_for, call_redis, redis_breaker

pytestmark = pytest.mark.django_db

BROKEN_REDIS = "redis://127.0.0.1:1/0"


def client() -> Client:
    return Client(raise_request_exception=False)


def readyz():
    r = client().get("/readyz")
    body = r.json()
    assert set(body) == {"status", "failed", "checks", "breakers"}
    return r, body


def assert_failed(r, body, *names: str) -> None:
    assert r.status_code == 503, body
    assert body["status"] == "fail"
    assert body["failed"] == sorted(names)
    assert r["Retry-After"].isdigit() and int(r["Retry-After"]) > 0
    for name in names:
        check = body["checks"][name]
        assert check["ok"] is False and check["error"], check
    for name, check in body["checks"].items():
        if name not in names:
            assert check["ok"] is True, (name, check)


def test_healthz():
    r = client().get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}
    assert "no-cache" in r["Cache-Control"] or "max-age=0" in r["Cache-Control"]


def test_healthz_only_answers_get():
    assert client().post("/healthz").status_code == 405
    assert client().post("/readyz").status_code == 405


def test_readyz_all_ok():
    r, body = readyz()
    assert r.status_code == 200, body
    assert body["status"] == "ok" and body["failed"] == []
    assert set(body["checks"]) == {"database", "cache", "redis", "channel_layer", "accepting"}
    for check in body["checks"].values():
        assert check["ok"] is True and isinstance(check["ms"], float | int)
    if not settings.REDIS_URL:
        assert "not configured" in body["checks"]["redis"]["note"]
    assert "Retry-After" not in r


class BrokenConnection:
    def cursor(self):
        raise OperationalError("could not connect to server: Connection refused")


def test_readyz_database_down(monkeypatch):
    # The real check, over a connection that cannot give a cursor.
    monkeypatch.setattr(health, "connection", BrokenConnection())
    r, body = readyz()
    assert_failed(r, body, "database")
    assert "OperationalError" in body["checks"]["database"]["error"]


CACHES_BROKEN = {
    # A cache that forgets what it is told, as a cache that does not answer would.
    "default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
    "local": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "local"},
}


@override_settings(CACHES=CACHES_BROKEN)
def test_readyz_cache_broken():
    r, body = readyz()
    assert_failed(r, body, "cache")


def test_readyz_cache_raising(monkeypatch):
    def refuse(*args, **kwargs):
        raise ConnectionError("cache server gone")

    from django.core.cache import caches

    monkeypatch.setattr(caches["default"], "set", refuse)
    r, body = readyz()
    assert_failed(r, body, "cache")
    assert "cache server gone" in body["checks"]["cache"]["error"]


@override_settings(CHANNEL_LAYERS={"default": {"BACKEND": "no.such.ChannelLayer"}})
def test_readyz_channel_layer_misconfigured():
    r, body = readyz()
    assert_failed(r, body, "channel_layer")


@override_settings(CHANNEL_LAYERS={})
def test_readyz_channel_layer_missing():
    r, body = readyz()
    assert_failed(r, body, "channel_layer")
    assert "no channel layer" in body["checks"]["channel_layer"]["error"]


@override_settings(
    CHANNEL_LAYERS={
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [BROKEN_REDIS]},
        }
    }
)
def test_readyz_channel_layer_unreachable():
    r, body = readyz()
    assert_failed(r, body, "channel_layer")


def test_readyz_several_failures_at_once(monkeypatch):
    def boom():
        raise RuntimeError("down")

    monkeypatch.setitem(health.CHECKS, "database", boom)
    monkeypatch.setitem(health.CHECKS, "channel_layer", boom)
    r, body = readyz()
    assert_failed(r, body, "channel_layer", "database")


def test_readyz_error_text_is_bounded(monkeypatch):
    def loud():
        raise RuntimeError("x" * 10_000)

    monkeypatch.setitem(health.CHECKS, "cache", loud)
    r, body = readyz()
    assert_failed(r, body, "cache")
    assert len(body["checks"]["cache"]["error"]) <= 300


# --- Redis -------------------------------------------------------------------------------------------


@pytest.fixture
def fresh_redis_clients():
    _client_for.cache_clear()
    yield
    _client_for.cache_clear()


@pytest.mark.redis
def test_readyz_checks_redis_when_configured(fresh_redis_clients):
    r, body = readyz()
    assert r.status_code == 200, body
    assert body["checks"]["redis"] == {"ok": True, "ms": body["checks"]["redis"]["ms"]}


@pytest.mark.redis
def test_readyz_reports_redis_down(fresh_redis_clients):
    with override_settings(REDIS_URL=BROKEN_REDIS):
        _client_for.cache_clear()
        r, body = readyz()
    assert_failed(r, body, "redis")
    assert "onnect" in body["checks"]["redis"]["error"]  # ConnectionError: ... connecting to ...


def test_readyz_names_each_breakers_state(fresh_redis_clients):
    """The breakers around Redis and the database open after their failures; /readyz says so, to
    anyone (a state, no address), and says closed again once they are reset."""
    closed = {"database": "closed", "redis": "closed"}
    assert readyz()[1]["breakers"] == closed
    try:
        with override_settings(REDIS_URL=BROKEN_REDIS):
            for _ in range(redis_breaker.failure_threshold):
                with pytest.raises(RedisUnavailable):
                    call_redis(lambda redis_client: redis_client.ping())
            _r, body = readyz()
        assert body["breakers"] == {**closed, "redis": "open"}, body
        for _ in range(database_breaker.failure_threshold):
            database_breaker.record_failure()
        r, body = readyz()
        assert body["breakers"] == {"database": "open", "redis": "open"}, body
        if connection.vendor == "postgresql":  # the backend that asks the breaker (dbfaults)
            assert_failed(r, body, "database")  # refused at once, without a connect
    finally:
        redis_breaker.reset()
        database_breaker.reset()
    assert readyz()[1]["breakers"] == closed


def test_readyz_reports_redis_down_even_in_the_embedded_default(fresh_redis_clients):
    """Setting REDIS_URL is what makes Redis a dependency; the check then really pings it."""
    with override_settings(REDIS_URL=BROKEN_REDIS):
        r, body = readyz()
    assert_failed(r, body, "redis")


# --- who sees the details -----------------------------------------------------------------------------
# Anyone may ask whether the node is ready and which dependency failed (a load balancer needs that);
# error texts (internal addresses, driver messages), notes and timings are for operators only: the
# same rule as /metrics (METRICS_TOKEN as a bearer token, or an address in METRICS_ALLOWED_NETWORKS,
# loopback by default). docs/security.md, "Operator endpoints".

OUTSIDER = "203.0.113.7"


def _down(monkeypatch):
    def refuse():
        raise OperationalError('connection to server at "10.1.2.3", port 5432 failed: Connection refused')

    monkeypatch.setitem(health.CHECKS, "database", refuse)


def test_readyz_hides_details_from_an_outside_address(monkeypatch):
    _down(monkeypatch)
    r = client().get("/readyz", REMOTE_ADDR=OUTSIDER)
    body = r.json()
    assert r.status_code == 503 and r["Retry-After"].isdigit()
    assert body["status"] == "fail" and body["failed"] == ["database"]
    assert body["checks"] == {name: {"ok": name != "database"} for name in health.CHECKS}
    assert "10.1.2.3" not in r.content.decode() and "OperationalError" not in r.content.decode()


def test_readyz_ok_from_an_outside_address_has_no_timings():
    r = client().get("/readyz", REMOTE_ADDR=OUTSIDER)
    assert r.status_code == 200
    assert r.json() == {
        "status": "ok",
        "failed": [],
        "checks": {name: {"ok": True} for name in health.CHECKS},
        "breakers": {"database": "closed", "redis": "closed"},
    }


@override_settings(METRICS_TOKEN="s3cret-operator-token")
def test_readyz_shows_details_with_the_operator_token(monkeypatch):
    _down(monkeypatch)
    r = client().get("/readyz", REMOTE_ADDR=OUTSIDER, HTTP_AUTHORIZATION="Bearer s3cret-operator-token")
    assert "10.1.2.3" in r.json()["checks"]["database"]["error"]
    for wrong in ("Bearer s3cret-operator-tokeN", "Bearer ", "s3cret-operator-token", "Basic x"):
        r = client().get("/readyz", REMOTE_ADDR=OUTSIDER, HTTP_AUTHORIZATION=wrong)
        assert r.json()["checks"]["database"] == {"ok": False}, wrong


@override_settings(METRICS_ALLOWED_NETWORKS=["203.0.113.0/24"])
def test_readyz_shows_details_to_an_allowed_network(monkeypatch):
    _down(monkeypatch)
    assert "error" in client().get("/readyz", REMOTE_ADDR=OUTSIDER).json()["checks"]["database"]
    # The configured list replaces the loopback default.
    assert "error" not in client().get("/readyz", REMOTE_ADDR="127.0.0.1").json()["checks"]["database"]


@override_settings(TRUSTED_PROXY_COUNT=1)
def test_readyz_behind_a_proxy_judges_the_client_not_the_proxy(monkeypatch):
    _down(monkeypatch)
    r = client().get("/readyz", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=OUTSIDER)
    assert r.json()["checks"]["database"] == {"ok": False}


def test_readyz_behind_an_undeclared_proxy_on_this_host_shows_no_details(monkeypatch):
    """A front proxy on the same host makes every visitor 127.0.0.1; with TRUSTED_PROXY_COUNT
    left at 0 the X-Forwarded-For it adds is the sign, and only the token counts."""
    _down(monkeypatch)
    r = client().get("/readyz", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=OUTSIDER)
    assert r.json()["checks"]["database"] == {"ok": False}
    with override_settings(METRICS_TOKEN="s3cret-operator-token"):
        r = client().get(
            "/readyz",
            REMOTE_ADDR="127.0.0.1",
            HTTP_X_FORWARDED_FOR=OUTSIDER,
            HTTP_AUTHORIZATION="Bearer s3cret-operator-token",
        )
    assert "10.1.2.3" in r.json()["checks"]["database"]["error"]
