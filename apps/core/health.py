"""Operator endpoints: /healthz (the process answers) and /readyz (its dependencies answer).

/readyz tells anyone whether the node is ready and which dependency failed; the error texts,
notes and timings only to operators (apps.core.operators, docs/security.md).
"""

from __future__ import annotations

import threading
import time
import uuid

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.cache import caches
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from apps.core import resilience
from apps.core.operators import is_operator
from apps.core.redis import get_redis


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_cache() -> None:
    cache = caches["default"]
    key = f"readyz:{uuid.uuid4().hex}"
    cache.set(key, "1", 5)
    if cache.get(key) != "1":
        raise RuntimeError("cache did not return what was written")
    cache.delete(key)


def _check_redis() -> str | None:
    client = get_redis()
    if client is None:
        return "not configured (embedded default)"
    client.ping()
    return None


def _check_channel_layer() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")

    async def round_trip() -> None:
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "readyz.ping"})
        message = await layer.receive(channel)
        if message.get("type") != "readyz.ping":
            raise RuntimeError("channel layer returned the wrong message")

    async_to_sync(round_trip)()


_stopping = threading.Event()


def mark_stopping() -> None:
    """This process is stopping (a ``ws`` node draining its sockets: apps.rooms.lifecycle): from
    now on /readyz fails, so a load balancer that reads it sends no more sockets here."""
    _stopping.set()


def _check_accepting() -> None:
    if _stopping.is_set():
        raise RuntimeError("this process is stopping: it drains its sockets and takes no new ones")


CHECKS = {
    "database": _check_database,
    "cache": _check_cache,
    "redis": _check_redis,
    "channel_layer": _check_channel_layer,
    "accepting": _check_accepting,
}


@never_cache
@require_GET
def healthz(request):
    return JsonResponse({"status": "ok"})


def run_checks() -> dict[str, dict]:
    """Every readiness check, in this process: name -> {ok, error or note, ms}. Used by /readyz
    and by ``manage.py healthcheck``."""
    results: dict[str, dict] = {}
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            note = check()
        except Exception as exc:  # any failure means "not ready": report it, do not crash
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
        else:
            results[name] = {"ok": True, **({"note": note} if note else {})}
        results[name]["ms"] = round((time.perf_counter() - started) * 1000, 2)
    return results


@never_cache
@require_GET
def readyz(request):
    results = run_checks()
    failed = sorted(name for name, r in results.items() if not r["ok"])
    if not is_operator(request):
        # Error texts name internal hosts and drivers; anyone else learns only what failed.
        results = {name: {"ok": r["ok"]} for name, r in results.items()}
    # The breakers' states say whether this process is still asking a service or falling back
    # (docs/operations.md, "Health"); an open one is not a failure of its own: the check is.
    body = {
        "status": "fail" if failed else "ok",
        "failed": failed,
        "checks": results,
        "breakers": resilience.registered_states(),
    }
    response = JsonResponse(body, status=503 if failed else 200)
    if failed:
        response["Retry-After"] = "5"
    return response
