"""``/metrics`` on a production stack (docs/operations.md, "Metrics"): gunicorn with two workers, a
`ws` node, a Celery worker and beat, all with production's default PROMETHEUS_MULTIPROC_DIR
(under their shared SYNCTV_VAR_DIR). After real traffic one scrape of the `web` node shows every
metric the operations guide lists with the values the traffic made, the other processes'
included; and the endpoint is refused from an address outside METRICS_ALLOWED_NETWORKS without
METRICS_TOKEN."""

from __future__ import annotations

import asyncio
import secrets
import time
from contextlib import ExitStack

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.procs import procfile_command, running
from tests.wsclient import Api, Cluster, PrivateRedis, close_all, dial, join, run, scratch_database

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

TOKEN = secrets.token_urlsafe(24)
Samples = dict[tuple[str, frozenset], float]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("metrics")
    redis = PrivateRedis()
    redis.start()
    try:
        with scratch_database() as dsn, ExitStack() as processes:
            cluster = Cluster(tmp, database_url=dsn, redis=redis)
            # Loopback's 127.0.0.1 only: the refusal is tested from 127.0.0.2.
            cluster.env.update(METRICS_TOKEN=TOKEN, METRICS_ALLOWED_NETWORKS="127.0.0.1/32")
            processes.callback(cluster.close)
            cluster.release()
            (web,) = cluster.start("web", command=procfile_command("web"), WEB_CONCURRENCY="2")
            (ws,) = cluster.start("ws1")
            for name in ("worker", "beat"):
                processes.enter_context(
                    running(procfile_command(name), env=cluster.env, log=tmp / f"{name}.log")
                )
            yield web, ws, tmp
    finally:
        redis.kill()


def scrape(base: str, *, token: str | None = None, source: str = "127.0.0.1") -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=15) as client:
        return client.get(f"{base}/metrics", headers=headers)


def samples(base: str) -> Samples:
    answer = scrape(base)
    assert answer.status_code == 200, answer.text[:500]
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def wait_for(base: str, check, timeout: float = 30) -> Samples:
    deadline = time.monotonic() + timeout
    while True:
        found = samples(base)
        if check(found):
            return found
        assert time.monotonic() < deadline, sorted(k for k in found if k[0].startswith("synctv_"))
        time.sleep(0.3)


def test_refused_from_an_address_outside_the_allowed_networks_without_the_token(stack):
    web, _, _ = stack
    refused = scrape(web.http, source="127.0.0.2")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"
    assert scrape(web.http, source="127.0.0.2", token="not-" + TOKEN).status_code == 403
    allowed = scrape(web.http, source="127.0.0.2", token=TOKEN)
    assert allowed.status_code == 200 and "synctv_breaker_state" in allowed.text
    assert scrape(web.http).status_code == 200  # 127.0.0.1 is in METRICS_ALLOWED_NETWORKS


def test_one_scrape_shows_every_process_of_the_host_after_traffic(stack):
    web, ws, _ = stack
    api = Api(web)
    owner = api.register("metricsowner")
    room = api.create_room(owner, "metrics")
    before = samples(web.http)

    for _ in range(20):
        assert httpx.get(f"{web.http}/healthz", timeout=10).status_code == 200
    wrong = api.client.post(
        "/api/v1/auth/login", json={"username": "metricsowner", "password": "wrong-one-1"}
    )
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_credentials"
    bad = api.client.get("/api/v1/users/me", headers={"Authorization": "Bearer not-a-token"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "token_invalid"
    api.call("PUT", f"rooms/{room['id']}/playback", who=owner, body={"playing": True}, expect=200)

    async def sockets_then_scrape() -> Samples:
        first = await join(ws, room, owner, label="first")
        second = await join(ws, room, owner, label="second")
        try:
            await first.send({"type": "chat", "text": "counted"})
            await second.expect("chat", 10)
            await first.send({"type": "playback", "playing": False})
            await second.expect("playback", 10)
            await first.send({"type": "no-such-type"})
            await first.expect("error", 10)
            for _ in range(60):  # past the frame allowance's burst of 40
                await first.send({"type": "ping", "t": 1})
            await first.expect("error", 10, where=lambda f: f["code"] == "rate_limited")
            refusal = await dial(ws.ws_url(room["id"]), token="not-a-token", label="refused")
            assert (await refusal.next(10))["type"] == "error"
            # Both sockets open on the ws node, seen from the web node's scrape.
            return await asyncio.to_thread(
                wait_for, web.http, lambda s: value(s, "synctv_ws_sockets", node=node_id(ws)) == 2
            )
        finally:
            await close_all(first, second)

    during = run(sockets_then_scrape(), timeout=60)
    assert value(during, "synctv_ws_rooms", node=node_id(ws)) == 1
    after = wait_for(
        web.http,
        lambda s: (
            value(s, "synctv_ws_sockets", node=node_id(ws)) == 0
            and value(s, "synctv_celery_tasks_total", task=SWEEP, outcome="success") >= 1
        ),
    )
    assert value(after, "synctv_ws_rooms", node=node_id(ws)) == 0

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # Requests by view and status, with latency, added up over both gunicorn workers.
    assert (
        grew(
            "django_http_responses_total_by_status_view_method_total",
            status="200",
            view="healthz",
            method="GET",
        )
        == 20
    )
    assert (
        grew("django_http_requests_latency_seconds_by_view_method_count", view="healthz", method="GET") == 20
    )
    assert (
        0
        < value(
            after, "django_http_requests_latency_seconds_by_view_method_sum", view="healthz", method="GET"
        )
        < 20
    )
    assert (
        grew(
            "django_http_responses_total_by_status_view_method_total",
            status="401",
            view="users-me",
            method="GET",
        )
        == 1
    )
    # Authentication failures, REST and WebSocket; the socket's refusal counted by the ws node.
    assert grew("synctv_auth_failures_total", reason="invalid_credentials") == 1
    assert grew("synctv_auth_failures_total", reason="token_invalid") == 2
    # WebSocket messages in and out by type, and the fan-out of the events off Redis.
    assert grew("synctv_ws_messages_received_total", type="chat") == 1
    assert grew("synctv_ws_messages_received_total", type="invalid") == 1
    # 60 pings: what is left of the frame allowance's burst of 40 and what refilled while they
    # were sent pass, the rest are refused.
    pings, refused = (
        grew("synctv_ws_messages_received_total", type="ping"),
        grew("synctv_rate_limited_total", limit="ws_frame"),
    )
    assert pings >= 40 - 3 and refused >= 1 and pings + refused == 60  # 3: the chat, pause, bad frame
    assert grew("synctv_ws_messages_sent_total", type="pong") == pings
    assert grew("synctv_ws_messages_sent_total", type="hello") == 2
    assert grew("synctv_ws_messages_sent_total", type="chat") == 2
    assert grew("synctv_ws_messages_sent_total", type="playback") == 2
    fanouts = grew("synctv_ws_fanout_seconds_count")
    assert fanouts >= 2
    assert 0 < grew("synctv_ws_fanout_seconds_sum") / fanouts < 0.5
    # Playback changes by kind, over REST and the socket alike.
    assert grew("synctv_playback_changes_total", change="play") == 1
    assert grew("synctv_playback_changes_total", change="pause") == 1
    # Breakers of every process: all closed.
    assert value(after, "synctv_breaker_state", breaker="database") == 0
    assert ("synctv_breaker_state", frozenset({("breaker", "redis")})) in after
    assert value(after, "synctv_breaker_opened_total", breaker="redis") == 0
    # Celery (beat sends the failover sweep every second): outcomes, run time, time queued.
    assert value(after, "synctv_celery_task_seconds_count", task=SWEEP) >= 1
    assert value(after, "synctv_celery_task_queued_seconds_count", task=SWEEP) >= 1


SWEEP = "apps.streaming.tasks.failover_sweep"


def node_id(node) -> str:
    return f"{node.name}-{node.port}"
