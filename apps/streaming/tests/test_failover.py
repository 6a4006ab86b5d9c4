"""Publisher failover (apps.streaming.failover) with three node ids, on the real registry: a node
that leaves or goes silent loses its streams, a pulled stream moves to the node the ring elects
and goes live there again, a pushed one waits for its streamer, the room hears
``publisher_changed``, and two sweeps at once elect once."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest

from apps.audit.models import AuditEvent
from apps.core import realtime
from apps.core.redis import redis_breaker
from apps.streaming import cluster, failover, publishers
from apps.streaming.models import Stream
from apps.streaming.tests.streams_helpers import clean_registry, create, publish, relay_publish, relay_update

NODES = ("node-a:8000", "node-b:8000", "node-c:8000")
PULL_SOURCE = "rtmp://203.0.113.9/live/feed"
ALLOWED = (200, 204, 302)  # on_publish allows with a redirect to the opaque id


@pytest.fixture
def three_nodes(redis_client, settings):
    """Three live node ids, each running a relay; this process publishes as node-a (the
    callbacks' node), and pulled streams are published by node-a's relay."""

    clean_registry(redis_client)
    for node in NODES:
        cluster.register(node, "web", started=1.0)
        cluster.register(node, "relay", started=1.0)
    settings.SYNCTV_NODE_ID = NODES[0]
    yield redis_client
    clean_registry(redis_client)


def _listen(client, channel: str):
    pubsub = client.pubsub()
    pubsub.subscribe(channel)
    assert pubsub.get_message(timeout=2)["type"] == "subscribe"
    return pubsub


def _heard(pubsub, wait: float = 1.0) -> list[dict]:
    found, deadline = [], time.monotonic() + wait
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.1)
        if message and message["type"] == "message":
            found.append(json.loads(message["data"]))
    return found


def _live_on_a(world, **stream_fields):
    made = create(world)
    if stream_fields:
        Stream.objects.filter(pk=made.id).update(**stream_fields)
    if stream_fields.get("source_url"):
        assert relay_publish(made.id, NODES[0]).status_code in ALLOWED
    else:
        assert publish(made.key).status_code in ALLOWED
    assert publishers.owner(made.id) == NODES[0] and made.stream.live
    return made


@pytest.mark.redis
def test_a_healthy_publisher_is_left_alone(world, three_nodes):
    made = _live_on_a(world)
    assert failover.failover_sweep() == []
    assert made.stream.live and publishers.owner(made.id) == NODES[0]


@pytest.mark.redis
def test_a_pushed_stream_whose_node_left_is_cleared_and_the_room_told(
    world, three_nodes, django_capture_on_commit_callbacks
):
    made = _live_on_a(world)
    room_events = _listen(three_nodes, realtime.room_channel(world.room.pk))
    cluster.leave(NODES[0])
    with django_capture_on_commit_callbacks(execute=True):
        [result] = failover.failover_sweep()
    assert (result.stream_id, result.failed_node, result.new_node) == (made.id, NODES[0], "")
    stream = made.stream
    assert not stream.live and stream.publisher_node == "" and stream.live_since is None
    assert publishers.owner(made.id) is None and publishers.all_publishers() == []
    heard = _heard(room_events)
    room_events.close()
    assert [(e["type"], e["stream_id"], e["node"]) for e in heard] == [("publisher_changed", made.id, "")]
    audit = AuditEvent.objects.filter(action="stream.failover").get()
    assert audit.resource_id == made.id and audit.details["failed_node"] == NODES[0]
    assert failover.failover_sweep() == []  # done: nothing left to fail over


@pytest.mark.redis
def test_a_silent_pulled_stream_moves_to_the_elected_node_and_goes_live_there(
    world, three_nodes, settings, django_capture_on_commit_callbacks
):
    made = _live_on_a(world, source_url=PULL_SOURCE)
    time.sleep(0.4)
    assert failover.failover_sweep(max_silence=5) == []  # silent for less than the limit
    nodes_hear = _listen(three_nodes, cluster.CHANNEL)
    with django_capture_on_commit_callbacks(execute=True):
        [result] = failover.failover_sweep(max_silence=0.3)  # node-a still beats, but is silent
    expected = publishers.elect(made.id, list(NODES[1:]))
    assert result.new_node == expected and result.failed_node == NODES[0]
    assert publishers.owner(made.id) == expected
    stream = made.stream
    assert stream.publisher_node == expected and not stream.live
    assert [(e["type"], e["node"]) for e in _heard(nodes_hear)] == [("publisher_changed", expected)]
    nodes_hear.close()
    # The elected node restarts the pull: its relay's on_publish is allowed; the old node's
    # on_update is refused, and so is a third node's relay.
    assert relay_update(made.id, NODES[0]).status_code == 403
    [other] = [n for n in NODES[1:] if n != expected]
    assert relay_publish(made.id, other, clientid="8").status_code == 403
    assert relay_publish(made.id, expected, clientid="9").status_code in ALLOWED
    stream = made.stream
    assert stream.live and stream.publisher_node == expected
    assert failover.failover_sweep(max_silence=5) == []


@pytest.mark.redis
def test_an_elected_node_that_never_publishes_is_replaced_in_turn(
    world, three_nodes, django_capture_on_commit_callbacks
):
    made = _live_on_a(world, source_url=PULL_SOURCE)
    cluster.leave(NODES[0])
    with django_capture_on_commit_callbacks(execute=True):
        [first] = failover.failover_sweep()
    cluster.leave(first.new_node)
    with django_capture_on_commit_callbacks(execute=True):
        [second] = failover.failover_sweep()
    [last] = [n for n in NODES[1:] if n != first.new_node]
    assert (second.failed_node, second.new_node) == (first.new_node, last)
    assert publishers.owner(made.id) == last


@pytest.mark.redis
def test_with_no_live_node_left_a_pulled_stream_waits(world, three_nodes, django_capture_on_commit_callbacks):
    made = _live_on_a(world, source_url=PULL_SOURCE)
    for node in NODES:
        cluster.leave(node)
    with django_capture_on_commit_callbacks(execute=True):
        [result] = failover.failover_sweep()
    assert result.new_node == "" and publishers.owner(made.id) is None
    assert made.stream.publisher_node == "" and not made.stream.live


@pytest.mark.redis
def test_a_stream_locked_by_another_sweep_is_left_to_it(world, three_nodes):
    made = _live_on_a(world)
    cluster.leave(NODES[0])
    token = publishers.acquire_failover_lock(made.id)
    assert failover.failover_sweep() == []
    assert made.stream.live
    assert publishers.release_failover_lock(made.id, token)


@pytest.mark.redis
def test_a_leftover_entry_of_a_stopped_stream_is_tidied_without_an_announcement(world, three_nodes):
    made = create(world)
    assert publishers.claim(made.id, NODES[2], ttl=0.2)
    time.sleep(0.3)
    assert failover.failover_sweep() == []
    assert publishers.all_publishers() == []
    assert not AuditEvent.objects.filter(action="stream.failover").exists()


@pytest.mark.redis
def test_redis_down_skips_the_sweep_with_one_warning_per_outage(world, three_nodes, settings, caplog):
    """The job runs every second: an outage is one line when it starts and one when it ends."""
    failover._outage["failing"] = False
    working = settings.REDIS_URL
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    caplog.set_level(logging.WARNING, logger="apps.streaming.failover")
    try:
        assert [failover.sweep_quietly() for _ in range(3)] == [0, 0, 0]
    finally:
        settings.REDIS_URL = working
        redis_breaker.reset()
    assert caplog.text.count("failover sweep skipped: publisher registry unavailable") == 1
    assert failover.sweep_quietly() == 0 and failover.sweep_quietly() == 0
    assert caplog.text.count("failover sweep runs again") == 1


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_sweeps_at_once_elect_once(world, three_nodes):
    made = _live_on_a(world, source_url=PULL_SOURCE)
    room_events = _listen(three_nodes, realtime.room_channel(world.room.pk))
    cluster.leave(NODES[0])
    barrier = threading.Barrier(4)
    results: list[list[failover.Failover]] = []

    def sweep() -> None:
        from django.db import connection

        try:
            barrier.wait()
            results.append(failover.failover_sweep())
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elections = [r for batch in results for r in batch]
    assert len(results) == 4 and len(elections) == 1
    assert publishers.owner(made.id) == elections[0].new_node == made.stream.publisher_node
    assert AuditEvent.objects.filter(action="stream.failover").count() == 1
    heard = _heard(room_events)
    room_events.close()
    assert [e["type"] for e in heard] == ["publisher_changed"]


def test_the_embedded_default_fails_over_on_process_memory(
    world, settings, django_capture_on_commit_callbacks
):
    """No REDIS_URL: the registries live in this process, the same rules apply."""
    settings.REDIS_URL = ""
    cluster._local.clear()
    publishers._local.values.clear()
    publishers._local.index.clear()
    for node in NODES:
        cluster.register(node, "relay", started=1.0)
    settings.SYNCTV_NODE_ID = NODES[0]
    made = _live_on_a(world, source_url=PULL_SOURCE)
    assert failover.failover_sweep() == []
    cluster.leave(NODES[0])
    with django_capture_on_commit_callbacks(execute=True):
        [result] = failover.failover_sweep()
    assert result.new_node == publishers.elect(made.id, list(NODES[1:])) == publishers.owner(made.id)
    assert made.stream.publisher_node == result.new_node
    cluster._local.clear()
    publishers.forget(made.id)


@pytest.mark.redis
def test_beat_runs_the_sweep_every_second_as_a_celery_task(world, three_nodes, settings):
    from apps.streaming.tasks import failover_sweep as task

    entry = settings.CELERY_BEAT_SCHEDULE["stream-failover-sweep"]
    assert entry["task"] == task.name
    assert entry["schedule"].total_seconds() == 1 and entry["options"]["expires"] == 1
    made = _live_on_a(world)
    assert task.apply().get() == 0
    cluster.leave(NODES[0])
    assert task.apply().get() == 1
    assert not made.stream.live


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_real_beat_and_two_workers_fail_over_when_heartbeats_stop(world, three_nodes, settings, tmp_path):
    """The Procfile's beat and two workers (node-b, node-c): node-a's heartbeats stop, its entry
    expires, and within seconds exactly one election happens and the room hears it."""
    from tests.procs import free_port, procfile_command, production_env, running

    made = _live_on_a(world, source_url=PULL_SOURCE)
    cluster.leave(NODES[0])
    cluster.register(NODES[0], "relay", started=1.0, ttl=3)  # its relay's last heartbeat
    db = settings.DATABASES["default"]
    env = production_env(
        database_url=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        redis_url=settings.REDIS_URL,
        broker_url=settings.CELERY_BROKER_URL,
        port=free_port(),
        var_dir=str(tmp_path / "var"),
    )
    env["RTMP_CALLBACK_SECRET"] = env["HLS_SIGNING_SECRET"] = "cluster-test-secret-0123456789"
    env["CELERY_CONCURRENCY"] = "1"
    room_events = _listen(three_nodes, realtime.room_channel(world.room.pk))
    with (
        running(procfile_command("worker"), env={**env, "SYNCTV_NODE_ID": NODES[1]}, log=tmp_path / "w1.log"),
        running(procfile_command("worker"), env={**env, "SYNCTV_NODE_ID": NODES[2]}, log=tmp_path / "w2.log"),
        running(procfile_command("beat"), env={**env, "SYNCTV_NODE_ID": "beat"}, log=tmp_path / "beat.log"),
    ):
        deadline = time.monotonic() + 45
        while not made.stream.publisher_node.startswith(("node-b", "node-c")):
            logs = "".join((tmp_path / f).read_text()[-1500:] for f in ("w1.log", "w2.log", "beat.log"))
            assert time.monotonic() < deadline, logs
            time.sleep(0.2)
        time.sleep(3)  # more sweeps run: none may elect again
    heard = _heard(room_events, wait=0.5)
    room_events.close()
    expected = publishers.elect(made.id, list(NODES[1:]))
    assert made.stream.publisher_node == expected == publishers.owner(made.id)
    assert [(e["type"], e["node"]) for e in heard] == [("publisher_changed", expected)]
    assert AuditEvent.objects.filter(action="stream.failover").count() == 1
    # The sweep ran every second, without its three routine lines a second in the logs.
    logs = {name: (tmp_path / name).read_text() for name in ("w1.log", "w2.log", "beat.log")}
    assert "beat: Starting" in logs["beat.log"]
    routine = [
        line
        for text in logs.values()
        for line in text.splitlines()
        if "failover_sweep" in line and ("received" in line or "succeeded" in line or "Sending due" in line)
    ]
    assert routine == [], routine


def test_the_routine_lines_of_the_every_second_job_are_dropped_and_nothing_else():
    from synctv.celery import QuietRoutineLines

    def record(level: int, message: str, *args: object) -> logging.LogRecord:
        return logging.LogRecord("celery.app.trace", level, __file__, 1, message, args, None)

    quiet = QuietRoutineLines()
    sweep = "apps.streaming.tasks.failover_sweep"
    assert not quiet.filter(record(logging.INFO, "Task %s[%s] succeeded in 0.01s: 0", sweep, "x"))
    assert not quiet.filter(record(logging.INFO, "Scheduler: Sending due task s (%s)", sweep))
    assert quiet.filter(record(logging.ERROR, "Task %s[%s] raised unexpected: boom", sweep, "x"))
    assert quiet.filter(record(logging.INFO, "Task %s[%s] succeeded", "apps.mail.tasks.send_email", "x"))
    assert quiet.filter(record(logging.INFO, "bad %d format", "not a number"))
    assert quiet.filter(record(logging.DEBUG, "Current schedule: %s", f"<{sweep}> <purge>"))
