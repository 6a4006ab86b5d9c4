"""Stream writes (docs/streaming.md): create, rotate the key, cut the publisher, delete; and what
the RTMP server's callbacks change (a publisher starts, stays, stops).

Keyword-only, one transaction each, the audit event in it; the permission check here, for the
API and the admin alike. Locks: the room's row first (the order of every room write, as the
playlist service takes it), then the stream's. What reaches outside the database (cutting a
publisher in the RTMP server, releasing its claim in Redis) runs after commit.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import User
from apps.audit.actions import AuditAction
from apps.audit.services import audit_record
from apps.core import events, ratelimit, realtime
from apps.core.context import Origin
from apps.core.errors import InvalidInput, NotFound, NotInRoom, PermissionDenied, RateLimited
from apps.core.ids import new_id
from apps.core.netguard import UnsafeURL, check_server_host, validate_media_url
from apps.core.redis import RedisUnavailable
from apps.permissions.rules import ADMIN, RANK, RoomActor
from apps.rooms import services as room_services
from apps.rooms.models import MovieType, Room
from apps.streaming import ingest, keys, publishers
from apps.streaming.models import Stream

logger = logging.getLogger(__name__)

SOURCE_SCHEMES = {"rtmp": 1935, "rtmps": 443, "http": 80, "https": 443}
# A publisher the RTMP server has not vouched for (on_publish, on_update) in this long is gone
# (docs/streaming.md, "Failover"): a new publisher may take the stream over.
PUBLISHER_SILENT_SECONDS = 30


class PublishRefused(PermissionDenied):
    """The RTMP server is told no (403). ``reason`` is for the audit log, never for the client."""

    code = "publish_refused"

    def __init__(self, reason: str) -> None:
        super().__init__("Publishing refused.")
        self.reason = reason


@dataclass(frozen=True)
class StreamWithKey:
    """A stream and its key, which exists only here, on its way to the one answer that shows it."""

    stream: Stream
    key: str

    @property
    def publish_url(self) -> str:
        return publish_url(self.key)


def publish_url(key: str) -> str:
    return f"{settings.RTMP_URL}/{key}"


def movie_url(stream_id: str) -> str:
    """The playlist entry's URL: the stream's page, resolved through the API (never the key)."""
    return f"{settings.PUBLIC_URL.rstrip('/')}/streams/{stream_id}/"


def _invalid(field: str, message: str) -> InvalidInput:
    return InvalidInput(f"{field}: {message}", details={field: [message]})


def clean_source_url(url: object) -> str:
    """A pulled source: rtmp(s) or http(s) HLS, with the playlist URL rules, whose host resolves
    only to addresses the server may fetch (apps/core/netguard.py). A node pulling it checks the
    address again when it connects."""
    if url in (None, ""):
        return ""
    if not isinstance(url, str):
        raise _invalid("source_url", "A URL is required.")
    scheme, sep, rest = url.partition(":")
    if not sep or scheme.lower() not in SOURCE_SCHEMES:
        raise _invalid("source_url", "Only rtmp, rtmps, http and https URLs are allowed.")
    # The same shape rules as a playlist URL, judged with an http(s) stand-in for the scheme.
    standin = ("https" if scheme.lower() in ("https", "rtmps") else "http") + ":" + rest
    validate_media_url(standin, field="source_url")
    parts = urlsplit(standin)
    try:
        check_server_host(parts.hostname or "", parts.port or SOURCE_SCHEMES[scheme.lower()])
    except UnsafeURL as exc:
        reason = exc.details.get("url", [exc.message])[0]
        raise UnsafeURL(f"source_url: {reason}", details={"source_url": [reason]}) from exc
    return url


def _audit(
    action: AuditAction,
    *,
    user: User | Any | None,
    origin: Origin,
    room_id: str = "",
    stream_id: str = "",
    **details: Any,
) -> None:
    audit_record(
        action=action,
        origin=origin,
        user=user,
        resource_type="stream",
        resource_id=stream_id,
        room_id=room_id,
        details=details,
    )


def _lock_room(room: Room) -> Room:
    locked = Room.objects.select_for_update().filter(pk=room.pk).first()
    if locked is None:
        raise NotFound("No such room.")
    return locked


def _lock_stream(stream: Stream) -> Stream:
    qs = Stream.objects.select_for_update(of=("self",)).select_related("room")
    locked = qs.filter(pk=stream.pk).first()
    if locked is None:
        raise NotFound("No such stream.")
    return locked


def require_manager(actor: RoomActor, stream: Stream) -> None:
    """The stream's owner (an active member still) or a room admin (or above)."""
    if not actor.is_member:
        raise NotInRoom()
    if actor.rank >= RANK[ADMIN]:
        return
    user_id = getattr(actor.user, "pk", None)
    if stream.owner_id is not None and stream.owner_id == user_id:
        return
    raise PermissionDenied("Only the stream's owner or a room admin may do this.")


def stream_create(
    *, actor: RoomActor, room: Room, name: str, source_url: str = "", origin: Origin
) -> StreamWithKey:
    """A stream and its playlist entry (ADD_MOVIE, checked by the playlist service). The key is
    returned once and stored only hashed."""
    source = clean_source_url(source_url)
    stream_id, key = new_id(), keys.new_key()
    with transaction.atomic():
        _lock_room(room)
        (movie,) = room_services.movies_add(
            actor=actor,
            room=room,
            items=[{"name": name, "url": movie_url(stream_id), "type": MovieType.LIVE}],
            origin=origin,
        )
        stream = Stream.objects.create(
            id=stream_id,
            room=room,
            movie=movie,
            owner=actor.account,
            name=name,
            source_url=source,
            key_hash=keys.key_hash(key),
        )
        _audit(
            AuditAction.STREAM_CREATE,
            user=actor.user,
            origin=origin,
            room_id=room.pk,
            stream_id=stream.pk,
            movie=movie.pk,
            pulled=bool(source),
        )
    return StreamWithKey(stream=stream, key=key)


def _clear_publisher(stream: Stream) -> str:
    """Mark the stream not live; return the node that published it ("" if none). The caller
    saves and, after commit, cuts the connection and releases the node's claim."""
    node = stream.publisher_node
    stream.live = False
    stream.publisher_node = ""
    stream.publisher_client = ""
    stream.live_since = None
    stream.publisher_seen_at = None
    return node


def _registry(change: Any, stream_id: str) -> None:
    """A change to the publisher registry after commit. Redis being down must not fail a write
    that is already committed: the entry expires on its own (PUBLISHER_TTL_SECONDS)."""
    try:
        change()
    except RedisUnavailable:
        logger.warning("publisher registry unavailable: stream %s's entry left to expire", stream_id)


def _after_commit_cut(stream: Stream, node: str) -> None:
    """Once committed: drop the publisher in this node's RTMP server (apps.streaming.ingest) and
    take the stream out of the publisher registry. A publisher on another node, or one this
    RTMP server does not drop, is refused at its next on_update (docs/streaming.md)."""
    if not node:
        return
    stream_id = stream.pk

    def cut() -> None:
        ingest.cut_publisher(stream)
        _registry(lambda: publishers.forget(stream_id), stream_id)

    transaction.on_commit(cut)


def stream_rotate_key(*, actor: RoomActor, stream: Stream, origin: Origin) -> StreamWithKey:
    """A new key; the old one stops working at once and a publisher on it is cut."""
    require_manager(actor, stream)
    key = keys.new_key()
    with transaction.atomic():
        _lock_room(stream.room)
        stream = _lock_stream(stream)
        node = _clear_publisher(stream)
        stream.key_hash = keys.key_hash(key)
        stream.key_rotated_at = timezone.now()
        stream.save()
        _audit(
            AuditAction.STREAM_KEY_ROTATE,
            user=actor.user,
            origin=origin,
            room_id=stream.room_id,
            stream_id=stream.pk,
            cut=node or None,
        )
        _after_commit_cut(stream, node)
    return StreamWithKey(stream=stream, key=key)


def stream_cut(*, actor: RoomActor, stream: Stream, origin: Origin) -> bool:
    """Cut the live publisher (the admin's action). False: nobody was publishing."""
    require_manager(actor, stream)
    with transaction.atomic():
        _lock_room(stream.room)
        stream = _lock_stream(stream)
        if not stream.live:
            return False
        node = _clear_publisher(stream)
        stream.save()
        _audit(
            AuditAction.STREAM_CUT,
            user=actor.user,
            origin=origin,
            room_id=stream.room_id,
            stream_id=stream.pk,
            node=node,
        )
        _after_commit_cut(stream, node)
    return True


def stream_delete(*, actor: RoomActor, stream: Stream, origin: Origin) -> None:
    """The stream and its playlist entry go; a live publisher is cut."""
    require_manager(actor, stream)
    with transaction.atomic():
        room = _lock_room(stream.room)
        stream = _lock_stream(stream)
        node = _clear_publisher(stream)
        stream_id = stream.pk
        # The playlist service takes the movie out (its rules: the movie's adder, who is the
        # owner, or DELETE_MOVIE; its audit event, the playback reset and the playlist event); the
        # stream goes with it (on_delete=CASCADE).
        room_services.movie_delete(actor=actor, room=room, movie=stream.movie, origin=origin)
        _audit(
            AuditAction.STREAM_DELETE,
            user=actor.user,
            origin=origin,
            room_id=room.pk,
            stream_id=stream_id,
            name=stream.name,
            cut=node or None,
        )
        _after_commit_cut(stream, node)


# --- the RTMP server's callbacks (apps/streaming/callbacks.py): who publishes --------------------------


@dataclass(frozen=True)
class Publisher:
    """One RTMP publishing connection, as the RTMP server's callback describes it: the key it
    published with (its stream name), the server's connection id and the streamer's address."""

    key: str  # the stream key, or a relay's signed name (then ``relay`` says what it opens)
    client: str
    addr: str
    node: str
    relay: keys.RelayName | None = None

    @property
    def origin(self) -> Origin:
        try:
            ip: str | None = str(ipaddress.ip_address(self.addr))
        except ValueError:
            ip = None
        return Origin(ip=ip, user_agent="rtmp")


def _stream_for(publisher: Publisher, *, lock: bool) -> Stream | None:
    """A relay's stream by the id its signed name carries; a streamer's by one indexed lookup of
    the key's hash, then a constant-time comparison of the hashes."""
    qs = Stream.objects.select_related("room")
    if lock:
        qs = qs.select_for_update(of=("self",))
    if publisher.relay is not None:
        return qs.filter(pk=publisher.relay.stream_id).first()
    if not keys.looks_like_key(publisher.key):
        return None
    stream = qs.filter(key_hash=keys.key_hash(publisher.key)).first()
    if stream is None or not keys.matches(publisher.key, stream.key_hash):
        return None
    return stream


def _refusal_audited(publisher: Publisher) -> bool:
    """At most RATELIMITS["rtmp_refused_ip"] refusals per streamer address and window reach the
    audit log: a client retrying a wrong key in a loop must not flood it (the refusal itself
    stands either way; a 256-bit key cannot be guessed, so nothing else needs limiting)."""
    try:
        ratelimit.take(limit="rtmp_refused_ip", key=ratelimit.ip_key(publisher.addr or "unknown"))
    except RateLimited:
        logger.info("rtmp publish refusal from a busy address not audited (limit rtmp_refused_ip)")
        return False
    return True


def _refuse(publisher: Publisher, reason: str, stream: Stream | None = None) -> PublishRefused:
    if not _refusal_audited(publisher):
        return PublishRefused(reason)
    _audit(
        AuditAction.STREAM_PUBLISH_REFUSED,
        user=None,
        origin=publisher.origin,
        room_id=stream.room_id if stream else "",
        stream_id=stream.pk if stream else "",
        reason=reason,
        node=publisher.node,
    )
    return PublishRefused(reason)


def _recently_seen(stream: Stream, now: Any) -> bool:
    seen = stream.publisher_seen_at
    return seen is not None and now - seen < timedelta(seconds=PUBLISHER_SILENT_SECONDS)


def _start_refusal(stream: Stream | None, publisher: Publisher, now: Any) -> str | None:
    if stream is None:
        return "unknown_key"
    if stream.room.is_closed:
        return "room_closed"
    if publisher.relay is None and stream.source_url:
        return "pulled_stream"  # fed by its relay only: a key push would fight it for the stream
    if publisher.relay is not None:
        if not stream.source_url:
            return "not_pulled"
        if stream.publisher_node not in ("", publisher.node):
            return "elected_elsewhere"  # failover gave it to another node
    if stream.live and _recently_seen(stream, now):
        return "already_live"
    try:
        claimed = publishers.claim(stream.pk, publisher.node)
    except RedisUnavailable:
        return "registry_unavailable"  # two publishers are worse than a streamer retrying
    return None if claimed else "claimed_by_another_node"


def publish_start(*, publisher: Publisher) -> Stream:
    """on_publish: the stream whose key this is, claimed for this node (apps.streaming.publishers).
    Refused (PublishRefused, audited, nothing else written): no such key (wrong, rotated,
    deleted), a closed room, a publisher live and heard from in the last 30 s, another node's
    claim. The callback view refuses what is not even key-shaped before calling this."""
    with transaction.atomic():
        stream = _stream_for(publisher, lock=True)
        now = timezone.now()
        refusal = _start_refusal(stream, publisher, now)
        if refusal is None and stream is not None:
            stream.live, stream.live_since, stream.publisher_seen_at = True, now, now
            stream.publisher_node, stream.publisher_client = publisher.node, publisher.client
            stream.save()
            _audit(
                AuditAction.STREAM_PUBLISH_START,
                user=None,
                origin=publisher.origin,
                room_id=stream.room_id,
                stream_id=stream.pk,
                node=publisher.node,
            )
            # The room's pages stop showing "waiting" at once instead of at their next poll.
            realtime.room_event(
                stream.room_id, events.publisher_changed(stream_id=stream.pk, node=publisher.node)
            )
            return stream
        error = _refuse(publisher, refusal or "unknown_key", stream)
    raise error  # once the refusal's audit row is committed


def _is_on_record(stream: Stream | None, publisher: Publisher) -> bool:
    return (
        stream is not None
        and stream.live
        and stream.publisher_node == publisher.node
        and stream.publisher_client == publisher.client
    )


def publish_update(*, publisher: Publisher) -> None:
    """on_update, every few seconds while a publisher streams: still the publisher on record
    (key not rotated, not cut, same connection) and still this node's claim. Otherwise
    PublishRefused, and the RTMP server drops the connection (not audited: the rotation or the
    cut that caused it was)."""
    with transaction.atomic():
        stream = _stream_for(publisher, lock=True)
        if stream is None or not _is_on_record(stream, publisher):
            raise PublishRefused("not_the_publisher")
        try:
            kept = publishers.refresh(stream.pk, publisher.node)
        except RedisUnavailable:
            kept = True  # the database still names this publisher: no outage cuts a streamer
        if not kept:
            raise PublishRefused("claim_lost")
        Stream.objects.filter(pk=stream.pk).update(publisher_seen_at=timezone.now())


def publish_done(*, publisher: Publisher) -> bool:
    """on_publish_done: the publisher on record stopped; the stream is no longer live and the
    node's claim is given up. Anything else (a refused duplicate, a publisher already cut, a
    rotated key) changes nothing. True when a publisher was ended."""
    with transaction.atomic():
        stream = _stream_for(publisher, lock=True)
        if stream is None or not _is_on_record(stream, publisher):
            return False
        node = _clear_publisher(stream)
        if publisher.relay is not None:
            # A pulled stream stays with its node, whose relay starts it again (apps.streaming.relay);
            # failover moves it only if that relay is gone.
            stream.publisher_node = node
        stream.save()
        _audit(
            AuditAction.STREAM_PUBLISH_STOP,
            user=None,
            origin=publisher.origin,
            room_id=stream.room_id,
            stream_id=stream.pk,
            node=publisher.node,
        )
        stream_id, node = stream.pk, publisher.node
        transaction.on_commit(lambda: _registry(lambda: publishers.release(stream_id, node), stream_id))
        # The pages show "waiting" now, not when hls.js finally fails on a playlist that stopped.
        realtime.room_event(stream.room_id, events.publisher_changed(stream_id=stream_id, node=""))
    return True
