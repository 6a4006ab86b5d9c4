"""Pulled streams (apps.streaming.relay, keys' relay names, the callbacks): how a relay publishes
without the stream key, which node pulls which stream, and what a relay does with a source that
fails or that the fetch guard refuses. End to end with nginx, ffmpeg and three relay processes:
tests/test_relay_e2e.py."""

from __future__ import annotations

import logging
import time

import pytest

from apps.audit.models import AuditEvent
from apps.core.netguard import UnsafeURL
from apps.core.redis import redis_breaker
from apps.streaming import cluster, keys, publishers, relay
from apps.streaming.models import Stream
from apps.streaming.tests.streams_helpers import (
    callback,
    clean_registry,
    create,
    publish,
    publish_done,
    relay_form,
    relay_publish,
    relay_update,
)

NODES = ("relay-a:1", "relay-b:1", "relay-c:1")
SOURCE = "rtmp://203.0.113.9/live/feed"


# --- relay names ------------------------------------------------------------------------------------


def test_a_relay_name_opens_to_its_stream_and_node():
    name = keys.relay_name("AbC-_123", "node-1.example:8000")
    assert keys.looks_like_relay_name(name) and not keys.looks_like_key(name)
    opened = keys.open_relay_name(name, check_expiry=True)
    assert opened is not None and (opened.stream_id, opened.node) == ("AbC-_123", "node-1.example:8000")
    assert len(keys.relay_name("x" * 16, "n" * keys.RELAY_NODE_MAX)) < 256  # nginx-rtmp's limit


def test_any_change_to_a_relay_name_is_refused():
    name = keys.relay_name("AbC-_123", "node-1")
    prefix, expiry, sig, node, stream = name.split("-", 4)
    changed = {
        "signature": "-".join([prefix, expiry, ("0" if sig[0] != "0" else "1") + sig[1:], node, stream]),
        "expiry": "-".join([prefix, str(int(expiry) + 1), sig, node, stream]),
        "node": "-".join([prefix, expiry, sig, keys.relay_name("s", "node-2").split("-")[3], stream]),
        "stream": "-".join([prefix, expiry, sig, node, stream + "x"]),
        "not base32": "-".join([prefix, expiry, sig, node.upper(), stream]),
    }
    for what, value in changed.items():
        assert keys.open_relay_name(value, check_expiry=False) is None, what


def test_an_expired_relay_name_only_counts_for_a_connection_already_made():
    name = keys.relay_name("AbC", "node-1", now=time.time() - keys.RELAY_NAME_SECONDS - 1)
    assert keys.open_relay_name(name, check_expiry=True) is None
    assert keys.open_relay_name(name, check_expiry=False) is not None


def test_a_node_id_too_long_for_a_relay_is_refused():
    with pytest.raises(ValueError):
        keys.relay_name("AbC", "n" * (keys.RELAY_NODE_MAX + 1))
    with pytest.raises(ValueError):
        relay.RelaySupervisor(node_id="", proxy_url="http://127.0.0.1:1")


# --- the callbacks --------------------------------------------------------------------------------


def _pulled(world, source: str = SOURCE):
    made = create(world)
    Stream.objects.filter(pk=made.id).update(source_url=source)
    return made


def test_a_relay_publishes_a_pulled_stream_under_its_signed_name(world, django_capture_on_commit_callbacks):
    made = _pulled(world)
    answer = relay_publish(made.id, NODES[0])
    assert answer.status_code == 302 and answer["Location"] == made.id
    stream = made.stream
    assert stream.live and stream.publisher_node == NODES[0]
    assert publishers.owner(made.id) == NODES[0]
    assert relay_update(made.id, NODES[0]).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        done = callback("on_publish_done", relay_form("publish_done", made.id, NODES[0]))
    assert done.status_code == 200 and not made.stream.live
    assert made.stream.publisher_node == NODES[0]  # still its node's: that relay starts it again
    assert publishers.owner(made.id) is None


@pytest.mark.parametrize(
    ("why", "change"),
    [
        ("from another machine", {"addr": "198.51.100.23"}),
        ("expired", {"expired": "1"}),
        ("altered", {"altered": "1"}),
    ],
)
def test_a_relay_name_that_is_not_valid_here_is_refused(world, why, change):
    made = _pulled(world)
    name = keys.relay_name(made.id, NODES[0], now=time.time() - 1000 if "expired" in change else None)
    if "altered" in change:
        name = name[:-1] + ("A" if name[-1] != "A" else "B")
    data = relay_form("publish", made.id, NODES[0])
    data["name"] = name
    data["addr"] = change.get("addr", "127.0.0.1")
    assert callback("on_publish", data).status_code == 403, why
    assert not made.stream.live


def test_the_key_does_not_push_to_a_pulled_stream_and_a_relay_not_to_a_pushed_one(world):
    pulled = _pulled(world)
    assert publish(pulled.key).status_code == 403
    pushed = create(world)
    assert relay_publish(pushed.id, NODES[0]).status_code == 403
    reasons = sorted(
        AuditEvent.objects.filter(action="stream.publish_refused").values_list("details__reason", flat=True)
    )
    assert reasons == ["not_pulled", "pulled_stream"]
    assert not pulled.stream.live and not pushed.stream.live


def test_a_relay_of_another_node_than_the_elected_one_is_refused(world):
    made = _pulled(world)
    Stream.objects.filter(pk=made.id).update(publisher_node=NODES[1])  # failover gave it to b
    assert relay_publish(made.id, NODES[0]).status_code == 403
    assert relay_publish(made.id, NODES[1]).status_code == 302


def test_a_key_publish_done_does_not_end_a_relay(world):
    made = _pulled(world)
    assert relay_publish(made.id, NODES[0]).status_code == 302
    assert publish_done(made.key).status_code == 200
    assert made.stream.live


# --- which node pulls which stream ------------------------------------------------------------------


@pytest.fixture
def relays(redis_client):
    clean_registry(redis_client)
    for node in NODES:
        cluster.register(node, relay.ROLE, started=1.0)
    cluster.register("web-only:1", "web", started=1.0)
    yield {node: relay.RelaySupervisor(node_id=node, proxy_url="http://127.0.0.1:9") for node in NODES}
    clean_registry(redis_client)


@pytest.mark.redis
def test_exactly_one_relay_takes_a_new_pulled_stream_the_one_the_ring_elects(world, relays):
    made = _pulled(world)
    pushed = create(world)
    takers = [node for node, supervisor in relays.items() if made.id in supervisor.assigned()]
    assert takers == [publishers.elect(made.id, list(NODES))]
    assert all(pushed.id not in s.assigned() for s in relays.values())


@pytest.mark.redis
def test_a_stream_with_a_publisher_node_is_that_nodes_alone(world, relays):
    made = _pulled(world)
    Stream.objects.filter(pk=made.id).update(publisher_node=NODES[2])
    assert [n for n, s in relays.items() if made.id in s.assigned()] == [NODES[2]]


@pytest.mark.redis
def test_a_closed_room_is_not_pulled(world, relays):
    made = _pulled(world)
    world.room.__class__.objects.filter(pk=world.room.pk).update(closed_at=made.stream.created_at)
    assert all(made.id not in s.assigned() for s in relays.values())


# --- what a relay runs ------------------------------------------------------------------------------


def test_ffmpeg_pulls_hls_through_the_proxy_and_rtmp_from_the_checked_address(settings):
    settings.FETCH_ALLOW_PRIVATE_NETWORKS = True
    hls = relay.ffmpeg_command("https://example.com/live.m3u8", "rtmp://127.0.0.1:1935/live/x", proxy_url="P")
    assert (
        hls[hls.index("-http_proxy") + 1] == "P"
        and hls[hls.index("-i") + 1] == "https://example.com/live.m3u8"
    )
    assert "file" not in hls[hls.index("-protocol_whitelist") + 1].split(",")
    rtmp = relay.ffmpeg_command("rtmp://localhost:1936/app/feed?x=1", "T", proxy_url="P")
    assert rtmp[rtmp.index("-i") + 1] == "rtmp://127.0.0.1:1936/app/feed?x=1"
    settings.FETCH_ALLOW_PRIVATE_NETWORKS = False
    with pytest.raises(UnsafeURL):
        relay.ffmpeg_command("rtmp://localhost:1936/app/feed", "T", proxy_url="P")


@pytest.mark.redis
def test_a_refused_source_is_not_started_and_retried_later(world, relays, settings):
    settings.FETCH_ALLOW_PRIVATE_NETWORKS = False
    made = _pulled(world, "rtmp://127.0.0.1:1/live/feed")  # saved while allowed, refused now
    supervisor = next(s for s in relays.values() if made.id in s.assigned())
    supervisor.tick(now=100.0)
    pull = supervisor.pulls[made.id]
    assert pull.proc is None and "loopback" in pull.last_error
    assert pull.retry_at == 100.0 + relay.BACKOFF_SECONDS[-1]


@pytest.mark.redis
def test_a_pull_that_ends_is_started_again_after_a_growing_delay(world, relays, settings):
    """Real ffmpeg against a port nothing listens on: it exits, and the relay backs off."""
    settings.FETCH_ALLOW_PRIVATE_NETWORKS = True
    made = _pulled(world, "rtmp://127.0.0.1:1/live/feed")
    supervisor = next(s for s in relays.values() if made.id in s.assigned())
    try:
        now = 1000.0
        delays = []
        for _ in range(3):
            supervisor.tick(now=now)
            pull = supervisor.pulls[made.id]
            assert pull.proc is not None
            pull.proc.wait(timeout=20)
            supervisor.tick(now=now)  # reaped: not started again yet
            assert pull.proc is None and pull.retry_at > now
            delays.append(pull.retry_at - now)
            now = pull.retry_at
        assert delays == list(relay.BACKOFF_SECONDS[:3])
        assert pull.last_error
        # The stream goes to another node: this one stops pulling it.
        Stream.objects.filter(pk=made.id).update(publisher_node="elsewhere:1")
        supervisor.tick(now=now)
        assert made.id not in supervisor.pulls
    finally:
        supervisor.stop_all()


@pytest.mark.redis
def test_a_registry_outage_leaves_the_pulls_as_they_are_and_says_so_once(world, relays, settings, caplog):
    settings.FETCH_ALLOW_PRIVATE_NETWORKS = True
    made = _pulled(world, "rtmp://127.0.0.1:1/live/feed")
    supervisor = next(s for s in relays.values() if made.id in s.assigned())
    supervisor.tick(now=1.0)
    assert made.id in supervisor.pulls
    working = settings.REDIS_URL
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    caplog.set_level(logging.WARNING, logger="apps.streaming.relay")
    try:  # the stream has no node yet: only the ring (in Redis) can tell whose it is
        supervisor.tick(now=2.0)
        supervisor.tick(now=3.0)
        assert made.id in supervisor.pulls and supervisor.blind  # nothing stopped on a guess
    finally:
        settings.REDIS_URL = working
        redis_breaker.reset()
    assert caplog.text.count("cannot tell its streams") == 1
    Stream.objects.filter(pk=made.id).update(publisher_node="elsewhere:1")
    supervisor.tick(now=4.0)
    assert made.id not in supervisor.pulls and not supervisor.blind
    assert caplog.text.count("can tell its streams again") == 1
    supervisor.stop_all()
