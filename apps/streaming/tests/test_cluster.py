"""The cluster registry (apps.streaming.cluster) on a real Redis, and on process memory in the
embedded default: heartbeats with a TTL, live nodes, leaving at once, Redis going away."""

from __future__ import annotations

import json
import logging
import os
import signal
import time

import pytest

from apps.core.redis import RedisUnavailable, redis_breaker
from apps.streaming import cluster
from apps.streaming.tests.streams_helpers import both_registries, clean_registry

both = both_registries


@both
def test_registered_nodes_are_live_until_their_ttl_runs_out(registry):
    cluster.register("n1", "web", started=100.0)
    cluster.register("n1", "ws", started=101.0)
    cluster.register("n2", "worker", started=102.0, ttl=1)
    nodes = cluster.live_nodes()
    assert [(n.id, n.role, n.started) for n in nodes] == [
        ("n1", "web", 100.0),
        ("n1", "ws", 101.0),
        ("n2", "worker", 102.0),
    ]
    assert all(abs(n.last_seen - time.time()) < 5 for n in nodes)
    assert cluster.live_node_ids() == ["n1", "n2"]
    time.sleep(1.2)
    assert cluster.live_node_ids() == ["n1"]


@pytest.mark.redis
@pytest.mark.parametrize("registry", ["redis"], indirect=True)
def test_an_expired_entry_is_pruned_from_the_index_and_a_new_heartbeat_brings_it_back(registry):
    cluster.register("n2", "worker", started=1.0, ttl=1)
    assert registry.sismember(cluster.INDEX_KEY, "worker:n2")
    time.sleep(1.2)
    assert cluster.live_nodes() == []
    assert not registry.sismember(cluster.INDEX_KEY, "worker:n2")
    cluster.register("n2", "worker", started=1.0)
    assert cluster.live_node_ids() == ["n2"]
    assert json.loads(registry.get("cluster:node:worker:n2"))["id"] == "n2"
    assert 14 <= registry.ttl("cluster:node:worker:n2") <= cluster.NODE_TTL_SECONDS


@both
def test_leave_removes_a_role_or_the_whole_node_at_once(registry):
    for role in ("web", "ws", "worker"):
        cluster.register("n1", role, started=1.0)
    cluster.register("n2", "ws", started=1.0)
    assert cluster.leave("n1", "ws") == ["ws:n1"]
    assert [(n.id, n.role) for n in cluster.live_nodes()] == [("n1", "web"), ("n1", "worker"), ("n2", "ws")]
    assert sorted(cluster.leave("n1")) == ["web:n1", "worker:n1"]
    assert cluster.live_node_ids() == ["n2"]
    assert cluster.leave("n1") == []


@pytest.mark.redis
@pytest.mark.parametrize("registry", ["redis"], indirect=True)
def test_leave_announces_node_leaving_on_the_cluster_channel(registry):
    pubsub = registry.pubsub()
    pubsub.subscribe(cluster.CHANNEL)
    assert pubsub.get_message(timeout=2)["type"] == "subscribe"
    cluster.register("n3", "ws", started=1.0)
    cluster.leave("n3", "ws")
    message = pubsub.get_message(timeout=2)
    pubsub.close()
    event = json.loads(message["data"])
    assert event["type"] == "node_leaving" and event["node"] == "n3" and event["role"] == "ws"
    assert abs(event["at"] - time.time()) < 5


@both
def test_the_heartbeat_thread_registers_now_and_keeps_the_entry_alive(registry):
    beat = cluster.Heartbeat("worker", node_id="hb-node", interval=0.2, ttl=1).start()
    try:
        deadline = time.monotonic() + 2
        while "hb-node" not in cluster.live_node_ids() and time.monotonic() < deadline:
            time.sleep(0.05)
        first = cluster.live_nodes()[0].last_seen
        time.sleep(1.5)  # past the 1 s TTL: only the heartbeats keep it
        node = cluster.live_nodes()[0]
        assert (node.id, node.role, node.started) == ("hb-node", "worker", beat.started)
        assert node.last_seen > first
    finally:
        beat.stop()
    assert cluster.live_nodes() == []  # stop() left at once: no wait for the TTL


@pytest.mark.redis
@pytest.mark.parametrize("registry", ["redis"], indirect=True)
def test_redis_down_fails_quietly_logs_once_and_registers_again_when_back(registry, settings, caplog):
    beat = cluster.Heartbeat("ws", node_id="flaky", ttl=5)
    working = settings.REDIS_URL
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    caplog.set_level(logging.INFO, logger="apps.streaming.cluster")
    try:
        assert beat.beat() is False
        assert beat.beat() is False
        assert beat.beat() is False
    finally:
        settings.REDIS_URL = working
        redis_breaker.reset()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "flaky/ws" in warnings[0].getMessage()
    assert beat.beat() is True
    assert cluster.live_node_ids() == ["flaky"]
    assert any("registered again" in r.getMessage() for r in caplog.records)


@pytest.mark.redis
@pytest.mark.parametrize("registry", ["redis"], indirect=True)
def test_live_nodes_raises_redis_unavailable_when_redis_does_not_answer(registry, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    try:
        with pytest.raises(RedisUnavailable):
            cluster.live_nodes()
    finally:
        redis_breaker.reset()


def test_start_heartbeat_starts_one_per_role_per_process(settings):
    settings.REDIS_URL = ""
    cluster._local.clear()
    try:
        first = cluster.start_heartbeat("worker")
        assert cluster.start_heartbeat("worker") is first
        deadline = time.monotonic() + 2
        while settings.SYNCTV_NODE_ID not in cluster.live_node_ids() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cluster.live_node_ids() == [settings.SYNCTV_NODE_ID]
    finally:
        cluster.stop_heartbeat("worker")
    assert cluster.live_nodes() == []


@pytest.mark.parametrize(
    ("argv0", "role"),
    [
        ("/srv/app/.venv/bin/gunicorn", "web"),
        ("/srv/app/.venv/lib/python3.11/site-packages/gunicorn/__main__.py", "web"),  # python -m
        ("/srv/app/.venv/bin/uvicorn", "ws"),
        ("/srv/app/.venv/bin/celery", None),  # workers join from Celery's signals
        ("manage.py", None),
        ("/srv/app/.venv/bin/pytest", None),
        ("", None),
    ],
)
def test_the_server_command_tells_the_role(argv0, role):
    assert cluster.server_role([argv0, "--flag"]) == role


# --- the real processes ------------------------------------------------------------------------


def _roles_of(node_id: str) -> set[str]:
    return {n.role for n in cluster.live_nodes() if n.id == node_id}


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.parametrize(
    ("process", "role", "leaves_on_sigterm"),
    [("ws", "ws", True), ("worker", "worker", True), ("web", "web", False)],
)
def test_procfile_processes_register_and_ws_and_worker_leave_on_sigterm(
    process, role, leaves_on_sigterm, redis_client, tmp_path, settings
):
    from tests.procs import free_port, procfile_command, production_env, running, wait_http, wait_until

    clean_registry(redis_client)
    node_id = f"proc-{process}-{time.monotonic_ns()}"
    db = settings.DATABASES["default"]
    env = production_env(
        database_url=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        redis_url=settings.REDIS_URL,
        broker_url=settings.REDIS_URL,
        port=free_port(),
        var_dir=str(tmp_path / "var"),
    )
    env["SYNCTV_NODE_ID"] = node_id
    env["RTMP_CALLBACK_SECRET"] = env["HLS_SIGNING_SECRET"] = "cluster-test-secret-0123456789"
    log = tmp_path / f"{process}.log"
    pubsub = redis_client.pubsub()
    pubsub.subscribe(cluster.CHANNEL)
    try:
        with running(procfile_command(process), env=env, log=log) as proc:
            try:
                wait_until(lambda: proc.poll() is not None or role in _roles_of(node_id), timeout=60)
                assert proc.poll() is None
                if process != "worker":  # registered on import: wait until it serves (SIGTERM handled)
                    wait_http(f"http://127.0.0.1:{env['PORT']}/healthz", proc=proc, log=log, timeout=30)
            except AssertionError:
                raise AssertionError(log.read_text()[-4000:]) from None
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
            if leaves_on_sigterm:
                # Gone at once, not after the 15 s TTL, and announced.
                assert _roles_of(node_id) == set(), log.read_text()[-4000:]
                leaving = [
                    json.loads(m["data"])
                    for m in iter(lambda: pubsub.get_message(timeout=1), None)
                    if m["type"] == "message"
                ]
                assert {"type": "node_leaving", "node": node_id, "role": role} in [
                    {k: e[k] for k in ("type", "node", "role")} for e in leaving
                ]
            else:  # gunicorn workers come and go (max-requests): the entry expires by its TTL
                assert 0 < redis_client.ttl(f"cluster:node:web:{node_id}") <= cluster.NODE_TTL_SECONDS
    finally:
        pubsub.close()
        clean_registry(redis_client)
