"""``manage.py cluster_status``: the live nodes, the hash ring over them and the publishers
(docs/streaming.md, "Cluster")."""

from __future__ import annotations

import json
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.core.redis import RedisUnavailable
from apps.streaming import cluster, publishers
from apps.streaming.models import Stream
from apps.streaming.ring import HashRing


def cluster_snapshot() -> dict[str, Any]:
    """Nodes, ring and publishers as plain data. Raises RedisUnavailable."""
    nodes = cluster.live_nodes()
    sockets = cluster.socket_counts(nodes)  # per ws node (apps.rooms.balance keeps them even)
    # The ring that elects: over the nodes running a relay (pulled streams; a pushed stream
    # waits for its streamer and is elected nowhere).
    ring = HashRing(sorted({n.id for n in nodes if n.role == "relay"}))
    shares = ring.shares()
    now = publishers.redis_time()
    entries = publishers.all_publishers()
    pulled = set(
        Stream.objects.filter(pk__in=[p.stream_id for p in entries])
        .exclude(source_url="")
        .values_list("pk", flat=True)
    )
    return {
        "nodes": [
            {
                "id": n.id,
                "role": n.role,
                "started": n.started,
                "last_seen_ago": round(time.time() - n.last_seen, 1),
                "sockets": sockets.get(n.id) if n.role == "ws" else None,
            }
            for n in nodes
        ],
        "ring": [{"node": node, "vnodes": ring.vnodes, "share": shares[node]} for node in sorted(ring.nodes)],
        "publishers": [
            {
                "stream": p.stream_id,
                "node": p.node,
                "ttl": None if p.ttl is None else round(p.ttl, 1),
                "last_refresh_ago": round(now - p.last_refresh, 1),
                "pulled": p.stream_id in pulled,
                "elected_if_failed": (
                    publishers.elect(p.stream_id, sorted(ring.nodes - {p.node or ""}))
                    if p.stream_id in pulled
                    else None
                ),
            }
            for p in entries
        ],
    }


class Command(BaseCommand):
    help = (
        "Show the cluster: live nodes (id, role, last heartbeat, sockets held by each ws node), "
        "the consistent hash ring over them (virtual nodes and share of the key space per node) "
        "and the stream publishers "
        "(stream id -> node, TTL left, last refresh)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            snapshot = cluster_snapshot()
        except RedisUnavailable as exc:
            raise CommandError(f"Redis is not answering: {exc}") from exc
        if options["json"]:
            self.stdout.write(json.dumps(snapshot, indent=2))
            return
        if not settings.REDIS_URL:
            self.stderr.write(
                "note: without REDIS_URL the registry is per process; this shows this command's only"
            )
        self._table(
            f"nodes ({len(snapshot['nodes'])})",
            ["id", "role", "last seen", "sockets"],
            [
                [n["id"], n["role"], f"{n['last_seen_ago']:.1f} s ago", _or_dash(n["sockets"])]
                for n in snapshot["nodes"]
            ],
        )
        self._table(
            f"ring ({len(snapshot['ring'])} relay nodes)",
            ["node", "vnodes", "share"],
            [[r["node"], str(r["vnodes"]), f"{r['share']:.1%}"] for r in snapshot["ring"]],
        )
        self._table(
            f"publishers ({len(snapshot['publishers'])})",
            ["stream", "node", "ttl", "last refresh", "next if failed"],
            [
                [
                    p["stream"],
                    p["node"] or "(expired: failing over)",
                    "-" if p["ttl"] is None else f"{p['ttl']:.0f} s",
                    f"{p['last_refresh_ago']:.1f} s ago",
                    p["elected_if_failed"] or ("-" if p["pulled"] else "(pushed: waits for its streamer)"),
                ]
                for p in snapshot["publishers"]
            ],
        )

    def _table(self, title: str, header: list[str], rows: list[list[str]]) -> None:
        self.stdout.write(self.style.MIGRATE_HEADING(title))
        if not rows:
            self.stdout.write("  (none)")
            return
        widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
        for row in [header, *rows]:
            self.stdout.write(
                "  " + "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            )


def _or_dash(value: int | None) -> str:
    return "-" if value is None else str(value)
