"""Media URLs (docs/api.md, "REST"; docs/security.md, "Checks on what comes in"): what a playlist
may hold, and what the server itself may fetch (apps.core.netguard).

Playlist URLs are fetched by viewers' browsers, so LAN addresses are fine there; only the
scheme and the shape are checked. ``check_server_fetch`` guards every fetch the server makes
itself and refuses loopback, private, link-local, CGNAT, unspecified and metadata targets.

No test here sends a packet anywhere: hostnames go through fake resolvers, IP literals through
``getaddrinfo`` with ``AI_NUMERICHOST`` (which never asks DNS), and the one real lookup is
``localhost`` (the hosts file).
"""

from __future__ import annotations

import socket

import pytest
from rest_framework.test import APIClient

from apps.accounts.tests.factories import TEST_ORIGIN, make_user
from apps.core.errors import InvalidInput
from apps.core.netguard import (
    MAX_URL_LENGTH,
    UnsafeURL,
    check_server_fetch,
    check_server_host,
    validate_media_url,
)
from apps.rooms import services
from apps.rooms.models import Movie

PUBLIC_V4 = "93.184.216.34"


# --- resolvers -----------------------------------------------------------------------------------------


def _info(address: str, port: int) -> tuple:
    if ":" in address:
        return (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))
    return (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))


class FakeResolver:
    """Answers every name with ``addresses``; remembers what it was asked."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host, port, *args, **kwargs):
        self.calls.append((host, port))
        return [_info(a, port) for a in self.addresses]


def failing_resolver(host, port, *args, **kwargs):
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def numeric_only(host, port, *args, type=0, **kwargs):
    """getaddrinfo for IP literals only: AI_NUMERICHOST makes it fail rather than query DNS."""
    return socket.getaddrinfo(host, port, type=type, flags=socket.AI_NUMERICHOST)


def _refused(url: str, **kwargs) -> UnsafeURL:
    with pytest.raises(UnsafeURL) as caught:
        check_server_fetch(url, **kwargs)
    err = caught.value
    assert err.status == 400
    assert "url" in err.details
    return err


# --- validate_media_url (playlist URLs) ----------------------------------------------------------------

BAD_MEDIA_URLS = [
    pytest.param("file:///etc/passwd", id="file"),
    pytest.param("FILE:///etc/passwd", id="file-upper"),
    pytest.param("javascript:alert(1)", id="javascript"),
    pytest.param("JaVaScRiPt:alert(document.cookie)//http://x", id="javascript-mixed-case"),
    pytest.param("data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==", id="data"),
    pytest.param("ftp://example.com/movie.mp4", id="ftp"),
    pytest.param("vbscript:msgbox(1)", id="vbscript"),
    pytest.param("blob:https://example.com/uuid", id="blob"),
    pytest.param("http://exa mple.com/movie.mp4", id="inner-space"),
    pytest.param("http://example.com/a b.mp4", id="space-in-path"),
    pytest.param("http://example.com/a\tb.mp4", id="tab"),
    pytest.param("http://example.com/\x01movie.mp4", id="control-char"),
    pytest.param("http://example.com/\x7fmovie.mp4", id="del-char"),
    pytest.param("http://example.com/movie.mp4\r\nX-Injected: 1", id="crlf"),
    pytest.param("http://", id="no-host"),
    pytest.param("http:///movie.mp4", id="empty-host"),
    pytest.param("https://:8080/movie.mp4", id="port-only"),
    pytest.param("//example.com/movie.mp4", id="scheme-relative"),
    pytest.param("/movie.mp4", id="path-only"),
    pytest.param("example.com/movie.mp4", id="no-scheme"),
    pytest.param("http://example.com:99999/movie.mp4", id="port-out-of-range"),
    pytest.param("http://example.com:abc/movie.mp4", id="port-not-number"),
    pytest.param("http://[::1/movie.mp4", id="broken-ipv6"),
    pytest.param(
        "https://example.com/" + "a" * (MAX_URL_LENGTH - len("https://example.com/") + 1), id="2049"
    ),
    pytest.param("", id="empty"),
]


@pytest.mark.parametrize("url", BAD_MEDIA_URLS)
def test_validate_media_url_refuses(url):
    with pytest.raises(InvalidInput) as caught:
        validate_media_url(url)
    assert caught.value.details == {"url": [caught.value.details["url"][0]]}


@pytest.mark.parametrize("value", [None, 123, 1.5, True, ["http://example.com/"], {"url": "http://a/"}])
def test_validate_media_url_refuses_non_strings(value):
    with pytest.raises(InvalidInput):
        validate_media_url(value)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/movie.mp4",
        "HTTPS://EXAMPLE.COM/Movie.MP4",
        "http://192.168.1.20:8096/x.mp4",
        "http://10.0.0.5/stream.m3u8",
        "http://127.0.0.1:8080/local.mp4",
        "http://[fd00::1]:8096/x.mp4",
        "http://media.lan/x.mkv?token=a%20b#t=10",
        "https://example.com/" + "a" * (MAX_URL_LENGTH - len("https://example.com/")),  # exactly 2048
    ],
)
def test_validate_media_url_accepts_http_urls_including_lan(url):
    assert validate_media_url(url) == url


def test_validate_media_url_names_the_given_field():
    with pytest.raises(InvalidInput) as caught:
        validate_media_url("javascript:alert(1)", field="subtitles")
    assert "subtitles" in caught.value.details


# --- the API applies the playlist rules ------------------------------------------------------------------


@pytest.fixture
def playlist_room(db):
    user, pair = make_user()
    room = services.room_create(creator=user, name="netguard", origin=TEST_ORIGIN)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {pair.access}")
    actor = services.actor_for_user(user=user, room=room)
    movie = services.movies_add(
        actor=actor,
        room=room,
        items=[{"name": "ok", "url": "https://example.com/ok.mp4"}],
        origin=TEST_ORIGIN,
    )[0]
    return room, client, movie


def _assert_url_refused(response, url: str) -> None:
    assert response.status_code == 400, (url[:80], response.content[:300])
    error = response.json()["error"]
    assert error["code"] == "invalid", url[:80]
    assert "url" in error["details"], (url[:80], error)  # names the field
    assert error["message"].startswith("url"), url[:80]


API_BAD_URLS = [
    *BAD_MEDIA_URLS[:-1],  # "" is covered by the serializer's own "may not be blank"
    pytest.param("https://example.com/" + "a" * 5000, id="5000-chars"),
    pytest.param("http://example.com/\x00.mp4", id="nul"),
]


def _urls(params) -> list[str]:
    return [p.values[0] for p in params]


# One set-up for the whole table (a set-up mints an RSA key and hashes a password).
def test_adding_a_movie_with_a_bad_url_is_refused(playlist_room, no_api_limit):
    room, client, _movie = playlist_room
    for url in _urls(API_BAD_URLS):
        r = client.post(f"/api/v1/rooms/{room.pk}/movies", {"name": "bad", "url": url}, format="json")
        _assert_url_refused(r, url)
    assert Movie.objects.filter(room=room).count() == 1


def test_editing_a_movie_to_a_bad_url_is_refused(playlist_room, no_api_limit):
    room, client, movie = playlist_room
    for url in _urls(API_BAD_URLS):
        r = client.patch(f"/api/v1/rooms/{room.pk}/movies/{movie.pk}", {"url": url}, format="json")
        _assert_url_refused(r, url)
    movie.refresh_from_db()
    assert movie.url == "https://example.com/ok.mp4"


def test_a_bad_url_inside_a_batch_refuses_the_whole_batch(playlist_room):
    room, client, _movie = playlist_room
    body = [
        {"name": "fine", "url": "https://example.com/1.mp4"},
        {"name": "evil", "url": "javascript:alert(1)"},
    ]
    r = client.post(f"/api/v1/rooms/{room.pk}/movies", body, format="json")
    assert r.status_code == 400, r.content
    assert r.json()["error"]["code"] == "invalid"
    assert "url" in str(r.json()["error"]["details"])
    assert Movie.objects.filter(room=room).count() == 1


LAN_URLS = [
    "http://192.168.1.20:8096/x.mp4",
    "http://10.1.2.3/movie.m3u8",
    "https://[fd12:3456::7]/x.mp4",
    "https://example.com/" + "a" * (MAX_URL_LENGTH - len("https://example.com/")),
]


def test_lan_and_maximal_urls_are_accepted_in_playlists(playlist_room):
    room, client, movie = playlist_room
    for url in LAN_URLS:
        r = client.post(f"/api/v1/rooms/{room.pk}/movies", {"name": "lan", "url": url}, format="json")
        assert r.status_code == 201, (url, r.content)
        assert r.json()["url"] == url
        r = client.patch(f"/api/v1/rooms/{room.pk}/movies/{movie.pk}", {"url": url}, format="json")
        assert r.status_code == 200, (url, r.content)
        assert r.json()["url"] == url


# --- check_server_fetch: literals --------------------------------------------------------------------------

REFUSED_LITERALS = [
    pytest.param("http://127.0.0.1/", id="loopback-v4"),
    pytest.param("http://127.9.8.7:8000/x", id="loopback-v4-range"),
    pytest.param("http://[::1]/", id="loopback-v6"),
    pytest.param("http://10.0.0.1/", id="rfc1918-10"),
    pytest.param("http://172.16.0.1/", id="rfc1918-172"),
    pytest.param("http://172.31.255.254/", id="rfc1918-172-top"),
    pytest.param("http://192.168.0.1/", id="rfc1918-192"),
    pytest.param("http://169.254.169.254/latest/meta-data/", id="metadata"),
    pytest.param("http://169.254.1.1/", id="link-local"),
    pytest.param("http://100.64.0.1/", id="cgnat"),
    pytest.param("http://100.100.100.200/", id="alibaba-metadata"),
    pytest.param("http://0.0.0.0/", id="unspecified-v4"),
    pytest.param("http://[::]/", id="unspecified-v6"),
    pytest.param("http://[::ffff:127.0.0.1]/", id="v4-mapped-loopback"),
    pytest.param("http://[::ffff:10.0.0.1]/", id="v4-mapped-private"),
    pytest.param("http://[::ffff:169.254.169.254]/", id="v4-mapped-metadata"),
    # IPv6 forms that carry an IPv4 address inside: 6to4 (2002:AABB:CCDD::), NAT64 (64:ff9b::),
    # IPv4-compatible (::a.b.c.d) and Teredo (its client address, bit-inverted).
    pytest.param("http://[2002:7f00:1::]/", id="6to4-loopback"),
    pytest.param("http://[2002:7f00:1:1234::abcd]/", id="6to4-loopback-any-suffix"),
    pytest.param("http://[2002:a9fe:a9fe::]/", id="6to4-metadata"),
    pytest.param("http://[2002:a00:1::]/", id="6to4-private"),
    pytest.param("http://[2002:6464:64c8::]/", id="6to4-alibaba-metadata"),
    pytest.param("http://[64:ff9b::7f00:1]/", id="nat64-loopback"),
    pytest.param("http://[64:ff9b::a9fe:a9fe]/", id="nat64-metadata"),
    pytest.param("http://[::127.0.0.1]/", id="v4-compatible-loopback"),
    pytest.param("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", id="teredo-loopback"),
    pytest.param("http://[fe80::1]/", id="link-local-v6"),
    pytest.param("http://[fc00::1]/", id="unique-local-v6"),
    pytest.param("http://[fd00:ec2::254]/", id="aws-metadata-v6"),
    pytest.param("http://224.0.0.1/", id="multicast"),
    pytest.param("http://240.0.0.1/", id="reserved"),
    pytest.param("http://255.255.255.255/", id="broadcast"),
    pytest.param("http://198.18.0.1/", id="benchmark"),
    pytest.param("http://192.0.2.1/", id="documentation"),
]


@pytest.mark.parametrize("url", REFUSED_LITERALS)
def test_server_fetch_refuses_non_public_literals(settings, url):
    settings.FETCH_ALLOW_PRIVATE_NETWORKS = False
    _refused(url, resolver=numeric_only)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://127.0.0.1/", id="loopback"),
        pytest.param("http://[::1]/", id="loopback-v6"),
        pytest.param("http://10.0.0.1/", id="private"),
        pytest.param("http://169.254.169.254/", id="metadata"),
        pytest.param("http://[::ffff:127.0.0.1]/", id="v4-mapped"),
        pytest.param("http://0.0.0.0/", id="unspecified"),
    ],
)
def test_server_fetch_refuses_literals_with_the_default_resolver(settings, url):
    """The production resolver (getaddrinfo) answers IP literals without asking DNS."""
    settings.FETCH_ALLOW_PRIVATE_NETWORKS = False
    _refused(url)


@pytest.mark.parametrize(
    "host",
    [
        pytest.param("2130706433", id="decimal"),
        pytest.param("0x7f000001", id="hex"),
        pytest.param("0177.0.0.1", id="octal"),
        pytest.param("127.1", id="short"),
    ],
)
def test_server_fetch_refuses_odd_spellings_of_loopback(settings, host):
    """inet_aton spellings of 127.0.0.1: whatever the string looks like, the resolved address
    is what is checked."""
    settings.FETCH_ALLOW_PRIVATE_NETWORKS = False
    try:
        numeric_only(host, 80, type=socket.SOCK_STREAM)
    except socket.gaierror:
        pytest.skip(f"this libc does not read {host!r} as an IPv4 literal")
    err = _refused(f"http://{host}/", resolver=numeric_only)
    assert "loopback" in err.message


def test_server_fetch_refuses_the_real_localhost(settings):
    settings.FETCH_ALLOW_PRIVATE_NETWORKS = False
    err = _refused("http://localhost:8000/admin/")
    assert "loopback" in err.message


# --- check_server_fetch: names ------------------------------------------------------------------------------


def test_server_fetch_refuses_a_name_resolving_to_loopback(settings):
    settings.FETCH_ALLOW_PRIVATE_NETWORKS = False
    resolver = FakeResolver("127.0.0.1")
    err = _refused("https://innocent.example/movie.mp4", resolver=resolver)
    assert resolver.calls == [("innocent.example", 443)]
    assert "loopback" in err.message


@pytest.mark.parametrize(
    "addresses",
    [
        pytest.param((PUBLIC_V4, "10.0.0.1"), id="public-then-private"),
        pytest.param(("192.168.1.1", PUBLIC_V4), id="private-then-public"),
        pytest.param((PUBLIC_V4, "2606:2800:220:1:248:1893:25c8:1946", "::1"), id="v6-loopback-last"),
        pytest.param((PUBLIC_V4, "169.254.169.254"), id="metadata-among-public"),
        pytest.param(("::ffff:127.0.0.1",), id="v4-mapped-loopback"),
        pytest.param(("fe80::1%eth0",), id="scoped-link-local"),
    ],
)
def test_server_fetch_refuses_when_any_resolved_address_is_not_public(settings, addresses):
    settings.FETCH_ALLOW_PRIVATE_NETWORKS = False
    _refused("http://rebind.example:8080/x", resolver=FakeResolver(*addresses))


def test_server_fetch_accepts_a_public_address_and_returns_it(settings):
    settings.FETCH_ALLOW_PRIVATE_NETWORKS = False
    resolver = FakeResolver(PUBLIC_V4)
    assert check_server_fetch("http://example.com/movie.mp4", resolver=resolver) == [PUBLIC_V4]
    assert resolver.calls == [("example.com", 80)]


def test_server_fetch_returns_every_public_address(settings):
    """The fetcher connects to one of these: it must not resolve the name again (rebinding)."""
    settings.FETCH_ALLOW_PRIVATE_NETWORKS = False
    v6 = "2606:2800:220:1:248:1893:25c8:1946"
    resolver = FakeResolver(PUBLIC_V4, v6)
    assert check_server_fetch("https://example.com:8443/x", resolver=resolver) == [PUBLIC_V4, v6]
    assert resolver.calls == [("example.com", 8443)]


def test_server_fetch_refuses_unresolvable_and_empty_answers(settings):
    settings.FETCH_ALLOW_PRIVATE_NETWORKS = False
    _refused("http://nowhere.invalid/", resolver=failing_resolver)
    _refused("http://empty.example/", resolver=FakeResolver())


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "gopher://127.0.0.1:6379/_FLUSHALL", "ftp://example.com/", "http://"]
)
def test_server_fetch_applies_the_media_url_rules_first(url):
    resolver = FakeResolver(PUBLIC_V4)
    with pytest.raises(InvalidInput):
        check_server_fetch(url, resolver=resolver)
    assert resolver.calls == []


# --- the operator's switch ------------------------------------------------------------------------------------

PRIVATE_ALLOWED = ["127.0.0.1", "10.0.0.1", "192.168.0.1", "172.16.0.1", "::1", "100.64.0.1"]
METADATA = [
    "169.254.169.254",
    "::ffff:169.254.169.254",
    "fd00:ec2::254",
    "100.100.100.200",
    "2002:a9fe:a9fe::",  # 6to4 form of 169.254.169.254
    "2002:6464:64c8::1",  # 6to4 form of 100.100.100.200
    "64:ff9b::a9fe:a9fe",  # NAT64 form of 169.254.169.254
]


@pytest.mark.parametrize("address", PRIVATE_ALLOWED)
def test_allow_private_lets_private_targets_through(settings, address):
    settings.FETCH_ALLOW_PRIVATE_NETWORKS = False
    url = "http://media.lan:8096/x.mp4"
    assert check_server_fetch(url, allow_private=True, resolver=FakeResolver(address)) == [address]
    # The setting does the same when the caller does not say.
    settings.FETCH_ALLOW_PRIVATE_NETWORKS = True
    assert check_server_fetch(url, resolver=FakeResolver(address)) == [address]
    # And an explicit refusal beats the setting.
    _refused(url, allow_private=False, resolver=FakeResolver(address))


@pytest.mark.parametrize("address", METADATA)
def test_metadata_addresses_are_refused_even_when_private_targets_are_allowed(settings, address):
    settings.FETCH_ALLOW_PRIVATE_NETWORKS = True
    err = _refused("http://metadata.example/", resolver=FakeResolver(address))
    assert "metadata" in err.message
    err = _refused("http://metadata.example/", allow_private=True, resolver=FakeResolver(PUBLIC_V4, address))
    assert "metadata" in err.message


def test_a_6to4_address_of_a_public_host_is_accepted(settings):
    """6to4 itself is not the problem: only what it wraps is judged (8.8.8.8 here)."""
    settings.FETCH_ALLOW_PRIVATE_NETWORKS = False
    assert check_server_fetch("http://[2002:808:808::1]/", resolver=numeric_only) == ["2002:808:808::1"]


def test_a_wrapped_address_is_named_in_the_refusal(settings):
    settings.FETCH_ALLOW_PRIVATE_NETWORKS = False
    err = _refused("http://[2002:7f00:1::]/", resolver=numeric_only)
    assert "loopback" in err.message and "127.0.0.1" in err.message


def test_allow_private_literal_metadata_is_still_refused(settings):
    settings.FETCH_ALLOW_PRIVATE_NETWORKS = True
    _refused("http://169.254.169.254/latest/meta-data/iam/", resolver=numeric_only)
    assert check_server_fetch("http://10.0.0.1/", resolver=numeric_only) == ["10.0.0.1"]


def test_a_host_and_port_are_checked_as_a_url_would_be(settings):
    """check_server_host: the same rules for what is not an http(s) URL (an RTMP source)."""
    settings.FETCH_ALLOW_PRIVATE_NETWORKS = False
    assert check_server_host("2002:808:808::1", 1935, resolver=numeric_only) == ["2002:808:808::1"]
    for host in ("127.0.0.1", "169.254.169.254", ""):
        with pytest.raises(UnsafeURL):
            check_server_host(host, 1935, resolver=numeric_only)
    assert check_server_host("10.0.0.1", 1935, allow_private=True, resolver=numeric_only) == ["10.0.0.1"]
