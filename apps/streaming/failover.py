"""Publisher failover (docs/streaming.md, "Failover"): a service the
Celery beat job runs every few seconds (apps.streaming.tasks).

A publisher has failed when the RTMP server has not vouched for it (``on_update``) for
PUBLISHER_SILENT_SECONDS, when its registry entry expired, or when its node left the cluster
(``NodeLeaving``, or heartbeats stopped). For each such stream, one sweep at a time (the
``lock:stream:failover:{stream}`` lock, owner-only release):

1. check again under the lock and the stream's row lock: a publisher heard from meanwhile stays;
2. a **pulled** stream: elect the new node by the hash ring over the live nodes (without the
   failed one), register it (``publishers.transfer``, TTL 300 s) and record it on the stream; the
   elected node restarts the pull and its ``on_publish`` makes the stream live again;
   a **pushed** stream: nothing can restart it, so it is cleared (not live, no publisher) and
   waits for its streamer;
3. audit ``stream.failover`` in the same transaction; after commit announce
   ``publisher_changed {stream_id, node}`` to the room's sockets (``node`` empty: waiting for the
   streamer) and the same event on the cluster channel for the nodes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.db import DatabaseError, transaction
from django.db.models import Q
from django.utils import timezone

from apps.audit.actions import AuditAction
from apps.audit.services import audit_record
from apps.core import events, realtime
from apps.core.context import SYSTEM
from apps.core.redis import RedisUnavailable
from apps.streaming import cluster, publishers
from apps.streaming.models import Stream
from apps.streaming.services import PUBLISHER_SILENT_SECONDS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Failover:
    stream_id: str
    failed_node: str
    new_node: str  # "" for a pushed stream (it waits for its streamer) or no live node


def _candidates(live: set[str], relays: set[str], max_silence: float) -> set[str]:
    """Streams that look failed, by the registry or by the database (which outlives a Redis
    restart that lost the registry). A pulled stream has failed when its node's relay is gone,
    live or still starting."""
    found = {p.stream_id for p in publishers.silent(max_silence, live=live)}
    cutoff = timezone.now() - timedelta(seconds=max_silence)
    found |= set(
        Stream.objects.filter(live=True)
        .filter(
            Q(publisher_seen_at__lt=cutoff) | Q(publisher_seen_at__isnull=True) | ~Q(publisher_node__in=live)
        )
        .values_list("pk", flat=True)
    )
    found |= set(
        Stream.objects.exclude(source_url="")
        .exclude(publisher_node="")
        .exclude(publisher_node__in=relays)
        .values_list("pk", flat=True)
    )
    return found


def failover_sweep(*, max_silence: float = PUBLISHER_SILENT_SECONDS) -> list[Failover]:
    """Fail over every failed publisher. Returns what this sweep changed; a stream another sweep
    holds the lock for is left to it. Raises RedisUnavailable: without the registry nothing can
    be decided (the next run tries again)."""
    nodes = cluster.live_nodes()
    live = {n.id for n in nodes}
    relays = {n.id for n in nodes if n.role == "relay"}
    done = []
    for stream_id in sorted(_candidates(live, relays, max_silence)):
        result = _fail_over_locked(stream_id, live=live, relays=relays, max_silence=max_silence)
        if result is not None:
            done.append(result)
    return done


def _fail_over_locked(
    stream_id: str, *, live: set[str], relays: set[str], max_silence: float = PUBLISHER_SILENT_SECONDS
) -> Failover | None:
    """``fail_over`` under the stream's failover lock; None when another sweep holds the lock
    (it is on it) or nothing needed doing."""
    token = publishers.acquire_failover_lock(stream_id)
    if token is None:
        return None
    try:
        return fail_over(stream_id, live=live, relays=relays, max_silence=max_silence)
    finally:
        publishers.release_failover_lock(stream_id, token)


def _healthy(
    stream: Stream, fresh: publishers.Publisher | None, live: set[str], relays: set[str], max_silence: float
) -> bool:
    """Under the locks: heard from recently enough, by the registry and by the database? A
    pulled stream also needs its node's relay; one still starting (its source may be down: the
    relay retries) is healthy while that relay lives."""
    if stream.source_url:
        if stream.publisher_node not in relays:
            return False
        if not stream.live:
            return True
    if fresh is None or fresh.node is None or fresh.node not in live:
        return False
    if publishers.redis_time() - fresh.last_refresh >= max_silence:
        return False
    seen = stream.publisher_seen_at
    return not stream.live or (seen is not None and timezone.now() - seen < timedelta(seconds=max_silence))


def _entry(stream_id: str) -> publishers.Publisher | None:
    return next((p for p in publishers.all_publishers() if p.stream_id == stream_id), None)


def fail_over(
    stream_id: str,
    *,
    live: set[str],
    relays: set[str] | None = None,
    max_silence: float = PUBLISHER_SILENT_SECONDS,
) -> Failover | None:
    """One stream, with its failover lock held by the caller. None when it needs nothing.
    ``relays``: the nodes that run a relay (default: every live node)."""
    relays = live if relays is None else relays
    with transaction.atomic():
        stream = Stream.objects.select_for_update().filter(pk=stream_id).first()
        fresh = _entry(stream_id)
        awaiting_pull = stream is not None and bool(stream.source_url and stream.publisher_node)
        if stream is None or not (stream.live or awaiting_pull):
            if fresh is not None:  # a deleted or stopped stream's leftover entry: tidy it
                publishers.forget(stream_id)
            return None
        if _healthy(stream, fresh, live, relays, max_silence):
            return None
        entry_node = fresh.node if fresh is not None else None
        failed = stream.publisher_node or entry_node or ""
        new_node = ""
        if stream.source_url:
            new_node = publishers.elect(stream_id, sorted(relays - {failed})) or ""
        if new_node:
            if not publishers.transfer(stream_id, failed=entry_node, to=new_node):
                return None  # a publisher claimed it meanwhile: it is not failed any more
        else:
            publishers.forget(stream_id)
        stream.live = False
        stream.live_since = None
        stream.publisher_node = new_node
        stream.publisher_client = ""
        stream.publisher_seen_at = None
        stream.save(
            update_fields=[
                "live",
                "live_since",
                "publisher_node",
                "publisher_client",
                "publisher_seen_at",
                "updated_at",
            ]
        )
        audit_record(
            action=AuditAction.STREAM_FAILOVER,
            origin=SYSTEM,
            resource_type="stream",
            resource_id=stream.pk,
            room_id=stream.room_id,
            details={"failed_node": failed, "new_node": new_node, "pulled": bool(stream.source_url)},
        )
        changed = events.publisher_changed(stream_id=stream.pk, node=new_node)
        realtime.room_event(stream.room_id, changed)
        realtime.publish_on_commit(cluster.CHANNEL, changed)
    logger.info(
        "failover: stream %s from %s to %s", stream_id, failed or "-", new_node or "(waits for its streamer)"
    )
    return Failover(stream_id=stream_id, failed_node=failed, new_node=new_node)


def hand_over(node: str, *, pushed_too: bool) -> list[Failover]:
    """A process of ``node`` is leaving: fail over the streams it carries now, under the same
    locks and rules as a sweep, rather than let them wait for a TTL or the silence limit.

    The ``relay`` (``pushed_too`` False) gives up the pulled streams it feeds: they go to another
    node's relay. The ``rtmp`` process (``pushed_too`` True) gives up every stream published on
    the node: without its RTMP server the node can carry none, so it is taken out of the live set
    too; a pushed stream then waits for its streamer. Best effort: what cannot be done now (Redis
    or the database down), the sweep does once the node's entries are gone."""
    done: list[Failover] = []
    try:
        nodes = cluster.live_nodes()
        carried = Stream.objects.filter(publisher_node=node)
        if not pushed_too:
            carried = carried.exclude(source_url="")
        streams = list(carried.values_list("pk", flat=True))
    except (RedisUnavailable, DatabaseError) as exc:
        logger.warning("hand-over of %s's streams failed (%s); the failover job will do it", node, exc)
        return done
    live = {n.id for n in nodes} - ({node} if pushed_too else set())
    relays = {n.id for n in nodes if n.role == "relay"} - {node}
    for stream_id in streams:
        try:
            result = _fail_over_locked(stream_id, live=live, relays=relays)
        except (RedisUnavailable, DatabaseError) as exc:
            logger.warning("hand-over of stream %s failed (%s); the failover job will do it", stream_id, exc)
            continue
        if result is not None:
            done.append(result)
    return done


_outage = {"failing": False}


def sweep_quietly() -> int:
    """The beat job's body, every second: a Redis or database outage is logged once when it
    starts and once when it ends, not raised every second with a traceback (the next run tries
    again in any case)."""
    try:
        done = len(failover_sweep())
    except (RedisUnavailable, DatabaseError) as exc:
        if not _outage["failing"]:
            what = "publisher registry" if isinstance(exc, RedisUnavailable) else "database"
            logger.warning("failover sweep skipped: %s unavailable (%s); retrying every run", what, exc)
        _outage["failing"] = True
        return 0
    if _outage["failing"]:
        logger.warning("failover sweep runs again")
    _outage["failing"] = False
    return done
