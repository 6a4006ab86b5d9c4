"""Revoked token ids (SECURITY.md §1.1, §4.2).

``token:revoked:{jti}`` in Redis with TTL = the token's remaining life. Every write also goes to a
per-process cache, and when Redis does not answer the check falls back to that cache, so a node
keeps honouring what it knows while Redis is away (and the login-session rows in the database
still end every revoked session: Redis here keeps nothing across a restart).
"""

from __future__ import annotations

import logging
import time

from django.core.cache import caches

from apps.core.redis import REDIS_DOWN_ERRORS, get_redis

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
    client = get_redis()
    if client is None:
        return
    try:
        client.set(key, 1, ex=ttl)
    except REDIS_DOWN_ERRORS:
        logger.warning("Redis unavailable: revocation of %s kept in this process only", jti)


def is_revoked(jti: str) -> bool:
    key = KEY.format(jti=jti)
    client = get_redis()
    if client is not None:
        try:
            return bool(client.exists(key))
        except REDIS_DOWN_ERRORS:
            logger.warning("Redis unavailable: revocation check uses this process's cache")
    return _local().get(key) is not None
