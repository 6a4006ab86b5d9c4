"""/metrics in this process (apps/core/metrics.py): who may read it, the format, and that each of
our metrics counts where its thing happens. The multi-process mode, with real servers, workers
and a scrape after traffic, is tests/test_metrics.py."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.test import Client, override_settings
from prometheus_client import REGISTRY
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector

from apps.accounts.tasks import purge_expired_sessions
from apps.accounts.tests.factories import make_user
from apps.core import events, metricsfiles, ratelimit, realtime, resilience
from apps.core.errors import RateLimited
from apps.core.tests.helpers import FakeClock, assert_error, client_for, ratelimits
from apps.rooms import messages
from apps.rooms.frames import event_type
from apps.rooms.messages import UNSET
from apps.rooms.services.playback import _change_kind

pytestmark = pytest.mark.django_db

TOKEN = "t0ken-for-the-metrics-tests"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def get(remote: str = "127.0.0.1", **headers: str):
    return Client(REMOTE_ADDR=remote).get("/metrics", **headers)


# --- who may read it ------------------------------------------------------------------------------


def test_loopback_reads_prometheus_text_by_default():
    assert Client().get("/healthz").status_code == 200
    r = get()
    assert r.status_code == 200
    assert r["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "no-cache" in r["Cache-Control"] or "max-age=0" in r["Cache-Control"]
    text = r.content.decode()
    assert "# TYPE synctv_breaker_state gauge" in text
    assert "django_http_requests_latency_seconds_by_view_method" in text


def test_openmetrics_when_the_scraper_asks_for_it():
    r = get(HTTP_ACCEPT="application/openmetrics-text; version=1.0.0; charset=utf-8")
    assert r.status_code == 200
    assert r["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert r.content.decode().rstrip().endswith("# EOF")


@override_settings(METRICS_TOKEN=TOKEN)
def test_another_address_needs_the_token():
    assert_error(get("203.0.113.5"), 403, "permission_denied")
    assert_error(get("203.0.113.5", HTTP_AUTHORIZATION=f"Bearer {TOKEN}x"), 403, "permission_denied")
    assert_error(get("203.0.113.5", HTTP_AUTHORIZATION=f"Basic {TOKEN}"), 403, "permission_denied")
    assert get("203.0.113.5", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200


@override_settings(TRUSTED_PROXY_COUNT=1)
def test_a_client_at_the_port_cannot_claim_loopback_through_x_forwarded_for():
    """Behind a declared proxy X-Forwarded-For is believed from any peer: the peer must be in the
    networks too, or a client that reaches the node's port directly would be an operator."""
    assert_error(get("203.0.113.5", HTTP_X_FORWARDED_FOR="127.0.0.1"), 403, "permission_denied")
    # Through the front on loopback: the client it names decides.
    assert_error(get("127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.5"), 403, "permission_denied")
    assert get("127.0.0.1", HTTP_X_FORWARDED_FOR="127.0.0.1").status_code == 200


@override_settings(METRICS_ALLOWED_NETWORKS=["10.0.0.0/8"])
def test_allowed_networks_replace_loopback():
    assert get("10.1.2.3").status_code == 200
    assert_error(get("127.0.0.1"), 403, "permission_denied")


def test_off_answers_404_and_only_get_is_allowed():
    with override_settings(METRICS_ENABLE=False):
        assert get().status_code == 404
    assert Client().post("/metrics").status_code == 405


# --- requests -----------------------------------------------------------------------------------


def test_requests_are_counted_by_view_method_and_status_with_their_latency():
    status = {"status": "200", "view": "healthz", "method": "GET"}
    latency = {"view": "healthz", "method": "GET"}
    before = sample("django_http_responses_total_by_status_view_method_total", **status)
    timed = sample("django_http_requests_latency_seconds_by_view_method_count", **latency)
    for _ in range(3):
        assert Client().get("/healthz").status_code == 200
    assert sample("django_http_responses_total_by_status_view_method_total", **status) == before + 3
    assert sample("django_http_requests_latency_seconds_by_view_method_count", **latency) == timed + 3


def test_an_invented_method_is_not_a_label_of_its_own():
    labels = {"view": "healthz", "method": "<invalid method>"}
    before = sample("django_http_requests_latency_seconds_by_view_method_count", **labels)
    assert Client().generic("BREW-COFFEE", "/healthz").status_code == 405
    assert sample("django_http_requests_latency_seconds_by_view_method_count", **labels) == before + 1
    assert "BREW-COFFEE" not in get().content.decode()


# --- our metrics ----------------------------------------------------------------------------------


def test_authentication_failures_by_reason():
    make_user("metricsalice")
    wrong = sample("synctv_auth_failures_total", reason="invalid_credentials")
    invalid = sample("synctv_auth_failures_total", reason="token_invalid")
    missing = sample("synctv_auth_failures_total", reason="not_authenticated")
    r = client_for().post(
        "/api/v1/auth/login", {"username": "metricsalice", "password": "nope-nope-1"}, format="json"
    )
    assert_error(r, 401, "invalid_credentials")
    assert_error(client_for("garbage").get("/api/v1/users/me"), 401, "token_invalid")
    assert_error(client_for().get("/api/v1/users/me"), 401, "not_authenticated")
    assert sample("synctv_auth_failures_total", reason="invalid_credentials") == wrong + 1
    assert sample("synctv_auth_failures_total", reason="token_invalid") == invalid + 1
    assert sample("synctv_auth_failures_total", reason="not_authenticated") == missing + 1


def test_rate_limit_hits_by_limit():
    before = sample("synctv_rate_limited_total", limit="login_ip")
    with override_settings(RATELIMIT_ENABLE=True, RATELIMITS=ratelimits(login_ip="1/m")):
        ratelimit.take(limit="login_ip", key="ip:198.51.100.7")
        with pytest.raises(RateLimited):
            ratelimit.take(limit="login_ip", key="ip:198.51.100.7")
    assert sample("synctv_rate_limited_total", limit="login_ip") == before + 1


def test_a_named_allowance_counts_its_refusals_and_a_private_bucket_does_not():
    before = sample("synctv_rate_limited_total", limit="ws_chat")
    bucket = ratelimit.socket_bucket("ws_chat")
    taken = [bucket.take() for _ in range(ratelimit.SOCKET_ALLOWANCES["ws_chat"].burst + 2)]
    refused = taken.count(False)
    assert refused >= 1
    assert sample("synctv_rate_limited_total", limit="ws_chat") == before + refused
    unnamed = ratelimit.TokenBucket(1, 0.001)
    unnamed.take()
    assert not unnamed.take()
    assert sample("synctv_rate_limited_total", limit="") == 0


def test_breaker_state_follows_every_change():
    clock = FakeClock()
    breaker = resilience.CircuitBreaker("metrics_test", failure_threshold=2, reset_timeout=5, clock=clock)
    try:
        resilience.register(breaker)
        assert sample("synctv_breaker_state", breaker="metrics_test") == 0
        opened = sample("synctv_breaker_opened_total", breaker="metrics_test")
        breaker.record_failure()
        breaker.record_failure()
        assert sample("synctv_breaker_state", breaker="metrics_test") == 2
        breaker.record_failure()  # open already: not opened again
        assert sample("synctv_breaker_opened_total", breaker="metrics_test") == opened + 1
        clock.now += 5
        assert breaker.state == "half_open"
        assert sample("synctv_breaker_state", breaker="metrics_test") == 1
        breaker.record_success()
        assert sample("synctv_breaker_state", breaker="metrics_test") == 0
    finally:
        resilience._registered.pop("metrics_test", None)


def test_client_frames_by_type_and_refused_ones_as_invalid():
    ping, invalid = (
        sample("synctv_ws_messages_received_total", type="ping"),
        sample("synctv_ws_messages_received_total", type="invalid"),
    )
    messages.parse('{"type": "ping", "t": 1}')
    for bad in ("nonsense", '{"type": "teleport"}', '{"type": "chat"}', None):
        with pytest.raises(messages.BadMessage):
            messages.parse(bad)
    assert sample("synctv_ws_messages_received_total", type="ping") == ping + 1
    assert sample("synctv_ws_messages_received_total", type="invalid") == invalid + 4
    # The refused frame's type, whatever the client wrote, never became a label.
    assert sample("synctv_ws_messages_received_total", type="teleport") == 0


def test_sent_events_are_named_by_their_type_without_parsing_them():
    assert event_type(realtime.encode(events.pong(t=1))) == "pong"
    assert event_type(realtime.encode(events.error("invalid", "no", None))) == "error"
    assert event_type(realtime.encode_with({"type": "members", "page": 1}, "members", [])) == "members"
    assert event_type('{"server_time": 1, "type": "pong"}') == "other"
    assert event_type('{"type":"' + "x" * 100 + '"}') == "other"
    assert event_type("") == "other"


def test_playback_changes_are_named_by_what_changed():
    assert _change_kind("m1", UNSET, UNSET) == "movie"
    assert _change_kind(None, True, 3.0) == "movie"
    assert _change_kind(UNSET, True, 3.0) == "play"
    assert _change_kind(UNSET, False, UNSET) == "pause"
    assert _change_kind(UNSET, UNSET, 12.5) == "seek"
    assert _change_kind(UNSET, UNSET, UNSET) == "rate"


def test_celery_task_outcome_and_run_time():
    name = purge_expired_sessions.name
    ran = sample("synctv_celery_tasks_total", task=name, outcome="success")
    timed = sample("synctv_celery_task_seconds_count", task=name)
    purge_expired_sessions.apply()  # in this process, through the same signals a worker sends
    assert sample("synctv_celery_tasks_total", task=name, outcome="success") == ran + 1
    assert sample("synctv_celery_task_seconds_count", task=name) == timed + 1


# --- the multi-process files ----------------------------------------------------------------------


def a_dead_pid() -> int:
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(ended.stdout)


def write(folder, kind: str, pid: int | str, value: float, name: str = "synctv_test") -> None:
    """One value as a process in multi-process mode writes it (prometheus_client's own format)."""
    store = MmapedDict(str(folder / f"{kind}_{pid}.db"))
    sample = f"{name}_total" if kind == "counter" else name
    store.write_value(mmap_key(name, sample, ["kind"], ["x"], "test"), value, 0.0)
    store.close()


def totals(folder) -> dict[str, float]:
    collector = MultiProcessCollector(None, path=str(folder))
    return {s.name: s.value for m in collector.collect() for s in m.samples}


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    return tmp_path


def test_a_stopped_process_counters_are_folded_and_its_live_gauges_removed(folder):
    dead, live = a_dead_pid(), os.getpid()
    write(folder, "counter", dead, 3)
    write(folder, "counter", live, 4)
    write(folder, "counter", "archive", 10)
    write(folder, "gauge_livesum", dead, 7, "synctv_open")
    write(folder, "gauge_livesum", live, 2, "synctv_open")
    write(folder, "gauge_max", dead, 5, "synctv_other")
    before = totals(folder)
    assert before["synctv_test_total"] == 17 and before["synctv_open"] == 9

    assert metricsfiles.tidy() == 2
    after = totals(folder)
    # The total never goes down (no counter reset for Prometheus); the dead socket count goes.
    assert after["synctv_test_total"] == 17 and after["synctv_open"] == 2
    left = {p.name for p in folder.iterdir()}
    assert f"counter_{dead}.db" not in left and f"gauge_livesum_{dead}.db" not in left
    assert {"counter_archive.db", f"counter_{live}.db", f"gauge_max_{dead}.db"} <= left
    assert metricsfiles.tidy() == 0


def test_a_process_starts_without_the_live_gauges_of_an_earlier_one_with_its_id(folder):
    pid = os.getpid()
    write(folder, "gauge_livesum", pid, 1500, "synctv_open")
    write(folder, "gauge_livemax", pid, 2, "synctv_state")
    write(folder, "counter", pid, 3)
    metricsfiles.forget_live_gauges(pid)
    assert {p.name for p in folder.iterdir()} == {f"counter_{pid}.db"}


def test_without_the_directory_there_is_nothing_to_tidy(monkeypatch, tmp_path):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert metricsfiles.tidy() == 0
    metricsfiles.forget_live_gauges(os.getpid())
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "missing"))
    assert metricsfiles.tidy() == 0
