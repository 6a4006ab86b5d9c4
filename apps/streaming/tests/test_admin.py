"""The streams admin (docs/streaming.md, "Admin"): the list, and the cut and rotate actions
through the services (audited, the new key shown once)."""

from __future__ import annotations

from django.test import Client

from apps.accounts.models import Role, User
from apps.audit.models import AuditEvent
from apps.core.tests.helpers import admin_url
from apps.streaming import keys
from apps.streaming.models import Stream
from apps.streaming.tests.streams_helpers import (
    create,
    publish,
    update,
)

STREAMS = "/admin/streaming/stream/"


def _admin_client(world) -> tuple[Client, User]:
    root = world.site_admin.user
    User.objects.filter(pk=root.pk).update(role=Role.ROOT)
    root.refresh_from_db()
    client = Client(raise_request_exception=False, REMOTE_ADDR="192.0.2.44")
    client.force_login(root)
    return client, root


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_the_list_shows_room_owner_live_node_and_since(world):
    made = create(world, name="Concert")
    publish(made.key)
    client, _ = _admin_client(world)
    response = client.get(STREAMS)
    assert response.status_code == 200
    page = response.content.decode()
    stream = made.stream
    assert "Concert" in page and world.room.name in page and world.member.user.username in page
    assert stream.publisher_node in page
    assert made.key not in page and stream.key_hash not in page
    detail = client.get(admin_url(stream))
    assert detail.status_code == 200 and stream.key_hash not in detail.content.decode()
    assert client.get(STREAMS, {"q": "Concert"}).context["cl"].result_count == 1


def test_cut_action(world, django_capture_on_commit_callbacks):
    live, idle = create(world, name="On air"), create(world, name="Idle")
    publish(live.key)
    client, root = _admin_client(world)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            STREAMS, {"action": "cut_publishers", "_selected_action": [live.id, idle.id]}, follow=True
        )
    assert response.status_code == 200
    assert "Publishers cut: 1." in _messages(response)
    assert not live.stream.live
    event = AuditEvent.objects.get(action="stream.cut")
    assert event.user_id == root.pk and event.resource_id == live.id and event.ip == "192.0.2.44"
    assert update(live.key).status_code == 403  # the RTMP server drops it at its next update


def test_rotate_action_shows_the_new_key_once(world):
    made = create(world, name="Concert")
    client, root = _admin_client(world)
    response = client.post(STREAMS, {"action": "rotate_keys", "_selected_action": [made.id]}, follow=True)
    assert response.status_code == 200
    (message,) = [m for m in _messages(response) if "new key" in m]
    new_key = message.split("<code>")[1].split("</code>")[0]
    assert keys.looks_like_key(new_key) and new_key != made.key
    assert Stream.objects.get(pk=made.id).key_hash == keys.key_hash(new_key)
    assert publish(made.key).status_code == 403 and publish(new_key).status_code == 302
    assert AuditEvent.objects.get(action="stream.key_rotate").user_id == root.pk
    assert new_key not in client.get(STREAMS).content.decode()  # shown only once


def test_no_add_and_no_bulk_delete(world):
    made = create(world)
    client, _ = _admin_client(world)
    assert client.get(f"{STREAMS}add/").status_code == 403
    client.post(STREAMS, {"action": "delete_selected", "_selected_action": [made.id], "post": "yes"})
    assert Stream.objects.filter(pk=made.id).exists()
