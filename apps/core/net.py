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


def user_agent(request) -> str:
    return (request.META.get("HTTP_USER_AGENT") or "")[:512]
