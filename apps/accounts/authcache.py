"""What authenticating an access token reads from PostgreSQL, kept per process while Redis says
it is still current: the hot path then makes one Redis round trip and no database query.

Why: staying near the bare floor (DRF + RS256 + one PostgreSQL lookup, bench/README.md) leaves
no room for extra round trips on the hot path: one Redis round trip at most for revocation, the
user from the token claims or a short cache. The revocation check is that round trip; it also reads the
user's *stamp* (``auth:stamp:{user_id}``, a random value), and a process reuses the user row and
the session's liveness it loaded earlier only while the stamp is unchanged.

Anything that changes what authentication decides replaces the stamp after its transaction
commits: every save or delete of a user (ban, role, password, profile, ``last_login``) and every
end of a session (``services.sessions._announce_sessions_changed``, called before the sockets are
told, so a socket re-checking its token on that news sees the new stamp). Rules that keep it
correct:

- The stamp is read BEFORE the database, and an entry is stored under the stamp read then: a
  change committed after that read replaces the stamp, so the entry is never used.
- No stamp in Redis (never set, expired, Redis restarted and lost it): the database decides, and
  the entry is kept only if this process's ``SET NX`` of a fresh stamp wins; if someone replaced
  it meanwhile, nothing is kept.
- Redis not answering: no entry is read or stored and this process forgets them all; the
  database decides every request (docs/security.md, "When Redis is down"), as before this cache.
- Entries live at most ``MAX_AGE_S`` and only while the session stays live that long: the bound
  on staleness if a stamp change was lost because Redis was unreachable for the writer but
  answers the reader again (a partition, not a restart).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass

from django.db import transaction

from apps.core.redis import RedisUnavailable, call_redis, get_redis

logger = logging.getLogger(__name__)

STAMP_KEY = "auth:stamp:{user_id}"
STAMP_TTL_S = 24 * 3600  # a stamp nobody reads for a day may go; a missing one just means "ask the DB"
MAX_AGE_S = 30.0
MAX_ENTRIES = 20_000  # per process; past it the cache starts over

_clock = time.monotonic


@dataclass(frozen=True, slots=True)
class Entry:
    stamp: str
    stored_at: float
    values: tuple  # the user row, converted, in User._meta.concrete_fields order


_entries: dict[tuple[str, str], Entry] = {}
_lock = threading.Lock()


def stamp_key(user_id: str) -> str:
    return STAMP_KEY.format(user_id=user_id)


def lookup(user_id: str, session_id: str, stamp: str | None) -> tuple | None:
    """The cached user row for this session if ``stamp`` (just read from Redis) still matches."""
    if stamp is None:
        return None
    entry = _entries.get((user_id, session_id))
    if entry is None or entry.stamp != stamp or _clock() - entry.stored_at > MAX_AGE_S:
        return None
    return entry.values


def store(user_id: str, session_id: str, stamp: str | None, values: tuple) -> str | None:
    """Keep a row loaded from the database after the stamp was read (see the module rules).
    ``stamp`` None: Redis had none, so try to claim a fresh one; keep the row only on success.
    Returns the stamp the row was kept under (None: not kept)."""
    if stamp is None:
        fresh = secrets.token_urlsafe(12)
        try:
            claimed = call_redis(
                lambda client: client.set(stamp_key(user_id), fresh, nx=True, ex=STAMP_TTL_S)
            )
        except RedisUnavailable:
            forget_all()
            return None
        if not claimed:
            return None
        stamp = fresh
    with _lock:
        if len(_entries) >= MAX_ENTRIES:
            _entries.clear()
        _entries[(user_id, session_id)] = Entry(stamp=stamp, stored_at=_clock(), values=values)
    return stamp


def forget_all() -> None:
    with _lock:
        _entries.clear()


def user_changed(user_id: str) -> None:
    """Something authentication reads about ``user_id`` changed: replace the stamp once the
    current transaction commits (at once outside one), so every process reloads. This process
    forgets the user's entries at once too: a request it serves inside the same transaction, or
    before the commit is seen, reads the database."""
    _forget_user(user_id)
    transaction.on_commit(lambda: _replace_stamp(user_id))


def _forget_user(user_id: str) -> None:
    with _lock:
        for key in [k for k in _entries if k[0] == user_id]:
            del _entries[key]


def _replace_stamp(user_id: str) -> None:
    _forget_user(user_id)
    if get_redis() is None:
        return
    try:
        call_redis(lambda client: client.set(stamp_key(user_id), secrets.token_urlsafe(12), ex=STAMP_TTL_S))
    except RedisUnavailable:
        # Other processes cannot be told; their entries end within MAX_AGE_S (module docstring).
        logger.warning("Redis unavailable: other processes may use %s's cached row %ss", user_id, MAX_AGE_S)
        forget_all()
