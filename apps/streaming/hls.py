"""Signed HLS URLs: live HLS reaches members only (docs/streaming.md).

The `rtmp` process serves HLS at ``/hls/<signature>/<expires>/<stream id>/<file>`` and nginx's
``secure_link`` checks every request (deploy/rtmp/nginx.conf.template): the signature is the
base64url MD5 of ``"<expires>/<stream id> <HLS_SIGNING_SECRET>"``. It covers the stream and the
expiry, not the file, and sits in the path, so the segment URLs the playlist names relatively
(``3.ts``) inherit it: a player needs no extra header or query. MD5 because it is what Debian's
nginx can check (``secure_link_hmac`` is not packaged); the secret comes last, so the signature
cannot be extended, and a URL works at most HLS_URL_TTL (≤ 10 minutes).
"""

from __future__ import annotations

import base64
import hashlib
import time

from django.conf import settings

from apps.streaming.ingest import HasId, stream_name

PLAYLIST = "index.m3u8"


def signature(name: str, expires: int, secret: str | None = None) -> str:
    """What nginx's ``secure_link_md5 "$secure_link_expires/$hls_stream <secret>"`` computes."""
    secret = settings.HLS_SIGNING_SECRET if secret is None else secret
    digest = hashlib.md5(f"{expires}/{name} {secret}".encode(), usedforsecurity=False).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def signed_playlist_url(stream: HasId, viewer: object, *, now: float | None = None) -> str:
    """The stream's HLS playlist for ``viewer``, valid HLS_URL_TTL seconds.

    The caller has already decided that ``viewer`` may watch (`room_access`); nginx cannot tell
    viewers apart, so the URL is a bearer capability that the short expiry bounds. A player
    renews it by reading the stream again (GET rooms/{id}/streams/{stream_id}).
    """
    del viewer  # part of the contract (docs/api.md: playback_url); nothing in the URL depends on it
    name = stream_name(stream)
    expires = int(time.time() if now is None else now) + settings.HLS_URL_TTL
    return f"{settings.HLS_PUBLIC_URL}/hls/{signature(name, expires)}/{expires}/{name}/{PLAYLIST}"
