"""Settings of the bare-floor project (see floor/__init__.py). Env: DATABASE_URL, FLOOR_PUBLIC_KEY_FILE."""

from pathlib import Path

import environ

env = environ.Env()

SECRET_KEY = "bench-floor-only-not-a-secret-0123456789-0123456789-0123456789"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "rest_framework",
    "floor",
]
# Bare: nothing between the WSGI handler and the DRF view.
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "floor.urls"
WSGI_APPLICATION = "floor.wsgi.application"
DATABASES = {"default": env.db_url_config(env.str("DATABASE_URL"))}
DATABASES["default"]["CONN_MAX_AGE"] = 60  # persistent connections, as the `web` process has
AUTH_USER_MODEL = "floor.User"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework_simplejwt.authentication.JWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": None,
}
SIMPLE_JWT = {
    "ALGORITHM": "RS256",
    "SIGNING_KEY": "",  # the floor only verifies
    "VERIFYING_KEY": Path(env.str("FLOOR_PUBLIC_KEY_FILE")).read_text(),
    "ISSUER": "synctv",
    "LEEWAY": 5,
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "sub",
    "TOKEN_TYPE_CLAIM": "token_type",
    "JTI_CLAIM": "jti",
    "AUTH_HEADER_TYPES": ("Bearer",),
    "UPDATE_LAST_LOGIN": False,
}
