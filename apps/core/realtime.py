"""Publishing real-time events, from any process (WSGI web, ASGI ws, Celery worker).

Events go to named channels on Redis pub/sub: ``synctv:room:{room_id}`` for room-wide events and
``synctv:user:{user_id}`` for what concerns one account everywhere. Each ``ws`` process runs one
hub (apps.rooms.hub) that holds one subscription per channel its local sockets need, decodes an
event once and writes the same encoded frame to every local socket
(docs/architecture.md, "A playback change, end to end").

Events are built by apps.core.events (every type, its shape and its builder) and encoded once,
here, with ``server_time`` (ms since the epoch) set at publish time. Types starting with ``_``
are internal: hubs and consumers act on them, clients never see them.

Without Redis (embedded default) or while Redis is down, events go to this process's hub only:
a single-process server loses nothing; a cluster keeps each node's own traffic.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping
from typing import Any

from django.db import transaction

from apps.core.redis import RedisUnavailable, call_redis, get_redis

logger = logging.getLogger(__name__)

_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}\Z")
_local_hub = None  # the hub of this process, if it runs one (set by apps.rooms.hub)


def now_ms() -> int:
    return int(time.time() * 1000)


def _checked(kind: str, ident: str) -> str:
    # Channel names come from validated ids only, never from raw client input.
    if not isinstance(ident, str) or not _ID.match(ident):
        raise ValueError(f"bad {kind} id for a channel name: {ident!r}")
    return ident


ROOM_CHANNEL_PREFIX = "synctv:room:"


def room_channel(room_id: str) -> str:
    return f"{ROOM_CHANNEL_PREFIX}{_checked('room', room_id)}"


def user_channel(user_id: str) -> str:
    return f"synctv:user:{_checked('user', user_id)}"


def encode(event: Mapping[str, Any]) -> str:
    if "server_time" not in event:
        event = {**event, "server_time": now_ms()}
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False, default=str)


def encode_value(value: Any) -> str:
    """One JSON value as ``encode`` writes it, to be spliced into events later (``encode_with``)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


_SPLICE = "\x00splice\x00"
_SPLICED = json.dumps(_SPLICE)


def encode_with(event: Mapping[str, Any], key: str, items: list[str]) -> str:
    """``encode(event)`` with ``event[key]`` the JSON array of ``items``, values already encoded
    by ``encode_value``: a list of member entries is encoded once per entry, not once per frame
    (apps.rooms.roster). ``event[key]`` itself is ignored."""
    text = encode({**event, key: _SPLICE})
    return text.replace(_SPLICED, "[" + ",".join(items) + "]", 1)


def set_local_hub(hub) -> None:
    global _local_hub
    _local_hub = hub


def publish(channel: str, event: Mapping[str, Any]) -> None:
    """Send ``event`` to every subscriber of ``channel`` on every node (best effort, never raises)."""
    text = encode(event)
    if get_redis() is not None:
        try:
            call_redis(lambda client: client.publish(channel, text))
            return
        except RedisUnavailable:
            logger.warning("Redis unavailable: %s delivered on this node only", event.get("type"))
    if _local_hub is not None:
        _local_hub.deliver_threadsafe(channel, text)


def publish_on_commit(channel: str, event: Mapping[str, Any]) -> None:
    """Publish once the current transaction commits: a rolled-back change is never announced."""
    transaction.on_commit(lambda: publish(channel, event))


def room_event(room_id: str, event: Mapping[str, Any]) -> None:
    publish_on_commit(room_channel(room_id), event)


def user_event(user_id: str, event: Mapping[str, Any]) -> None:
    publish_on_commit(user_channel(user_id), event)
