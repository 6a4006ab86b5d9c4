"""ASGI entry point: the `ws` process (uvicorn) serves WebSockets under /ws/.

It answers HTTP too, so the embedded default runs everything from one process. In DEBUG the
static files are served here as well (runserver would do it; uvicorn does not).
"""

import os
from urllib.parse import urlparse

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "synctv.settings")

# Django must be set up before anything imports models (consumers, routing).
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import OriginValidator, WebsocketDenier  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from apps.rooms.lifecycle import Lifespan  # noqa: E402
from synctv.routing import websocket_urlpatterns  # noqa: E402

http_app = ASGIStaticFilesHandler(django_asgi_app) if settings.DEBUG else django_asgi_app


class StrictOriginValidator(OriginValidator):
    """channels' check, but a malformed Origin (a port that is not a number or out of range, a
    broken IPv6 literal) is refused with 403 like any other foreign origin; channels raises
    ValueError on those, which uvicorn turns into a 500 and a logged traceback."""

    async def __call__(self, scope, receive, send):
        for name, value in scope.get("headers") or ():
            if name == b"origin":
                try:
                    urlparse(value.decode("latin-1")).port  # noqa: B018 - raises on a bad port
                except ValueError:
                    return await WebsocketDenier()(scope, receive, send)
        return await super().__call__(scope, receive, send)


application = Lifespan(
    ProtocolTypeRouter(
        {
            "http": http_app,
            "websocket": StrictOriginValidator(
                URLRouter(websocket_urlpatterns), settings.CORS_ALLOWED_ORIGINS
            ),
        }
    )
)
