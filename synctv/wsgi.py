"""WSGI entry point: the `web` process (gunicorn) serves REST, admin and pages."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "synctv.settings")

application = get_wsgi_application()
