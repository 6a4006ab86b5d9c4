"""Where a request comes from."""

from __future__ import annotations

import ipaddress

from django.conf import settings


def client_ip(request) -> str:
    """The client's IP address.

    X-Forwarded-For is believed only for the number of proxies the operator declared
    (TRUSTED_PROXY_COUNT): each proxy appends the address it saw, so the client is the entry
    that many places from the right. Anything unparsable falls back to REMOTE_ADDR.
    """
    meta = request.META
    remote = meta.get("REMOTE_ADDR") or "0.0.0.0"  # noqa: S104 (an address, not a bind)
    hops = settings.TRUSTED_PROXY_COUNT
    if hops > 0:
        forwarded = [p.strip() for p in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if p.strip()]
        if len(forwarded) >= hops:
            candidate = forwarded[-hops]
            try:
                return str(ipaddress.ip_address(candidate))
            except ValueError:
                pass
    return remote


def address_key(ip: str) -> str:
    """What a per-address limit counts: the address itself for IPv4, its /64 for IPv6, where one
    host or home holds a whole /64 and picks new addresses at will (a limit per IPv6 address would
    be no limit). IPv4-mapped addresses count as the IPv4 address."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def user_agent(request) -> str:
    return (request.META.get("HTTP_USER_AGENT") or "")[:512]
