"""Pulled streams: the ``relay`` process of a node (Procfile; ``manage.py relay``) feeds the
node's RTMP server from each pulled stream's source with ffmpeg (docs/streaming.md, "Pulled
streams").

Which node pulls which stream: the one the stream's record names (``publisher_node``: set when
its relay went live, or by failover), or, for a stream nobody pulls yet, the node the hash ring
elects among the nodes running a relay. Every relay works this out from the database and the
cluster registry once a second (TICK_SECONDS), so a stream failover hands to another node starts
there within about a second, without any message between nodes.

ffmpeg publishes to this node's RTMP server as ``live/<relay name>``: a name the server signs
for the stream and this node (apps.streaming.keys), since the stream key is stored only hashed.
on_publish makes the stream live for this node as it does for a streamer, and renames it to the
stream's id, so HLS comes out the same way.

The server-side fetch guard (apps.core.netguard) applies when the pull runs, not only when the
URL was saved: an ``rtmp(s)`` source is resolved and checked, and ffmpeg is given the checked
address; an HLS source is fetched through a loopback proxy (apps.core.fetchproxy) that checks
every connection ffmpeg makes, segments and redirects included.

A pull that ends (the source went away, the RTMP server refused) starts again after 1, 2, 4...
up to 30 s. The relay is in the ring only while this node's RTMP server answers. On SIGTERM, or
when that server stops answering, it leaves the cluster (``NodeLeaving``), hands each of its streams
to the node the ring elects among the other relays (the failover service: audited, announced
as ``publisher_changed``) and only then stops its ffmpeg processes, so a stream is not left
waiting for the 15 s heartbeat TTL or the 30 s silence.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import IO
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection

from apps.core.fetchproxy import FetchProxy
from apps.core.netguard import UnsafeURL, check_server_host
from apps.core.redis import RedisUnavailable
from apps.streaming import cluster, failover, ingest, keys, publishers
from apps.streaming.models import Stream
from apps.streaming.services import SOURCE_SCHEMES

logger = logging.getLogger(__name__)

ROLE = "relay"
TICK_SECONDS = 1.0
BACKOFF_SECONDS = (1, 2, 4, 8, 15, 30)
HEALTHY_AFTER_SECONDS = 60  # a pull that ran this long starts its backoff over
STOP_GRACE_SECONDS = 3.0
READ_TIMEOUT_US = "15000000"  # ffmpeg gives up on a source silent for 15 s


def pinned_source(url: str) -> str:
    """An ``rtmp(s)`` source with its host replaced by an address the fetch guard allowed (so
    ffmpeg connects where the check looked, not to a second DNS answer). Raises UnsafeURL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or SOURCE_SCHEMES[scheme]
    address = check_server_host(parts.hostname or "", port)[0]
    netloc = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    return urlunsplit((scheme, netloc, parts.path, parts.query, ""))


def ffmpeg_command(source_url: str, target: str, *, proxy_url: str, ffmpeg: str = "ffmpeg") -> list[str]:
    """The ffmpeg that copies ``source_url`` into ``target`` (this node's RTMP server). Raises
    UnsafeURL for an rtmp(s) source the fetch guard refuses."""
    scheme = source_url.split(":", 1)[0].lower()
    if scheme in ("http", "https"):
        source = [
            "-http_proxy",
            proxy_url,
            "-http_persistent",
            "0",  # one request per proxied connection: each one checked
            "-protocol_whitelist",
            "http,https,tls,tcp,httpproxy,crypto",
            "-rw_timeout",
            READ_TIMEOUT_US,
            "-i",
            source_url,
        ]
    else:
        source = ["-rw_timeout", READ_TIMEOUT_US, "-i", pinned_source(source_url)]
    return [
        ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-re",  # a recorded HLS playlist is played at its pace, not read as fast as it downloads
        *source,
        "-c",
        "copy",
        "-f",
        "flv",
        target,
    ]


@dataclass
class Pull:
    """One pulled stream on this node: its ffmpeg, and when to try again after it ended."""

    stream_id: str
    source_url: str
    proc: subprocess.Popen[bytes] | None = None
    errors: IO[bytes] | None = None  # ffmpeg's stderr (a file: a pipe nobody reads would fill)
    started_at: float = 0.0
    failures: int = 0
    retry_at: float = 0.0
    last_error: str = ""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class RelaySupervisor:
    """The pulls this node runs. ``tick`` brings them in line with what the node should pull."""

    node_id: str
    proxy_url: str
    rtmp_base: str = ""  # rtmp://127.0.0.1:<port>/live
    ffmpeg: str = ""
    pulls: dict[str, Pull] = field(default_factory=dict)
    blind: bool = False  # the last tick could not read the database or the registry

    def __post_init__(self) -> None:
        if not keys.relay_node_ok(self.node_id):
            raise ValueError(f"SYNCTV_NODE_ID of a relay is 1 to {keys.RELAY_NODE_MAX} bytes")
        self.rtmp_base = self.rtmp_base or f"rtmp://127.0.0.1:{settings.RTMP_PORT}/{ingest.APPLICATION}"
        self.ffmpeg = self.ffmpeg or shutil.which("ffmpeg") or "ffmpeg"

    def assigned(self) -> dict[str, str]:
        """stream id -> source URL of every pulled stream this node should run now. Raises
        RedisUnavailable or DatabaseError (the caller keeps what runs as it is)."""
        relays: list[str] | None = None
        mine = {}
        rows = Stream.objects.exclude(source_url="").filter(room__closed_at__isnull=True)
        for stream_id, source, node in rows.values_list("pk", "source_url", "publisher_node"):
            if node == self.node_id:
                mine[stream_id] = source
            elif node == "":
                if relays is None:
                    relays = cluster.live_node_ids(ROLE)
                if publishers.elect(stream_id, relays) == self.node_id:
                    mine[stream_id] = source
        return mine

    def tick(self, *, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        # A long-running process: drop a connection that is broken or past CONN_MAX_AGE, as
        # Django does around each request (never inside a transaction: a test's, for one).
        if not connection.in_atomic_block:
            close_old_connections()
        try:
            wanted = self.assigned()
        except (RedisUnavailable, DatabaseError) as exc:
            if not self.blind:  # one line per outage, not one a second
                logger.warning("relay %s: cannot tell its streams (%s); pulls left as is", self.node_id, exc)
            self.blind = True
            return
        if self.blind:
            logger.warning("relay %s: can tell its streams again", self.node_id)
        self.blind = False
        for stream_id in [s for s, pull in self.pulls.items() if wanted.get(s) != pull.source_url]:
            self.stop_pull(stream_id)
        for stream_id, source in wanted.items():
            pull = self.pulls.setdefault(stream_id, Pull(stream_id=stream_id, source_url=source))
            self._reap(pull, now)
            if not pull.running and now >= pull.retry_at:
                self._start(pull, now)

    def _reap(self, pull: Pull, now: float) -> None:
        if pull.proc is None or pull.proc.poll() is None:
            return
        code, ran = pull.proc.returncode, now - pull.started_at
        stderr = ""
        if pull.errors is not None:
            pull.errors.seek(max(0, pull.errors.seek(0, 2) - 2000))
            stderr = pull.errors.read().decode("utf-8", "replace").strip()
            pull.errors.close()
        pull.proc, pull.errors = None, None
        pull.failures = 1 if ran >= HEALTHY_AFTER_SECONDS else pull.failures + 1
        delay = BACKOFF_SECONDS[min(pull.failures - 1, len(BACKOFF_SECONDS) - 1)]
        pull.retry_at = now + delay
        pull.last_error = stderr.splitlines()[-1] if stderr else f"exit {code}"
        # The stream id only: a source URL may carry credentials of its own.
        logger.warning(
            "relay %s: pull of stream %s ended after %.0f s (%s); again in %s s",
            self.node_id,
            pull.stream_id,
            ran,
            pull.last_error[:200],
            delay,
        )

    def _start(self, pull: Pull, now: float) -> None:
        target = f"{self.rtmp_base}/{keys.relay_name(pull.stream_id, self.node_id)}"
        try:
            command = ffmpeg_command(pull.source_url, target, proxy_url=self.proxy_url, ffmpeg=self.ffmpeg)
        except UnsafeURL as exc:
            pull.failures += 1
            pull.retry_at = now + BACKOFF_SECONDS[-1]
            pull.last_error = exc.message
            logger.warning("relay %s: stream %s not pulled: %s", self.node_id, pull.stream_id, exc.message)
            return
        pull.errors = tempfile.TemporaryFile()
        # The command is a list (no shell); the source URL passed the checks of clean_source_url.
        # A session of its own: a signal to the relay's process group (Ctrl-C, a process manager)
        # reaches the relay alone, which hands the stream over before it stops this ffmpeg.
        pull.proc = subprocess.Popen(  # noqa: S603
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=pull.errors,
            start_new_session=True,
        )
        pull.started_at = now
        logger.info("relay %s: pulling stream %s", self.node_id, pull.stream_id)

    def stop_pull(self, stream_id: str) -> None:
        pull = self.pulls.pop(stream_id, None)
        if pull is None or pull.proc is None:
            return
        if pull.proc.poll() is None:
            pull.proc.terminate()
            try:
                pull.proc.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                pull.proc.kill()
                pull.proc.wait()
        if pull.errors is not None:
            pull.errors.close()
        logger.info("relay %s: stopped pulling stream %s", self.node_id, stream_id)

    def stop_all(self) -> None:
        for stream_id in list(self.pulls):
            self.stop_pull(stream_id)


def run(stop: threading.Event, *, node_id: str | None = None) -> None:
    """The relay process until ``stop`` is set: the fetch proxy, and a tick a second while this
    node's RTMP server answers. Only then is it in the ring (a ``relay`` entry): a relay that
    cannot publish must not be elected. When the RTMP server stops answering, and at the end, it
    leaves, hands its streams over and stops every pull."""
    node = node_id or settings.SYNCTV_NODE_ID
    proxy = FetchProxy().start()
    supervisor = RelaySupervisor(node_id=node, proxy_url=proxy.url)
    heartbeat: cluster.Heartbeat | None = None
    logger.warning(
        "relay %s: started; joins the ring once the RTMP server at %s answers", node, supervisor.rtmp_base
    )
    try:
        while not stop.is_set():
            if ingest.ingest_running():
                if heartbeat is None:
                    heartbeat = cluster.Heartbeat(ROLE, node_id=node).start()
                    logger.info("relay %s: running (fetch proxy %s)", node, proxy.url)
                supervisor.tick()
            elif heartbeat is not None:
                logger.warning("relay %s: the RTMP server does not answer: leaving the ring", node)
                _leave(heartbeat, supervisor)
                heartbeat = None
            stop.wait(TICK_SECONDS)
    finally:
        if heartbeat is not None:
            _leave(heartbeat, supervisor)
        supervisor.stop_all()
        proxy.stop()


def _leave(heartbeat: cluster.Heartbeat, supervisor: RelaySupervisor) -> None:
    """Out of the ring first (``NodeLeaving``: no new stream is elected here), then the streams
    to other relays (the failover service), then stop the pulls: their on_publish_done then finds
    the streams moved and changes nothing."""
    heartbeat.stop(leave_cluster=True)
    handed = failover.hand_over(supervisor.node_id, pushed_too=False)
    supervisor.stop_all()
    logger.info("relay %s: left the ring; %d stream(s) handed over", supervisor.node_id, len(handed))
