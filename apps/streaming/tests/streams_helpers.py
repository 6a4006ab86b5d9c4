"""What the streams tests share: a room world (apps/rooms/tests/conftest.py) with a stream made
through the API, and the RTMP server's callbacks as nginx-rtmp sends them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from apps.rooms.tests.conftest import RoomWorld
from apps.streaming import keys
from apps.streaming.models import Stream

CALLBACK = "/internal/rtmp/"
REGISTRY_KEYS = ("cluster:*", "stream:publisher*", "lock:stream:failover:*")

# A test taking the ``registry`` fixture (conftest.py) runs on Redis and on process memory.
both_registries = pytest.mark.parametrize(
    "registry", [pytest.param("redis", marks=pytest.mark.redis), "local"], indirect=True
)


def clean_registry(client) -> None:
    """Delete the cluster registry, the publisher registry and the failover locks from Redis."""
    for pattern in REGISTRY_KEYS:
        for key in client.scan_iter(pattern):
            client.delete(key)


@dataclass
class Made:
    """A stream made through the API, with the one answer that showed its key."""

    id: str
    movie_id: str
    key: str
    publish_url: str

    @property
    def stream(self) -> Stream:
        return Stream.objects.get(pk=self.id)


def streams_url(world: RoomWorld, suffix: str = "") -> str:
    return world.url("streams" + (f"/{suffix}" if suffix else ""))


def create(world: RoomWorld, actor: str = "member", **body: Any) -> Made:
    response = world.client(actor).post(streams_url(world), {"name": "Live", **body}, format="json")
    assert response.status_code == 201, response.content
    data = response.json()
    return Made(
        id=data["id"], movie_id=data["movie_id"], key=data["stream_key"], publish_url=data["publish_url"]
    )


def form(call: str, name: str, clientid: str = "7", **extra: str) -> dict[str, str]:
    """The fields nginx-rtmp posts: the session's, then the call's (the client's own query
    arguments would follow)."""
    return {
        "app": "live",
        "flashver": "FMLE/3.0",
        "swfurl": "",
        "tcurl": "rtmp://localhost:1935/live",
        "pageurl": "",
        "addr": "198.51.100.23",
        "clientid": clientid,
        "call": call,
        "name": name,
        "type": "live",
        **extra,
    }


def callback(
    which: str,
    data: dict[str, str] | None = None,
    *,
    secret: str | None = None,
    remote: str = "127.0.0.1",
    **request: Any,
):
    secret = settings.RTMP_CALLBACK_SECRET if secret is None else secret
    return Client(REMOTE_ADDR=remote).post(f"{CALLBACK}{which}?secret={secret}", data or {}, **request)


def publish(key: str, clientid: str = "7", **extra: str):
    return callback("on_publish", form("publish", key, clientid, **extra))


def update(key: str, clientid: str = "7"):
    return callback("on_update", form("update_publish", key, clientid, time="10", timestamp="10000"))


def publish_done(key: str, clientid: str = "7"):
    return callback("on_publish_done", form("publish_done", key, clientid))


def relay_form(call: str, stream_id: str, node: str, clientid: str = "7", **extra: str) -> dict[str, str]:
    """A node's relay (apps.streaming.relay) publishing a pulled stream under its signed name,
    from the RTMP server's own machine."""
    return form(call, keys.relay_name(stream_id, node), clientid, addr="127.0.0.1", **extra)


def relay_publish(stream_id: str, node: str, clientid: str = "7"):
    return callback("on_publish", relay_form("publish", stream_id, node, clientid))


def relay_update(stream_id: str, node: str, clientid: str = "7"):
    data = relay_form("update_publish", stream_id, node, clientid, time="10", timestamp="10000")
    return callback("on_update", data)
