"""Who counts as an operator for the operator endpoints (/readyz details, /metrics).

A request is an operator's when it carries ``Authorization: Bearer <METRICS_TOKEN>`` (compared in
constant time; an empty setting never matches) or comes from inside ``METRICS_ALLOWED_NETWORKS``
(loopback by default): both the client address ``client_ip`` believes and the peer that sent
the request. The peer too, because ``X-Forwarded-For`` is believed from whoever sends it once
TRUSTED_PROXY_COUNT is set: a client that reaches a node's port directly could otherwise write
``X-Forwarded-For: 127.0.0.1``. So a proxy in front must be inside the networks as well (the
nginx front on loopback is). A request that came through a proxy nobody declared
(``X-Forwarded-For`` present while TRUSTED_PROXY_COUNT is 0) is judged by the token alone, since
every visitor would look like the proxy's address.
"""

from __future__ import annotations

import hmac
import ipaddress
from functools import lru_cache

from django.conf import settings

from apps.core.net import client_ip


@lru_cache(maxsize=8)
def _networks(spec: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in spec if item.strip())


def _has_token(request) -> bool:
    expected = settings.METRICS_TOKEN
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, given = header.partition(" ")
    if not expected or scheme.lower() != "bearer" or not given:
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())


def is_operator(request) -> bool:
    if _has_token(request):
        return True
    if settings.TRUSTED_PROXY_COUNT == 0 and request.META.get("HTTP_X_FORWARDED_FOR"):
        # A proxy is in front but not declared: REMOTE_ADDR is the proxy's (often loopback) for
        # every visitor, so the address says nothing about who is asking. The token still works.
        return False
    return _allowed(client_ip(request)) and _allowed(request.META.get("REMOTE_ADDR", ""))


def _allowed(text: str) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in _networks(tuple(settings.METRICS_ALLOWED_NETWORKS)))
