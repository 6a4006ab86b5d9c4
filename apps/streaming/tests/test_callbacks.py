"""The RTMP server's callbacks (/internal/rtmp/...): who may call them, what they allow and
refuse, and that bad input changes nothing and never answers 500."""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.core import realtime
from apps.rooms.tests.conftest import db_state
from apps.streaming import publishers
from apps.streaming.models import Stream
from apps.streaming.tests.streams_helpers import (
    CALLBACK,
    callback,
    create,
    form,
    publish,
    publish_done,
    update,
)


def _state():
    return db_state(), list(Stream.objects.order_by("pk").values())


def test_publish_with_the_key_goes_live_under_the_opaque_id(world):
    made = create(world)
    response = publish(made.key)
    assert response.status_code == 302 and response["Location"] == made.id
    assert made.key not in response.content.decode() and made.key not in str(response.headers)
    stream = made.stream
    assert stream.live and stream.publisher_node == settings.SYNCTV_NODE_ID and stream.live_since
    assert publishers.owner(made.id) == settings.SYNCTV_NODE_ID
    event = AuditEvent.objects.get(action="stream.publish_start")
    assert event.resource_id == made.id and event.room_id == world.room.pk and event.ip == "198.51.100.23"
    status = world.guest.client.get(world.url(f"streams/{made.id}")).json()
    assert status["live"] is True and status["publisher_node"] == settings.SYNCTV_NODE_ID


def test_update_keeps_the_publisher_and_done_ends_it(world, django_capture_on_commit_callbacks):
    made = create(world)
    publish(made.key)
    Stream.objects.filter(pk=made.id).update(publisher_seen_at=timezone.now() - timedelta(seconds=20))
    assert update(made.key).status_code == 200
    assert timezone.now() - made.stream.publisher_seen_at < timedelta(seconds=5)
    with django_capture_on_commit_callbacks(execute=True):
        assert publish_done(made.key).status_code == 200
    stream = made.stream
    assert not stream.live and stream.publisher_node == "" and stream.live_since is None
    assert publishers.owner(made.id) is None
    assert AuditEvent.objects.filter(action="stream.publish_stop", resource_id=made.id).count() == 1
    assert update(made.key).status_code == 403  # no longer the publisher: nginx drops it


@pytest.mark.redis
def test_the_room_hears_when_a_publisher_starts_and_stops(
    world, redis_client, django_capture_on_commit_callbacks
):
    """So pages switch between "waiting" and playing at once, not at their next poll or when
    hls.js gives up on a playlist that stopped."""
    made = create(world)
    room_events = redis_client.pubsub()
    room_events.subscribe(realtime.room_channel(world.room.pk))
    assert room_events.get_message(timeout=2)["type"] == "subscribe"
    with django_capture_on_commit_callbacks(execute=True):
        assert publish(made.key).status_code == 302
        assert update(made.key).status_code == 200  # nothing to announce
        assert publish_done(made.key).status_code == 200
        assert publish_done(made.key).status_code == 200  # not on record any more: nothing
    heard, deadline = [], time.monotonic() + 1.0
    while time.monotonic() < deadline:
        message = room_events.get_message(timeout=0.1)
        if message and message["type"] == "message":
            heard.append(json.loads(message["data"]))
    room_events.close()
    node = settings.SYNCTV_NODE_ID
    assert [(e["type"], e["stream_id"], e["node"]) for e in heard] == [
        ("publisher_changed", made.id, node),
        ("publisher_changed", made.id, ""),
    ]


def test_updates_of_play_sessions_are_allowed_and_change_nothing(world):
    """nginx-rtmp sends on_update for play sessions too; the players of `live` are local (the push
    that feeds HLS), and refusing them dropped the push every 10 s: viewers stalled."""
    made = create(world)
    publish(made.key)
    before = made.stream.publisher_seen_at
    response = callback("on_update", form("update_play", made.id, "8", time="10", timestamp="10000"))
    assert response.status_code == 200
    assert made.stream.publisher_seen_at == before and made.stream.live
    outside = callback("on_update", form("update_play", made.id, "8"), remote="203.0.113.9")
    assert outside.status_code == 403  # still only from the RTMP server


@pytest.mark.parametrize("key", ["sk_" + "A" * 43, "sk_short", "not-a-key", ""])
def test_a_wrong_key_is_refused(world, key):
    made = create(world)
    response = publish(key)
    assert response.status_code == 403 and not made.stream.live
    refused = AuditEvent.objects.filter(action="stream.publish_refused")
    # Key-shaped guesses are audited (no key in the row); garbage is refused before any lookup.
    assert refused.count() == (1 if key.startswith("sk_") and len(key) == 46 else 0)
    assert all(key not in str(e.details) for e in refused)


def test_a_wrong_key_in_a_loop_does_not_flood_the_audit_log(world, settings):
    settings.RATELIMITS = {**settings.RATELIMITS, "rtmp_refused_ip": "5/m"}
    made = create(world)
    wrong = "sk_" + "B" * 43
    answers = [publish(wrong, addr="198.51.100.23").status_code for _ in range(8)]
    assert answers == [403] * 8 and not made.stream.live
    refused = AuditEvent.objects.filter(action="stream.publish_refused")
    assert refused.count() == 5  # the limit's worth; every attempt was still refused
    assert publish(wrong, addr="198.51.100.99").status_code == 403
    assert refused.count() == 6  # another address is audited as before
    assert publish(made.key, addr="198.51.100.23").status_code == 302  # the right key still works


def test_a_second_publisher_is_refused_and_its_end_changes_nothing(world):
    made = create(world)
    assert publish(made.key, clientid="7").status_code == 302
    assert publish(made.key, clientid="8").status_code == 403
    # nginx-rtmp ends the refused one's session: its publish_done must not end the first.
    assert publish_done(made.key, clientid="8").status_code == 200
    assert made.stream.live and made.stream.publisher_client == "7"
    assert update(made.key, clientid="8").status_code == 403
    assert update(made.key, clientid="7").status_code == 200
    reasons = [e.details["reason"] for e in AuditEvent.objects.filter(action="stream.publish_refused")]
    assert reasons == ["already_live"]


def test_another_nodes_claim_is_refused(world):
    made = create(world)
    assert publishers.claim(made.id, "other-node:8000")
    assert publish(made.key).status_code == 403 and not made.stream.live
    reasons = [e.details["reason"] for e in AuditEvent.objects.filter(action="stream.publish_refused")]
    assert reasons == ["claimed_by_another_node"]


def test_a_silent_publisher_on_record_can_be_replaced(world):
    made = create(world)
    publish(made.key, clientid="7")
    Stream.objects.filter(pk=made.id).update(publisher_seen_at=timezone.now() - timedelta(seconds=31))
    assert publish(made.key, clientid="9").status_code == 302
    assert made.stream.publisher_client == "9"


def test_a_closed_room_refuses_publishers(world):
    made = create(world)
    type(world.room).objects.filter(pk=world.room.pk).update(closed_at=timezone.now())
    assert publish(made.key).status_code == 403 and not made.stream.live


def test_a_cut_publisher_is_refused_at_its_next_update(world, django_capture_on_commit_callbacks):
    made = create(world)
    publish(made.key)
    with django_capture_on_commit_callbacks(execute=True):
        response = world.member.client.post(world.url(f"streams/{made.id}/rotate-key"))
    assert response.status_code == 200
    assert publishers.owner(made.id) is None  # the registry gave the stream up
    assert update(made.key).status_code == 403


def test_on_play_is_refused(world):
    made = create(world)
    publish(made.key)
    data = form("play", made.id)
    assert callback("on_play", data).status_code == 403
    assert callback("on_play", form("play", made.key)).status_code == 403


@pytest.mark.parametrize("which", ["on_publish", "on_update", "on_publish_done"])
@pytest.mark.parametrize(
    ("secret", "remote"),
    [
        ("wrong", "127.0.0.1"),
        ("", "127.0.0.1"),
        (None, "198.51.100.7"),  # the right secret from outside the callback networks
        (None, "::ffff:198.51.100.7"),
        (None, "not-an-address"),
    ],
)
def test_only_the_rtmp_server_may_call(world, which, secret, remote):
    made = create(world)
    if which != "on_publish":
        publish(made.key)
    call = {"on_publish": "publish", "on_update": "update_publish", "on_publish_done": "publish_done"}[which]
    before = _state()
    response = callback(which, form(call, made.key), secret=secret, remote=remote)
    assert response.status_code == 403
    assert _state() == before


def test_the_secret_is_required_at_all(world):
    made = create(world)
    before = _state()
    response = Client().post(f"{CALLBACK}on_publish", form("publish", made.key))
    assert response.status_code == 403 and _state() == before


def test_loopback_ipv6_is_a_callback_network(world):
    made = create(world)
    assert callback("on_publish", form("publish", made.key), remote="::1").status_code == 302


def _garbage(key: str) -> list[tuple[str, object]]:
    return [
        ("form", {}),
        ("form", {"call": "publish"}),
        ("form", {k: v for k, v in form("publish", key).items() if k != "clientid"}),
        ("form", form("publish", key, clientid="x1")),
        ("form", form("publish", key, clientid="9" * 30)),
        ("form", form("play", key)),  # the wrong call for this callback
        ("form", form("publish", key + "\x00")),
        ("form", form("publish", "sk_" + "é" * 43)),
        ("form", form("publish", "x" * 100_000)),
        ("raw", b"\xff\xfe\x00garbage"),
        ("multipart", b"--b\r\nnot a part"),
        ("json", b'{"name": "%s"}' % key.encode()),
    ]


@pytest.mark.parametrize("which", ["on_publish", "on_update", "on_publish_done"])
def test_garbage_is_refused_and_changes_nothing(world, which):
    made = create(world)
    publish(made.key)
    before = _state()
    for kind, body in _garbage(made.key):
        url = f"{CALLBACK}{which}?secret={settings.RTMP_CALLBACK_SECRET}"
        client = Client(REMOTE_ADDR="127.0.0.1")
        if kind == "form":
            response = client.post(url, body)
        elif kind == "multipart":
            response = client.post(url, body, content_type="multipart/form-data; boundary=b")
        elif kind == "json":
            response = client.post(url, body, content_type="application/json")
        else:
            response = client.post(url, body, content_type="application/x-www-form-urlencoded")
        assert response.status_code in (400, 403), (
            kind,
            body if kind != "form" else "",
            response.status_code,
        )
        assert _state() == before, kind
    for method in ("get", "put", "delete", "head"):
        response = getattr(Client(), method)(f"{CALLBACK}{which}?secret={settings.RTMP_CALLBACK_SECRET}")
        assert response.status_code == 403


def test_a_client_query_argument_cannot_stand_in_for_the_name(world):
    """nginx-rtmp appends the client URL's own query arguments after its fields."""
    mine, theirs = create(world), create(world)
    data = [*form("publish", mine.key).items(), ("name", theirs.key)]
    body = "&".join(f"{k}={v}" for k, v in data)
    response = Client(REMOTE_ADDR="127.0.0.1").post(
        f"{CALLBACK}on_publish?secret={settings.RTMP_CALLBACK_SECRET}",
        body,
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 302 and response["Location"] == mine.id
    assert mine.stream.live and not theirs.stream.live


def test_no_key_reaches_a_log_line(world, caplog):
    caplog.set_level(logging.DEBUG)
    made = create(world)
    publish(made.key)
    update(made.key)
    publish(made.key, clientid="8")
    publish_done(made.key)
    publish("sk_" + "B" * 43)
    callback("on_publish", form("publish", made.key), secret="wrong")
    world.member.client.post(world.url(f"streams/{made.id}/rotate-key"))
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert made.key not in text and made.key[3:] not in text and settings.RTMP_CALLBACK_SECRET not in text
    assert "B" * 43 not in text
