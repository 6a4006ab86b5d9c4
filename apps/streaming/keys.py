"""Stream keys: made here, shown once, stored only as a keyed hash (docs/streaming.md, "Keys").

A key is ``sk_`` + 32 random bytes, URL-safe base64 (43 characters). The database holds
HMAC-SHA256(server secret, key): the RTMP callback finds a stream by that hash in one indexed
query, and a copy of the table alone opens nothing. The server secret is derived from
DJANGO_SECRET_KEY for this one purpose, so changing DJANGO_SECRET_KEY invalidates every key.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
import time
from dataclasses import dataclass

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


# --- relay names: how a node's own relay (a pulled stream) publishes without the stream key ---------
#
# A pulled stream is fed by ffmpeg on the node the ring elected (apps.streaming.relay). The key is
# stored only hashed, so the relay cannot publish with it; it publishes under a name the server
# signs instead: ``rl-<expiry>-<signature>-<node>-<stream id>``, the node in lower-case base32
# (no '-' in it, nothing a URL or an RTMP play path treats specially), the signature an HMAC over
# the stream, the node and the expiry with a secret derived from DJANGO_SECRET_KEY for this purpose
# alone. on_publish accepts it until the expiry (RELAY_NAME_SECONDS: enough for ffmpeg to
# connect); on_update and on_publish_done carry the same name for as long as that connection
# lasts, so they check the signature but not the expiry. The node in the name is the one that
# claims the stream. nginx-rtmp holds at most 255 bytes of a stream name: a relay's node id is
# limited to RELAY_NODE_MAX bytes.

RELAY_PREFIX = "rl-"
RELAY_NAME_SECONDS = 120
RELAY_NODE_MAX = 100
_RELAY_PURPOSE = "synctv.streaming.relay-name"
RELAY_NAME_PATTERN = re.compile(
    r"\Arl-(?P<expiry>[0-9]{10})-(?P<sig>[0-9a-f]{32})-(?P<node>[a-z2-7]{1,160})-(?P<stream>[A-Za-z0-9_-]{1,32})\Z"
)


@dataclass(frozen=True)
class RelayName:
    stream_id: str
    node: str
    expiry: int


def _relay_signature(stream_id: str, node: str, expiry: int) -> str:
    message = f"{stream_id}\n{node}\n{expiry}"
    return salted_hmac(_RELAY_PURPOSE, message, algorithm="sha256").hexdigest()[:32]


def relay_node_ok(node: str) -> bool:
    return 0 < len(node.encode()) <= RELAY_NODE_MAX


def relay_name(stream_id: str, node: str, *, now: float | None = None) -> str:
    if not relay_node_ok(node):
        raise ValueError(f"a relay's node id is 1 to {RELAY_NODE_MAX} bytes")
    expiry = int((time.time() if now is None else now) + RELAY_NAME_SECONDS)
    encoded = base64.b32encode(node.encode()).decode().rstrip("=").lower()
    return f"{RELAY_PREFIX}{expiry:010d}-{_relay_signature(stream_id, node, expiry)}-{encoded}-{stream_id}"


def looks_like_relay_name(value: object) -> bool:
    return isinstance(value, str) and RELAY_NAME_PATTERN.match(value) is not None


def open_relay_name(value: str, *, now: float | None = None, check_expiry: bool) -> RelayName | None:
    """The stream and node a relay name was signed for (with ``check_expiry``: if it has not
    expired). None for anything else; the signature is compared in constant time."""
    match = RELAY_NAME_PATTERN.match(value)
    if match is None:
        return None
    encoded = match["node"].upper()
    try:
        node = base64.b32decode(encoded + "=" * (-len(encoded) % 8)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    stream_id, expiry = match["stream"], int(match["expiry"])
    if not hmac.compare_digest(_relay_signature(stream_id, node, expiry), match["sig"]):
        return None
    if check_expiry and expiry < (time.time() if now is None else now):
        return None
    return RelayName(stream_id=stream_id, node=node, expiry=expiry)
