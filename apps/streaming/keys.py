"""Stream keys: made here, shown once, stored only as a keyed hash (docs/streaming.md, "Keys").

A key is ``sk_`` + 32 random bytes, URL-safe base64 (43 characters). The database holds
HMAC-SHA256(server secret, key): the RTMP callback finds a stream by that hash in one indexed
query, and a copy of the table alone opens nothing. The server secret is derived from
DJANGO_SECRET_KEY for this one purpose, so changing DJANGO_SECRET_KEY invalidates every key.
"""

from __future__ import annotations

import hmac
import re
import secrets

from django.utils.crypto import salted_hmac

PREFIX = "sk_"
KEY_BYTES = 32
KEY_PATTERN = re.compile(r"\Ask_[A-Za-z0-9_-]{43}\Z")
_PURPOSE = "synctv.streaming.stream-key"


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(KEY_BYTES)


def looks_like_key(value: object) -> bool:
    return isinstance(value, str) and KEY_PATTERN.match(value) is not None


def key_hash(key: str) -> str:
    return salted_hmac(_PURPOSE, key, algorithm="sha256").hexdigest()


def matches(key: str, stored_hash: str) -> bool:
    """Constant-time: the comparison takes as long whatever the hashes share."""
    return hmac.compare_digest(key_hash(key), stored_hash)
