"""Media URLs: what users may put in a playlist, and what the server itself may fetch.

Viewers' browsers fetch playlist URLs, so a LAN media server (http://192.168.1.20:8096/...) is a
fine playlist entry. The server is different: whenever it fetches a URL itself (proxying,
probing), :func:`check_server_fetch` must pass first. It resolves the host and refuses loopback,
private, link-local, CGNAT, multicast, reserved and cloud-metadata addresses (IPv6 forms that
carry an IPv4 address — mapped, 6to4, NAT64, IPv4-compatible, Teredo — are judged by the IPv4
address inside) unless the operator allows private targets (``FETCH_ALLOW_PRIVATE_NETWORKS``). A
fetcher must then connect to one of the addresses returned, not resolve the name again, so a
DNS answer that changes between check and connect (rebinding) gains nothing.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

from apps.core.errors import InvalidInput

MAX_URL_LENGTH = 2048
ALLOWED_SCHEMES = ("http", "https")
METADATA_ADDRESSES = {
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack
    ipaddress.ip_address("fd00:ec2::254"),  # AWS IPv6
    ipaddress.ip_address("100.100.100.200"),  # Alibaba
}


class UnsafeURL(InvalidInput):
    code = "unsafe_url"


def validate_media_url(url: object, *, field: str = "url") -> str:
    """A playlist URL: http(s), a host, at most 2048 characters, no spaces or control characters."""

    def refuse(message: str) -> InvalidInput:
        return InvalidInput(f"{field}: {message}", details={field: [message]})

    if not isinstance(url, str) or not url:
        raise refuse("A URL is required.")
    if len(url) > MAX_URL_LENGTH:
        raise refuse(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise refuse("The URL contains spaces or control characters.")
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError as exc:
        raise refuse("The URL is malformed.") from exc
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise refuse("Only http and https URLs are allowed.")
    if not hostname:
        raise refuse("The URL has no host.")
    return url


NAT64_PREFIXES = (
    ipaddress.ip_network("64:ff9b::/96"),  # RFC 6052 well-known prefix
    ipaddress.ip_network("64:ff9b:1::/48"),  # RFC 8215 local-use prefix (IPv4 in the last 32 bits)
)
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d


def _wrapped_ipv4(ip: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address an IPv6 address carries, if it is one of the forms that route to it:
    IPv4-mapped, 6to4 (2002:AABB:CCDD::/48), NAT64, IPv4-compatible, Teredo (the client)."""
    if ip.ipv4_mapped is not None:
        return "IPv4-mapped", ip.ipv4_mapped
    if ip.sixtofour is not None:
        return "6to4", ip.sixtofour
    if any(ip in net for net in NAT64_PREFIXES):
        return "NAT64", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in IPV4_COMPATIBLE and int(ip) > 1:  # not :: or ::1, which are judged as themselves
        return "IPv4-compatible", ipaddress.IPv4Address(int(ip))
    if ip.teredo is not None:
        return "Teredo", ip.teredo[1]
    return None


def _refusal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(ip, ipaddress.IPv6Address) and (wrapped := _wrapped_ipv4(ip)) is not None:
        # Judge what the packets would reach: a 6to4 relay or NAT64 gateway delivers them to the
        # IPv4 address inside, so 2002:7f00:1:: is loopback whatever the outer prefix says.
        form, inner = wrapped
        reason = _refusal(inner)
        if reason is not None:
            return f"{reason} ({inner}, in {form} form)"
        if form == "IPv4-mapped":
            return None
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_private:
        return "a private address"
    if ip.is_multicast or ip.is_reserved or ip.is_unspecified or not ip.is_global:
        return "not a public address"
    return None


def check_server_fetch(
    url: str, *, allow_private: bool | None = None, resolver=socket.getaddrinfo
) -> list[str]:
    """Refuse ``url`` unless every address its host resolves to is public. Returns the addresses
    (connect to one of these). Raises UnsafeURL."""
    validate_media_url(url)
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    return check_server_host(parts.hostname or "", port, allow_private=allow_private, resolver=resolver)


def check_server_host(
    host: str, port: int, *, allow_private: bool | None = None, resolver=socket.getaddrinfo
) -> list[str]:
    """The same check for a host and port the server is about to connect to that is not an
    http(s) URL (an RTMP source, a proxied CONNECT). Returns the addresses; raises UnsafeURL."""
    if not host:
        raise UnsafeURL("url: the URL has no host.", details={"url": ["Host has no address."]})
    allow = settings.FETCH_ALLOW_PRIVATE_NETWORKS if allow_private is None else allow_private
    try:
        infos = resolver(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise UnsafeURL(
            f"url: the host {host!r} does not resolve.", details={"url": ["Host does not resolve."]}
        ) from exc
    addresses = []
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        reason = _refusal(ip)
        if reason and not (allow and not reason.startswith("a cloud metadata address")):
            raise UnsafeURL(
                f"url: the server will not fetch {host!r}: it resolves to {reason}.",
                details={"url": [f"Resolves to {reason}."]},
            )
        addresses.append(str(ip))
    if not addresses:
        raise UnsafeURL(f"url: the host {host!r} has no address.", details={"url": ["Host has no address."]})
    return addresses
