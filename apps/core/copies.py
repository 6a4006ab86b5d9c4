"""Copies in Redis of what a WebSocket connect reads from PostgreSQL, for when it is down
(docs/security.md, "When PostgreSQL is down").

A connect reads the user behind its token, the room's part of the hello and the membership. Each
of those reads leaves a copy in Redis (``keep``); when the database cannot be reached, the same
read answers from the copy (``recall``), and what is built from it is marked stale. Rules:

- Only rows and payloads the read already had in hand are kept, never recomputed; secrets stay
  out (``row(..., omit=...)``: password hashes, ban addresses).
- A copy is written only when it differs from what this process last wrote under that key (or
  that was an hour ago): a busy room's repeated reads cost no Redis write.
- Redis unreachable (or none, in the embedded default): nothing is kept and nothing recalled; the
  read fails as it would have. Nothing read inside a transaction is kept (it may be the
  transaction's own writes, which a rollback would undo).
- Whether a copy may still be trusted is the caller's rule (the user's copy is used only under
  the authentication stamp it was stored with, apps.accounts.selectors).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any, TypeVar

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DEFAULT_DB_ALIAS, connection, models
from rest_framework.response import Response

from apps.core.redis import RedisUnavailable, call_redis

KEY = "copy:{name}"
TTL_S = 7 * 24 * 3600  # a room nobody joined for a week needs no copy
REWRITE_AFTER_S = 3600.0  # rewrite an unchanged copy this often (Redis may have lost it)
MAX_REMEMBERED = 50_000

M = TypeVar("M", bound=models.Model)
logger = logging.getLogger(__name__)

_written: dict[str, tuple[int, float]] = {}  # name -> (hash of the text, when this process wrote it)
_pending: dict[str, tuple[str, int]] = {}  # name -> (text, hash): waiting for the writer
_inflight: dict[str, tuple[str, int]] = {}  # being written now (a recall meanwhile finds them here)
_lock = threading.Lock()
_wake = threading.Condition(_lock)
_writer: tuple[int, threading.Thread] | None = None  # (pid, thread): a forked worker starts its own


def keep(name: str, value: dict[str, Any]) -> None:
    """Store ``value`` (JSON-able with Django's encoder: datetimes, decimals) under ``name``. Not
    inside a transaction: what it read may be its own writes, not yet committed.

    The write is left to this process's writer thread, which sends every copy waiting in one
    pipeline as soon as it is free: a connect's two copies cost it no Redis round trip of its own
    (two synchronous writes were ~0.5 ms of a connect's CPU, bench/ws/README.md)."""
    if not settings.REDIS_URL or connection.in_atomic_block:
        return
    text = json.dumps(value, cls=DjangoJSONEncoder, separators=(",", ":"))
    digest, now = hash(text), time.monotonic()
    last = _written.get(name)
    if last is not None and last[0] == digest and now - last[1] < REWRITE_AFTER_S:
        return
    with _wake:
        _pending[name] = (text, digest)
        _ensure_writer()
        _wake.notify()


def _ensure_writer() -> None:
    global _writer
    pid = os.getpid()
    if _writer is None or _writer[0] != pid or not _writer[1].is_alive():
        thread = threading.Thread(target=_write_forever, name="redis-copies", daemon=True)
        _writer = (pid, thread)
        thread.start()


def _write_forever() -> None:
    while True:
        with _wake:
            while not _pending:
                _wake.wait()
        flush()


def flush() -> None:
    """Write every copy waiting, in one pipeline (the writer thread; tests call it to be sure)."""
    with _lock:
        batch = dict(_pending)
        _pending.clear()
        _inflight.update(batch)
    if not batch:
        return
    try:
        _write(batch)
    finally:
        with _lock:
            for name, waiting in batch.items():
                if _inflight.get(name) is waiting:
                    del _inflight[name]


def _write(batch: dict[str, tuple[str, int]]) -> None:
    def write(client) -> None:
        pipe = client.pipeline(transaction=False)
        for name, (text, _digest) in batch.items():
            pipe.set(KEY.format(name=name), text, ex=TTL_S)
        pipe.execute()

    try:
        call_redis(write)
    except RedisUnavailable:
        return  # not remembered as written: the next read keeps it again
    except Exception:  # the writer thread must live on
        logger.exception("copies: a write to Redis failed")
        return
    now = time.monotonic()
    with _lock:
        if len(_written) + len(batch) >= MAX_REMEMBERED:
            _written.clear()
        for name, (_text, digest) in batch.items():
            _written[name] = (digest, now)


def recall(name: str) -> dict[str, Any] | None:
    """The copy stored under ``name`` (or waiting to be), or None (none, or Redis not answering)."""
    with _lock:
        waiting = _pending.get(name) or _inflight.get(name)
    if waiting is not None:
        return json.loads(waiting[0])
    try:
        text = call_redis(lambda client: client.get(KEY.format(name=name)))
    except RedisUnavailable:
        return None
    return json.loads(text) if text else None


def forget_written() -> None:
    """Tests: this process remembers writing nothing."""
    with _lock:
        _written.clear()


def row(instance: models.Model, *, omit: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The instance's concrete fields by attribute name, without the ``omit`` ones."""
    return {
        f.attname: getattr(instance, f.attname)
        for f in instance._meta.concrete_fields
        if f.attname not in omit
    }


def instance(model: type[M], data: dict[str, Any], *, blanks: dict[str, Any] | None = None) -> M:
    """A model instance from ``row``'s dict, as if loaded from the database; the omitted fields
    take ``blanks`` (else their default)."""
    blanks = blanks or {}
    names, values = [], []
    for f in model._meta.concrete_fields:
        names.append(f.attname)
        if f.attname in data:
            values.append(f.to_python(data[f.attname]))
        else:
            values.append(blanks.get(f.attname, f.get_default()))
    return model.from_db(DEFAULT_DB_ALIAS, names, values)


STALE_HEADER = "SyncTV-Stale"  # on a REST answer made from copies (docs/api.md)


def stale_response(data: Any) -> Response:
    """A REST answer made from copies while the database is down, marked so."""
    return Response(data, headers={STALE_HEADER: "true"})
