"""Revoked token ids (docs/security.md, "Who is asking" and "When Redis is down").

``token:revoked:{jti}`` in Redis with TTL = the token's remaining life. Every write also goes to a
per-process cache, and when Redis does not answer the check falls back to that cache, so a node
keeps honouring what it knows while Redis is away (and the login-session rows in the database
still end every revoked session: Redis here keeps nothing across a restart).
"""

from __future__ import annotations

import logging
import time

from django.core.cache import caches

from apps.accounts import authcache
from apps.core.redis import RedisUnavailable, call_redis, get_redis

logger = logging.getLogger(__name__)

KEY = "token:revoked:{jti}"


def _local():
    return caches["local"]


def revoke_jti(jti: str, expires_at_epoch: float) -> None:
    ttl = int(expires_at_epoch - time.time()) + 1
    if ttl <= 0:
        return  # already expired: nothing to remember
    key = KEY.format(jti=jti)
    _local().set(key, 1, ttl)
    if get_redis() is None:
        return
    try:
        call_redis(lambda client: client.set(key, 1, ex=ttl))
    except RedisUnavailable:
        logger.warning("Redis unavailable: revocation of %s kept in this process only", jti)


def is_revoked(jti: str) -> bool:
    return check(jti)[0]


def check(jti: str, user_id: str | None = None) -> tuple[bool, str | None, bool]:
    """``(revoked, stamp, answered)``: whether ``jti`` is revoked and, with ``user_id``, in the
    same Redis round trip, the user's authentication stamp (``authcache``; None when Redis has
    none or does not answer); ``answered``: Redis answered. Also what this process learned while
    Redis was away (it never reached Redis)."""
    key = KEY.format(jti=jti)
    stamp, answered = None, False
    if get_redis() is not None:
        keys = [key] if user_id is None else [key, authcache.stamp_key(user_id)]
        try:
            values = call_redis(lambda client: client.mget(keys))
        except RedisUnavailable:
            logger.warning("Redis unavailable: revocation check uses this process's cache")
            authcache.forget_all()
        else:
            if values[0] is not None:
                return True, None, True
            stamp, answered = (values[1] if user_id is not None else None), True
    return _local().get(key) is not None, stamp, answered
