"""What the room WebSocket reads from its handshake, and the close codes it answers with.

The consumer (apps.rooms.consumers) asks here which token the client sent, which protocol
version it speaks, and raises ``Refused`` to turn a connect away (docs/api.md, "WebSocket").
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings

from apps.accounts.keystore import KeysNotLoaded, keystore
from apps.accounts.selectors import verify_access_token
from apps.core import metrics, ratelimit
from apps.core.context import Origin
from apps.core.errors import ApplicationError, ServiceDegraded, UserBanned
from apps.rooms import roster
from apps.rooms.dbthreads import database_sync_to_async

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


def origin_of(scope: Mapping[str, Any]) -> Origin:
    """Who is connecting, for the audit log: the client's address and its user agent."""
    client = scope.get("client") or (None, None)
    headers = dict(scope.get("headers") or ())
    return Origin(ip=client[0], user_agent=headers.get(b"user-agent", b"").decode("latin-1")[:512])


def token_from(scope: Mapping[str, Any]) -> str | None:
    """The access token: a ``bearer.<token>`` subprotocol, else ``?token=`` (kept for clients
    that cannot set subprotocols; the log filter redacts it)."""
    for proto in scope.get("subprotocols") or ():
        if proto.startswith(BEARER_PREFIX):
            return proto[len(BEARER_PREFIX) :]
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    values = query.get("token")
    return values[0] if values else None


async def verified_token(raw: str | None) -> Any:
    """The access token, its signature and claims checked (``verify_access_token``): on the event
    loop, as the key store holds the keys; on a database thread when they have to be read first.
    Whether it is revoked, and its user, come later in the connect's one database call.
    Raises Refused (4401), also when there is no token."""
    if not raw:
        metrics.auth_failed("not_authenticated").inc()
        raise Refused(CLOSE_UNAUTHORIZED, "No token: send a bearer.<token> subprotocol.")
    try:
        try:
            with keystore.offline():
                return verify_access_token(raw)
        except KeysNotLoaded:
            return await database_sync_to_async(verify_access_token)(raw)
    except ApplicationError as exc:
        raise refusal_for(exc) from None


def refusal_for(exc: ApplicationError) -> Refused:
    """How a connect is turned away when its token's check raised ``exc``: a banned account with
    4403, a database outage with 1013 (the token may be fine: come back later), else 4401.
    All but the outage count as authentication failures in /metrics, by the error's code."""
    if isinstance(exc, ServiceDegraded):  # ``cause``: the page shows its "degraded" banner
        return Refused(CLOSE_TRY_AGAIN_LATER, exc.message, cause=exc.code)
    metrics.auth_failed(exc.code).inc()
    if isinstance(exc, UserBanned):
        return Refused(CLOSE_FORBIDDEN, "This account is banned.")
    return Refused(CLOSE_UNAUTHORIZED, exc.message)


def take_connect_allowance(user_id: str, room_id: str) -> tuple[ratelimit.TokenBucket, str]:
    """One connect of this user to this room on this node: its churn allowance (each connect and
    its leave are announced to the whole room) and a socket slot (at most
    MAX_SOCKETS_PER_USER_ROOM). The bucket it took from, and the slot's key to give back at
    disconnect. Raises Refused (4429)."""
    key = f"{user_id}:{room_id}"
    churn = ratelimit.local_buckets.bucket("ws_connect", key)
    if not churn.take():
        raise Refused(
            CLOSE_TOO_MANY_SOCKETS,
            "Connecting too often; this page reconnects in a moment.",
            close_code=CLOSE_TOO_MANY_SOCKETS,
            retry_after=math.ceil(churn.wait()),
        )
    if not ratelimit.socket_slots.take(key):
        metrics.rate_limited("ws_sockets").inc()
        raise Refused(
            CLOSE_TOO_MANY_SOCKETS,
            f"This room is already open in {ratelimit.MAX_SOCKETS_PER_USER_ROOM} windows or tabs of "
            "yours; close one and this one reconnects.",
            close_code=CLOSE_TOO_MANY_SOCKETS,
        )
    return churn, key


def protocol_offered(scope: Mapping[str, Any]) -> str | None:
    """The newest protocol version the client offered, or None when it offered none of ours."""
    offered = scope.get("subprotocols") or ()
    for protocol in SUBPROTOCOLS:
        if protocol in offered:
            return protocol
    return None


socket_log = logging.getLogger("synctv.socket")


def socket_opened() -> float:
    """An accepted socket: counted in /metrics (``synctv_ws_sockets``). Its start, for the line
    ``log_socket_closed`` writes."""
    metrics.WS_SOCKETS.labels(settings.SYNCTV_NODE_ID).inc()
    return time.monotonic()


def log_socket_closed(room_id: str, user_id: str, opened: float, code: Any) -> float:
    """One line per socket lifetime (docs/operations.md, "Logs"): its room, its user, how long it
    was open and the close code. A socket refused before its accept (``opened`` 0) has none.
    Returns 0.0, the socket's new ``opened``: a second call neither logs nor uncounts again."""
    if not opened:
        return 0.0
    metrics.WS_SOCKETS.labels(settings.SYNCTV_NODE_ID).dec()
    duration = round(time.monotonic() - opened, 1)
    context = {"room_id": room_id, "user_id": user_id or "-", "duration_s": duration, "close_code": code}
    socket_log.info("socket closed %s after %.1fs", code, duration, extra=context)
    return 0.0
