"""ASGI entry point: the `ws` process (uvicorn) serves WebSockets under /ws/.

It answers HTTP too, so the embedded default runs everything from one process. In DEBUG the
static files are served here as well (runserver would do it; uvicorn does not).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "synctv.settings")

# Django must be set up before anything imports models (consumers, routing).
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import OriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from apps.rooms.lifecycle import Lifespan  # noqa: E402
from synctv.routing import websocket_urlpatterns  # noqa: E402

http_app = ASGIStaticFilesHandler(django_asgi_app) if settings.DEBUG else django_asgi_app

application = Lifespan(
    ProtocolTypeRouter(
        {
            "http": http_app,
            "websocket": OriginValidator(URLRouter(websocket_urlpatterns), settings.CORS_ALLOWED_ORIGINS),
        }
    )
)
