"""The ``rtmp`` process (Procfile, ``scripts/rtmp`` → ``manage.py rtmp``): nginx with the RTMP
module as a child, and the node's place in the cluster while it runs (docs/streaming.md, "The
`rtmp` process").

This process and not nginx itself is what the process manager starts and stops, so that a node
whose RTMP server goes away says so at once: once nginx answers on its control port the process
registers as ``rtmp`` in the cluster registry; on SIGTERM (or when nginx dies) it leaves
(``NodeLeaving``), hands every stream published on this node to the failover service (a pushed
stream waits for its streamer, viewers are told by ``publisher_changed``; a pulled one goes to
another node's relay), and only then stops nginx (SIGQUIT: graceful, then SIGTERM after
NGINX_STOP_SECONDS). Without this, those streams would wait out the 30 s silence limit while the
node's web still beats.

nginx runs in a session of its own (a signal to this process's group reaches this process, which
stops nginx in that order) and gets SIGTERM should this process die without stopping it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path

from django.conf import settings

from apps.streaming import cluster, failover, ingest

logger = logging.getLogger(__name__)

ROLE = "rtmp"
WATCH_SECONDS = 0.5
NGINX_STOP_SECONDS = 10.0
_PR_SET_PDEATHSIG = 1


def nginx_binary() -> str:
    """NGINX (the environment), else nginx on the PATH, else /usr/sbin/nginx."""
    return os.environ.get("NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies (Linux), so no nginx outlives it."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def start_nginx(conf: Path) -> subprocess.Popen[bytes]:
    # -e: nginx opens its error log before reading the config; the compiled-in path is root's.
    command = [nginx_binary(), "-p", str(conf.parent), "-e", "stderr", "-c", str(conf), "-g", "daemon off;"]
    return subprocess.Popen(  # noqa: S603 (a fixed command: the binary and our own config)
        command, stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent
    )


def stop_nginx(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(NGINX_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(NGINX_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
    return proc.wait()


def run(stop: threading.Event, *, node_id: str | None = None) -> int:
    """Run nginx until ``stop`` is set or nginx exits; returns nginx's exit status (0 when
    this process stopped it)."""
    node = node_id or settings.SYNCTV_NODE_ID
    nginx = start_nginx(ingest.write_config())
    heartbeat: cluster.Heartbeat | None = None
    try:
        while not stop.is_set() and nginx.poll() is None:
            if heartbeat is None and ingest.ingest_running():
                heartbeat = cluster.Heartbeat(ROLE, node_id=node).start()
                logger.info("rtmp %s: nginx answers; in the cluster", node)
            stop.wait(WATCH_SECONDS)
        if nginx.poll() is not None:
            logger.error("rtmp %s: nginx exited with %s", node, nginx.returncode)
    finally:
        if heartbeat is not None:
            heartbeat.stop(leave_cluster=True)
        handed = failover.hand_over(node, pushed_too=True)
        if handed:
            logger.warning("rtmp %s: leaving; %d stream(s) failed over", node, len(handed))
        code = stop_nginx(nginx)
    return 0 if stop.is_set() else (code or 1)
