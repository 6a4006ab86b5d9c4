"""``manage.py cluster_status`` on a real Redis: nodes, ring and publishers as an operator sees them."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command, load_command_class

from apps.core.redis import get_redis, redis_breaker
from apps.streaming import cluster, publishers
from apps.streaming.models import Stream
from apps.streaming.tests.streams_helpers import clean_registry, create


@pytest.fixture
def clean_redis(redis_client):
    clean_registry(redis_client)
    yield redis_client
    clean_registry(redis_client)


def run(*args: str) -> str:
    out = StringIO()
    call_command("cluster_status", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.mark.redis
def test_it_shows_nodes_ring_and_publishers(clean_redis, world):
    cluster.register("node-a", "web", started=1.0)
    cluster.register("node-a", "relay", started=1.0)
    cluster.register("node-b", "relay", started=1.0)
    cluster.register("node-c", "worker", started=1.0)  # no relay: not in the ring
    cluster.register("node-d", "ws", started=1.0)
    cluster.report_sockets("node-d", 17)
    cluster.register("node-e", "ws", started=1.0)  # just started: has not reported yet
    cluster.report_sockets("node-gone", 40)  # no live entry: not listed
    pulled = create(world)
    Stream.objects.filter(pk=pulled.id).update(source_url="rtmp://203.0.113.9/live/feed")
    assert publishers.claim(pulled.id, "node-a")
    assert publishers.claim("pushed-1", "node-a")
    assert publishers.claim("stream-2", "gone-node", ttl=0.001)

    data = json.loads(run("--json"))
    assert [(n["id"], n["role"]) for n in data["nodes"]] == [
        ("node-a", "relay"),
        ("node-a", "web"),
        ("node-b", "relay"),
        ("node-c", "worker"),
        ("node-d", "ws"),
        ("node-e", "ws"),
    ]
    assert [n["sockets"] for n in data["nodes"]] == [None, None, None, None, 17, 0]
    assert [r["node"] for r in data["ring"]] == ["node-a", "node-b"]
    assert {r["vnodes"] for r in data["ring"]} == {160}
    assert sum(r["share"] for r in data["ring"]) == pytest.approx(1.0)
    by_stream = {p["stream"]: p for p in data["publishers"]}
    assert by_stream[pulled.id]["node"] == "node-a" and 290 < by_stream[pulled.id]["ttl"] <= 300
    assert by_stream[pulled.id]["pulled"] and by_stream[pulled.id]["elected_if_failed"] == "node-b"
    assert not by_stream["pushed-1"]["pulled"] and by_stream["pushed-1"]["elected_if_failed"] is None
    assert by_stream["stream-2"]["node"] is None and by_stream["stream-2"]["ttl"] is None

    text = run()
    assert "nodes (6)" in text and "ring (2 relay nodes)" in text and "publishers (3)" in text
    assert "node-c  worker" in text
    sockets_column = {
        tuple(line.split()[:2]): line.split()[-1] for line in text.splitlines() if "s ago" in line
    }
    assert sockets_column[("node-d", "ws")] == "17" and sockets_column[("node-e", "ws")] == "0"
    assert sockets_column[("node-a", "web")] == "-"
    assert "(expired: failing over)" in text and "(pushed: waits for its streamer)" in text
    share_a = next(r["share"] for r in data["ring"] if r["node"] == "node-a")
    assert f"{share_a:.1%}" in text


@pytest.mark.redis
def test_an_empty_cluster_says_none(clean_redis):
    assert run().count("(none)") == 3


@pytest.mark.redis
def test_redis_down_is_a_command_error_not_a_traceback(clean_redis, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    try:
        with pytest.raises(CommandError, match="Redis is not answering"):
            run()
    finally:
        redis_breaker.reset()
    assert get_redis() is not None


def test_help_describes_the_command():
    command = load_command_class("apps.streaming", "cluster_status")
    text = " ".join(command.create_parser("manage.py", "cluster_status").format_help().split())
    assert "live nodes" in text and "hash ring" in text and "publishers" in text and "--json" in text
