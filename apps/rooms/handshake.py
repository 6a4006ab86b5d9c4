"""What the room WebSocket reads from its handshake, and the close codes it answers with.

The consumer (apps.rooms.consumers) asks here which token the client sent, which protocol
version it speaks, and raises ``Refused`` to turn a connect away (docs/api.md, "WebSocket").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from apps.rooms import roster

# synctv.v2 (preferred when offered): the hello lists the first page of who is online, with the
# count; the rest on request (``members``); arrivals and departures come as ``members_changed``
# batches. synctv.v1: the hello lists everyone, and member_joined / member_left one by one.
SUBPROTOCOLS = (roster.V2, roster.V1)
SUBPROTOCOL = roster.V1  # what a client that offers no version gets
BEARER_PREFIX = "bearer."
CLOSE_UNAUTHORIZED, CLOSE_FORBIDDEN, CLOSE_NOT_FOUND = 4401, 4403, 4404
CLOSE_SERVICE_RESTART = 1012
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TOO_MANY_SOCKETS = 4429  # a user's socket cap or connect churn (apps.core.ratelimit)


class Refused(Exception):
    """A connect that is turned away: the close code, the reason and details for the client."""

    def __init__(self, code: int, reason: str, **details: Any) -> None:
        super().__init__(reason)
        self.code, self.reason, self.details = code, reason, details


def token_from(scope: Mapping[str, Any]) -> str | None:
    """The access token: a ``bearer.<token>`` subprotocol, else ``?token=`` (kept for clients
    that cannot set subprotocols; the log filter redacts it)."""
    for proto in scope.get("subprotocols") or ():
        if proto.startswith(BEARER_PREFIX):
            return proto[len(BEARER_PREFIX) :]
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    values = query.get("token")
    return values[0] if values else None


def protocol_offered(scope: Mapping[str, Any]) -> str | None:
    """The newest protocol version the client offered, or None when it offered none of ours."""
    offered = scope.get("subprotocols") or ()
    for protocol in SUBPROTOCOLS:
        if protocol in offered:
            return protocol
    return None
