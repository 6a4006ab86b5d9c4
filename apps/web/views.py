"""The web page (templates/web/, static/): thin views that render a page shell.

Everything a page shows comes from the REST API and the room WebSocket, called by the page's
JavaScript with the caller's bearer token (kept in localStorage). The server renders no user
data here, so these views need no authentication; the API decides what each caller may see.
Nothing is passed to scripts inline (the Content-Security-Policy forbids inline scripts):
settings a script needs travel in ``data-`` attributes of ``<body>``.
"""

from __future__ import annotations

import re

from django.conf import settings
from django.http import Http404
from django.shortcuts import render
from django.views.decorators.http import require_safe

ROOM_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}\Z")
PROVIDER_ID = re.compile(r"^[a-z0-9_-]{1,32}\Z")


def _page(request, template: str, page: str, **context):
    context.update(page=page, ws_public_url=settings.WS_PUBLIC_URL)
    return render(request, template, context)


@require_safe
def home(request):
    return _page(request, "web/home.html", "home")


@require_safe
def login(request):
    return _page(request, "web/login.html", "login")


@require_safe
def signup(request):
    return _page(request, "web/signup.html", "signup")


@require_safe
def forgot_password(request):
    return _page(request, "web/forgot_password.html", "forgot-password")


@require_safe
def reset_password(request):
    # The key stays in the URL, read by the page's script: the server renders nothing of it.
    return _page(request, "web/reset_password.html", "reset-password")


@require_safe
def verify_email(request):
    return _page(request, "web/verify_email.html", "verify-email")


@require_safe
def oauth_callback(request, provider: str):
    if not PROVIDER_ID.match(provider):
        raise Http404
    return _page(request, "web/oauth_callback.html", "oauth-callback", provider=provider)


@require_safe
def room(request, room_id: str):
    # Ids are opaque URL-safe strings; anything else cannot be a room. Whether the room exists
    # (and may be seen) is the API's answer, which the page shows.
    if not ROOM_ID.match(room_id):
        raise Http404
    return _page(request, "web/room.html", "room", room_id=room_id)
