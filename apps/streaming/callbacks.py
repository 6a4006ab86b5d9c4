"""The RTMP server's callbacks: ``POST /internal/rtmp/{on_publish,on_publish_done,on_update,on_play}``
(docs/streaming.md, "Callbacks"). nginx-rtmp sends a form (``call``, ``name``, ``addr``,
``clientid``, ``app``, ``tcurl``... then the client URL's own query arguments) and reads only the
status: 2xx allows, anything else refuses (on_update: drops the publisher).

Accepted only from the RTMP server: ``?secret=RTMP_CALLBACK_SECRET`` (compared in constant time;
nginx-rtmp cannot add headers) and a peer address in RTMP_CALLBACK_NETWORKS (the connection's own
address: the RTMP server calls Django directly, so a forwarded-for header means nothing here).
Anything else, and any field missing or malformed, is a 403 with nothing changed, never a 500.

The stream's key arrives as ``name``. It is never logged or echoed: the answer to on_publish is
a redirect whose ``Location`` is the stream's opaque id, which nginx-rtmp takes as the stream's
new name (its notify module renames a publish on a 3xx whose location is not rtmp://), so HLS
files and playback URLs carry the id, never the key. nginx-rtmp keeps the name a publisher
connected with for on_update and on_publish_done: those callbacks carry the key again.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.views.decorators.csrf import csrf_exempt

from apps.streaming import keys, services

logger = logging.getLogger(__name__)

# What nginx-rtmp sends as ``call`` to each callback (on_update: update_publish while publishing).
CALLS = {
    "on_publish": ("publish",),
    "on_publish_done": ("publish_done",),
    "on_update": ("update_publish",),
    "on_play": ("play",),
}
_CLIENT_ID_MAX = 20


def _refused() -> HttpResponse:
    return HttpResponse(status=403, content=b"refused\n", content_type="text/plain")


def _allowed() -> HttpResponse:
    return HttpResponse(status=200, content=b"ok\n", content_type="text/plain")


def _from_rtmp_server(request: HttpRequest) -> bool:
    secret = request.GET.get("secret", "")
    expected = settings.RTMP_CALLBACK_SECRET
    if not expected or not hmac.compare_digest(secret.encode(), expected.encode()):
        return False
    try:
        peer = ipaddress.ip_address(request.META.get("REMOTE_ADDR", "").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
        peer = peer.ipv4_mapped
    return any(peer in ipaddress.ip_network(n.strip(), strict=False) for n in settings.RTMP_CALLBACK_NETWORKS)


def _first(request: HttpRequest, field: str) -> str | None:
    """The field's first value: nginx-rtmp writes its own fields before the client URL's query
    arguments, so a streamer's ``?name=...`` cannot stand in for the real one."""
    values = request.POST.getlist(field)
    value = values[0] if values else None
    if value is None or "\x00" in value:
        return None
    return value


def _publisher(request: HttpRequest, callback: str) -> services.Publisher | None:
    """The publishing connection the form describes, or None when it is not a well-formed
    callback of this kind from nginx-rtmp."""
    call, key, client = _first(request, "call"), _first(request, "name"), _first(request, "clientid")
    if call not in CALLS[callback] or client is None or not client.isdigit() or len(client) > _CLIENT_ID_MAX:
        return None
    addr = (_first(request, "addr") or "")[:64]
    if keys.looks_like_key(key):
        assert key is not None
        return services.Publisher(key=key, client=client, addr=addr, node=settings.SYNCTV_NODE_ID)
    if keys.looks_like_relay_name(key):
        assert key is not None
        # A node's own relay (apps.streaming.relay): signed name, from the RTMP server's machine.
        relay = keys.open_relay_name(key, check_expiry=callback == "on_publish")
        if relay is None or not _is_loopback(addr):
            logger.warning("rtmp %s refused: a relay name that is not valid here", callback)
            return None
        return services.Publisher(key=key, client=client, addr=addr, node=relay.node, relay=relay)
    return None


def _is_loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


def _callback(name: str, handle: Callable[[services.Publisher], HttpResponse]) -> Callable[..., HttpResponse]:
    @csrf_exempt
    def view(request: HttpRequest) -> HttpResponse:
        if request.method != "POST" or not _from_rtmp_server(request):
            logger.warning("rtmp %s refused: not a callback from the RTMP server", name)
            return _refused()
        try:
            if name == "on_update" and _first(request, "call") == "update_play":
                # nginx-rtmp sends on_update for play sessions too. The only players of `live` are
                # on this machine (nginx: allow play 127.0.0.1), among them the push that feeds
                # HLS; refusing it dropped that push and stalled every viewer every 10 s.
                return _allowed()
            publisher = _publisher(request, name)
        except MultiPartParserError:
            publisher = None
        if publisher is None:
            return _refused()
        try:
            return handle(publisher)
        except services.PublishRefused as refusal:
            logger.info("rtmp %s refused: %s", name, refusal.reason)
            return _refused()

    view.__name__ = name
    return view


def _on_publish(publisher: services.Publisher) -> HttpResponse:
    stream = services.publish_start(publisher=publisher)
    logger.info("rtmp publish of stream %s started on %s", stream.pk, publisher.node)
    response = HttpResponse(status=302, content=b"", content_type="text/plain")
    response["Location"] = stream.pk  # the new stream name: the opaque id, never the key
    return response


def _on_update(publisher: services.Publisher) -> HttpResponse:
    services.publish_update(publisher=publisher)
    return _allowed()


def _on_publish_done(publisher: services.Publisher) -> HttpResponse:
    services.publish_done(publisher=publisher)
    return _allowed()  # nginx-rtmp ignores the answer: the publisher is gone either way


on_publish = _callback("on_publish", _on_publish)
on_update = _callback("on_update", _on_update)
on_publish_done = _callback("on_publish_done", _on_publish_done)


@csrf_exempt
def on_play(request: HttpRequest) -> HttpResponse:
    """RTMP playback is refused to everyone: viewers watch HLS through signed URLs that only
    members and guests who may view get (apps.streaming.hls); an RTMP player would skip that."""
    return _refused()
