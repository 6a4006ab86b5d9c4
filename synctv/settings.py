"""SyncTV settings: one module, read from the environment.

Nothing set = the embedded default (SQLite, in-memory layers, eager Celery, secrets generated
once under ``var/``). ``SYNCTV_ENV=production`` turns DEBUG off and refuses to start without
its secrets. ``.env.example`` lists every variable.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import secrets
import socket
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

SYNCTV_ENV = env.str("SYNCTV_ENV", default="development")
if SYNCTV_ENV not in ("development", "production"):
    raise ImproperlyConfigured("SYNCTV_ENV must be 'development' or 'production'")
PRODUCTION = SYNCTV_ENV == "production"

VAR_DIR = Path(env.str("SYNCTV_VAR_DIR", default="") or BASE_DIR / "var")
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _embedded_secret(name: str, make) -> str:
    """A secret generated once under var/ for the embedded default; production must set it."""
    path = VAR_DIR / name
    if not path.exists():
        # O_EXCL: two processes starting together must not end up with different secrets.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(make())
    return path.read_text().strip()


def _required(name: str, **kwargs) -> str:
    value = env.str(name, default="", **kwargs)
    if not value:
        raise ImproperlyConfigured(f"{name} must be set when SYNCTV_ENV=production")
    return value


def _origin(url: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL as a browser writes it in ``Origin`` (the
    scheme's default port left out); None for anything else."""
    parts = urlsplit(url.strip())
    try:
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default_port = 443 if parts.scheme == "https" else 80
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default_port else "")


if PRODUCTION:
    SECRET_KEY = _required("DJANGO_SECRET_KEY")
    ENCRYPTION_KEY = _required("SYNCTV_ENCRYPTION_KEY")
    DATABASE_URL = _required("DATABASE_URL")
    REDIS_URL = _required("REDIS_URL")
else:
    SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="") or _embedded_secret(
        "secret_key", lambda: secrets.token_urlsafe(50)
    )
    ENCRYPTION_KEY = env.str("SYNCTV_ENCRYPTION_KEY", default="") or _embedded_secret(
        "encryption_key", lambda: base64.b64encode(secrets.token_bytes(32)).decode()
    )
    DATABASE_URL = env.str("DATABASE_URL", default="")
    REDIS_URL = env.str("REDIS_URL", default="")

DEBUG = env.bool("DJANGO_DEBUG", default=not PRODUCTION)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])
PORT = env.int("PORT", default=8000)
SYNCTV_NODE_ID = env.str("SYNCTV_NODE_ID", default="") or f"{socket.gethostname()}:{PORT}"
PUBLIC_URL = env.str("PUBLIC_URL", default=f"http://localhost:{PORT}")
WS_PUBLIC_URL = env.str("WS_PUBLIC_URL", default="")
# Threads for the WebSocket consumers' database calls (apps/rooms/consumers.py: db_threads).
# 0 = automatic: 1 on SQLite (concurrent writers lock it), 4 on PostgreSQL; never more than
# the psycopg pool minus one (DB_POOL_MAX_SIZE) when a pool is configured.
WS_DB_THREADS = env.int("WS_DB_THREADS", default=0)
# How many reconnects a second the nodes that stay should get when a `ws` node stops: its
# server_shutdown spreads its sockets' reconnects over sockets / this (apps/rooms/lifecycle.py).
WS_RECONNECTS_PER_SECOND = env.float("WS_RECONNECTS_PER_SECOND", default=250.0)
# How long a stopping `ws` node keeps its sockets open while their clients move to another node
# (apps/rooms/lifecycle.py); 0 closes them at once. The process manager's stop timeout must allow
# this plus uvicorn's --timeout-graceful-shutdown (docs/operations.md).
WS_DRAIN_SECONDS = env.float("WS_DRAIN_SECONDS", default=20.0)
# Every this many seconds a `ws` node compares its socket count with the other nodes' and, when it
# holds more than its share, asks some sockets to move (apps/rooms/balance.py); 0 turns it off.
WS_BALANCE_SECONDS = env.float("WS_BALANCE_SECONDS", default=5.0)
# At most this many sockets a second are asked to move when rebalancing.
WS_REBALANCE_PER_SECOND = env.float("WS_REBALANCE_PER_SECOND", default=50.0)
# Connects a `ws` process works on at once; more wait their turn (apps/rooms/consumers.py).
WS_CONNECTS_IN_FLIGHT = env.int("WS_CONNECTS_IN_FLIGHT", default=8)
# The `ws` process's cyclic garbage collector thresholds (gc.set_threshold), set at startup
# (apps/rooms/lifecycle.py); empty keeps Python's (700, 10, 10).
WS_GC_THRESHOLD = tuple(int(n) for n in env.list("WS_GC_THRESHOLD", default=["10000", "20", "20"]) if n)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served as static files
    "corsheaders",
    "channels",
    "auditlog",
    # E-mail addresses, verification and password reset keys, OAuth2 providers: allauth's
    # account and socialaccount internals, behind our own API (docs/accounts.md).
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.discord",
    "allauth.socialaccount.providers.github",
    "allauth.socialaccount.providers.gitlab",
    "allauth.socialaccount.providers.google",
    "allauth.socialaccount.providers.microsoft",
    "allauth.socialaccount.providers.openid_connect",
    "apps.core",
    "apps.accounts",
    "apps.audit",
    "apps.mail",
    "apps.permissions",
    "apps.rooms",
    "apps.streaming",
    "apps.web",
]

# Session, cookie login and messages are only for browser requests (pages, the admin): the JSON
# API authenticates bearer tokens in DRF and skips them (apps/core/middleware.py).
MIDDLEWARE = [
    "apps.core.requestlog.RequestLogMiddleware",  # X-Request-ID, the request's log line and metrics
    # Outermost but for the two around it: a request is tried again from here after a
    # transient database failure, and a database outage answers 503 (apps/core/dbfaults.py).
    "django.middleware.security.SecurityMiddleware",
    "apps.core.dbfaults.DatabaseFaultMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "apps.core.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "apps.core.middleware.AuthenticationMiddleware",
    "apps.core.middleware.MessageMiddleware",
    "allauth.account.middleware.AccountMiddleware",  # the request context allauth's internals read
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "apps.web.middleware.ContentSecurityPolicyMiddleware",
    "apps.core.middleware.CurrentRequestMiddleware",  # who/where for django-auditlog entries
]

ROOT_URLCONF = "synctv.urls"
WSGI_APPLICATION = "synctv.wsgi.application"
ASGI_APPLICATION = "synctv.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
if DATABASE_URL:
    DATABASES = {"default": env.db_url_config(DATABASE_URL)}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # Django's PostgreSQL backend with a health check that polls the socket instead of
        # sending `SELECT 1` when it can (apps/core/postgresql/base.py).
        DATABASES["default"]["ENGINE"] = "apps.core.postgresql"
        # A database that does not answer fails a connect in seconds, not the OS's minutes; the
        # breaker (apps/core/dbfaults.py) then stops trying until it may be back.
        DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
            "connect_timeout", env.int("DB_CONNECT_TIMEOUT", default=3)
        )
        pool_size = env.int("DB_POOL_MAX_SIZE", default=0)
        if pool_size > 0:
            # The ASGI `ws` process: Django runs sync code there on changing threads, and
            # persistent per-thread connections pile up until PostgreSQL refuses clients
            # (measured: 95 connections from 50 clients). A small psycopg pool bounds them.
            DATABASES["default"]["CONN_MAX_AGE"] = 0
            # While the database is down a caller waits for a connection no longer than a
            # connect may take, and the pool gives up a failed reconnect after a second instead
            # of backing off for minutes: the next caller the breaker lets through tries again
            # at once, so service resumes as soon as the database is back (apps/core/dbfaults.py).
            DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
                "min_size": 1,
                "max_size": pool_size,
                "timeout": env.int("DB_CONNECT_TIMEOUT", default=3),
                "reconnect_timeout": 1.0,
            }
        else:
            # Persistent connections: each WSGI worker keeps one, so no request pays for a new one.
            DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
            DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "synctv.sqlite3",
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The database breaker (apps/core/dbfaults.py, docs/security.md): open after this many lost
# connections in a row, refusing at once (503 service_degraded) for this long, then one try.
DB_BREAKER_FAILURES = env.int("DB_BREAKER_FAILURES", default=3)
DB_BREAKER_RESET_SECONDS = env.float("DB_BREAKER_RESET_SECONDS", default=2.0)

# --- Cache, channel layer, Celery ---------------------------------------------------------------
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                "SOCKET_CONNECT_TIMEOUT": 1,
                "SOCKET_TIMEOUT": 1,
            },
            "KEY_PREFIX": "synctv",
        },
        "local": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "local"},
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        # Per-process fallback for what normally lives in Redis (docs/security.md, "When Redis is down").
        "local": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "local"},
    }
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BROKER_URL = CELERY_BROKER_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "purge-expired-auth-sessions": {
        "task": "apps.accounts.tasks.purge_expired_sessions",
        "schedule": timedelta(hours=1),
    },
    # Outgoing mail (apps/mail/tasks.py): hand lost messages to a worker again; drop old rows.
    "resend-stalled-email": {"task": "apps.mail.tasks.resend_stalled", "schedule": timedelta(minutes=5)},
    "purge-old-email": {"task": "apps.mail.tasks.purge_old_emails", "schedule": timedelta(hours=24)},
    # Live streams (apps/streaming/failover.py): replace failed publishers. A run not picked up
    # within a second is dropped: the next one does the same work.
    "stream-failover-sweep": {
        "task": "apps.streaming.tasks.failover_sweep",
        "schedule": timedelta(seconds=1),
        "options": {"expires": 1},
    },
}

# --- Auth and passwords -------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
# Password logins outside the API (the admin) go through the accounts login service: the same
# rate limits and audit events as auth/login (apps/accounts/backends.py).
AUTHENTICATION_BACKENDS = ["apps.accounts.backends.StaffLoginBackend"]
PASSWORD_HASHERS = [
    "apps.accounts.hashers.Argon2idHasher",
    # Older hashes still verify and are upgraded to Argon2id on the next successful login.
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "apps.accounts.validators.PasswordPolicyValidator"},
]
ACCOUNT_REVIEW_REQUIRED = env.bool("ACCOUNT_REVIEW_REQUIRED", default=False)

# JWT (docs/security.md, "Who is asking"). Keys live in the database key store; these files seed it.
JWT_ISSUER = env.str("JWT_ISSUER", default="synctv")
JWT_PRIVATE_KEY_FILE = env.str("JWT_PRIVATE_KEY_FILE", default="")
JWT_PUBLIC_KEY_FILE = env.str("JWT_PUBLIC_KEY_FILE", default="")
JWT_ACCESS_LIFETIME = timedelta(seconds=env.int("JWT_ACCESS_LIFETIME_SECONDS", default=3600))
JWT_REFRESH_LIFETIME = timedelta(seconds=env.int("JWT_REFRESH_LIFETIME_SECONDS", default=30 * 24 * 3600))
GUEST_TOKEN_LIFETIME = timedelta(seconds=env.int("GUEST_TOKEN_LIFETIME_SECONDS", default=4 * 3600))
# Allowed clock difference between nodes when checking exp/iat.
JWT_LEEWAY_SECONDS = env.int("JWT_LEEWAY_SECONDS", default=5)
# How long a node trusts its in-process copy of the key set before re-reading it.
JWT_KEYSET_REFRESH_SECONDS = env.int("JWT_KEYSET_REFRESH_SECONDS", default=60)
JWT_RSA_KEY_BITS = 2048

SIMPLE_JWT = {
    "ALGORITHM": "RS256",
    "ACCESS_TOKEN_LIFETIME": JWT_ACCESS_LIFETIME,
    "REFRESH_TOKEN_LIFETIME": JWT_REFRESH_LIFETIME,
    "ISSUER": JWT_ISSUER,
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "sub",
    "TOKEN_TYPE_CLAIM": "token_type",
    "JTI_CLAIM": "jti",
    "LEEWAY": JWT_LEEWAY_SECONDS,
    "AUTH_HEADER_TYPES": ("Bearer",),
    "UPDATE_LAST_LOGIN": False,
    # simplejwt insists on a signing key at import; the real keys come from the key store.
    "SIGNING_KEY": None,
}

# --- Rate limits (docs/security.md, "Limits"). Sized from the Argon2id cost: ~24 ms a hash on one core.
RATELIMIT_ENABLE = env.bool("RATELIMIT_ENABLE", default=True)
RATELIMIT_USE_CACHE = "default"
RATELIMITS = {
    # Every API request, per client IP.
    "api": "100/m",
    # Login attempts per IP: 20 a minute is 0.5 s of hashing, ~1% of a core.
    "login_ip": env.str("RATELIMIT_LOGIN_IP", default="20/m"),
    # Failed logins per username: stops guessing one account from many addresses.
    "login_user": env.str("RATELIMIT_LOGIN_USER", default="10/15m"),
    "register_ip": env.str("RATELIMIT_REGISTER_IP", default="10/h"),
    "refresh_ip": env.str("RATELIMIT_REFRESH_IP", default="60/m"),
    "password_change_user": env.str("RATELIMIT_PASSWORD_CHANGE_USER", default="10/h"),
    # Reset requests and verification resends send mail: per IP, and per address (counted for
    # every address asked, known or not, so a refusal tells nothing) or per account (the resend
    # of the caller's own address).
    # Refused RTMP publishes audited per streamer address (the refusals themselves are not limited).
    "rtmp_refused_ip": env.str("RATELIMIT_RTMP_REFUSED_IP", default="30/m"),
    "password_reset_ip": env.str("RATELIMIT_PASSWORD_RESET_IP", default="10/h"),
    "password_reset_email": env.str("RATELIMIT_PASSWORD_RESET_EMAIL", default="3/h"),
    "email_resend_ip": env.str("RATELIMIT_EMAIL_RESEND_IP", default="10/h"),
    "email_resend_user": env.str("RATELIMIT_EMAIL_RESEND_USER", default="3/h"),
    # The resend without a login ({email}): per address, keyed as the reset's is.
    "email_resend_email": env.str("RATELIMIT_EMAIL_RESEND_EMAIL", default="3/h"),
    # Keys posted from the links (verify, reset confirm), per IP: a reset confirm hashes a password.
    "email_key_ip": env.str("RATELIMIT_EMAIL_KEY_IP", default="30/m"),
    # Room passwords: attempts per IP, and wrong ones per user and room.
    "room_password_ip": env.str("RATELIMIT_ROOM_PASSWORD_IP", default="30/m"),
    "room_password_user": env.str("RATELIMIT_ROOM_PASSWORD_USER", default="10/15m"),
    "guest_ip": env.str("RATELIMIT_GUEST_IP", default="20/h"),
    # OAuth2 start and callback, per IP: each is a round trip to a provider, not a hash.
    "oauth_ip": env.str("RATELIMIT_OAUTH_IP", default="30/m"),
}
# Number of trusted reverse proxies in front of the app (for X-Forwarded-For).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)

# --- REST framework ------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["apps.accounts.authentication.BearerAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["apps.accounts.permissions.IsRegisteredUser"],
    "DEFAULT_THROTTLE_CLASSES": ["apps.core.ratelimit.ApiRateThrottle"],
    "DEFAULT_PARSER_CLASSES": ["apps.core.parsers.SafeJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "apps.core.errors.api_exception_handler",
    # drf-spectacular's, plus the errors every operation can answer (apps/core/openapi.py).
    "DEFAULT_SCHEMA_CLASS": "apps.core.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "SyncTV API",
    "DESCRIPTION": "Watch together: rooms, playlists, synchronized playback and chat.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # /api/docs/ runs on the origin whose localStorage holds the tokens: its scripts come from
    # this site (drf-spectacular-sidecar, collected like every static file), never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # validatorUrl None: Swagger UI would otherwise send the schema's URL to an outside validator
    # and show its badge.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
}

# --- CORS, CSRF, security headers (docs/security.md) -------------------------------------------
# Without CORS_ALLOWED_ORIGINS the pages' own origin is allowed: PUBLIC_URL's, and in development
# the addresses `scripts/run` serves on this PORT, so a server moved to another port still
# accepts its own pages' WebSockets (docs/security.md, WebSocket).
_OWN_ORIGINS = [_origin(PUBLIC_URL)]
if not PRODUCTION:
    _OWN_ORIGINS += [f"http://localhost:{PORT}", f"http://127.0.0.1:{PORT}"]
CORS_ALLOWED_ORIGINS = env.list(
    "CORS_ALLOWED_ORIGINS", default=list(dict.fromkeys(origin for origin in _OWN_ORIGINS if origin))
)
CORS_ALLOW_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
CORS_ALLOW_HEADERS = ["authorization", "content-type", "accept"]
CORS_ALLOW_CREDENTIALS = True
CORS_PREFLIGHT_MAX_AGE = 3600
CSRF_TRUSTED_ORIGINS = CORS_ALLOWED_ORIGINS

if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    # Health checks come from the load balancer over plain HTTP.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    # Preload is what `check --deploy` asks for; an operator not ready to commit the domain to
    # browsers' preload lists sets SECURE_HSTS_PRELOAD=false.
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

# --- Static files, i18n ---------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- E-mail (docs/accounts.md). Every message is sent by a Celery task (apps/mail/tasks.py);
# EMAIL_URL is django-environ's form: smtp://user:pass@host:25, smtp+tls://…:587,
# smtp+ssl://…:465, consolemail:// (print to the console: the embedded default).
EMAIL_URL = env.str("EMAIL_URL", default="consolemail://")
_email = env.email_url_config(EMAIL_URL)
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
EMAIL_HOST = _email.get("EMAIL_HOST") or "localhost"
EMAIL_PORT = _email.get("EMAIL_PORT") or 25
EMAIL_HOST_USER = _email.get("EMAIL_HOST_USER") or ""
EMAIL_HOST_PASSWORD = _email.get("EMAIL_HOST_PASSWORD") or ""
EMAIL_USE_TLS = bool(_email.get("EMAIL_USE_TLS"))
EMAIL_USE_SSL = bool(_email.get("EMAIL_USE_SSL"))
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="SyncTV <noreply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Delivery (apps/mail/tasks.py): SMTP errors are retried with exponential backoff and jitter, the
# first retry within EMAIL_RETRY_DELAY seconds, each next one up to 3 times later (at most 30 min);
# after EMAIL_MAX_ATTEMPTS conversations a message is `failed`. Sent and failed rows are deleted
# after EMAIL_KEEP_DAYS (beat).
EMAIL_MAX_ATTEMPTS = env.int("EMAIL_MAX_ATTEMPTS", default=8)
EMAIL_RETRY_DELAY = env.float("EMAIL_RETRY_DELAY", default=8.0)
EMAIL_KEEP_DAYS = env.int("EMAIL_KEEP_DAYS", default=30)

# --- allauth: addresses, verification, reset keys, OAuth2 (docs/accounts.md) ----------------------
# none: no mail; optional: a link is sent, logging in does not wait for it; mandatory: the account
# stays `pending` until its address is verified.
ACCOUNT_EMAIL_VERIFICATION = env.str("ACCOUNT_EMAIL_VERIFICATION", default="optional")
if ACCOUNT_EMAIL_VERIFICATION not in ("none", "optional", "mandatory"):
    raise ImproperlyConfigured("ACCOUNT_EMAIL_VERIFICATION must be none, optional or mandatory")
ACCOUNT_ADAPTER = "apps.accounts.allauth.AccountAdapter"
SOCIALACCOUNT_ADAPTER = "apps.accounts.allauth.SocialAccountAdapter"
ACCOUNT_USER_MODEL_USERNAME_FIELD = "username"
ACCOUNT_USER_MODEL_EMAIL_FIELD = "email"
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_CONFIRMATION_EXPIRE_DAYS = 1  # the verification link: 24 h
ACCOUNT_EMAIL_CONFIRMATION_HMAC = True  # keys are signed, not stored
PASSWORD_RESET_TIMEOUT = 3600  # the reset link: 1 h; single use (the key hashes the password)
ACCOUNT_RATE_LIMITS = False  # ours count in apps/core/ratelimit.py, per IP and per address
ACCOUNT_LOGIN_METHODS = {"username", "email"}
# With mandatory verification an address is required to sign up (auth/register answers 400
# without one; allauth's system check refuses to start otherwise).
_SIGNUP_EMAIL = "email*" if ACCOUNT_EMAIL_VERIFICATION == "mandatory" else "email"
ACCOUNT_SIGNUP_FIELDS = [_SIGNUP_EMAIL, "username*", "password1*"]
# Provider tokens are kept encrypted by us (apps/accounts/oauth), not in allauth's plain table.
SOCIALACCOUNT_STORE_TOKENS = False
SOCIALACCOUNT_EMAIL_AUTHENTICATION = False  # linking by e-mail is our rule (verified on both sides)
# Ask every provider for the address (GitHub's `user:email` scope and its /user/emails list with
# the verified flags, Google's `email` scope): allauth's default asks only when sign-up requires
# an address, and without one a provider sign-in never links by verified e-mail and the new
# account can never reset a password (docs/accounts.md, "OAuth2 sign-in").
SOCIALACCOUNT_QUERY_EMAIL = True
# A provider is offered when its variables are set (docs/accounts.md, "OAuth2 sign-in").
OAUTH_PROVIDER_NAMES = {
    "github": "GitHub",
    "gitlab": "GitLab",
    "google": "Google",
    "discord": "Discord",
    "microsoft": "Microsoft",
}
SOCIALACCOUNT_PROVIDERS: dict[str, dict] = {}
for _provider in OAUTH_PROVIDER_NAMES:
    _client_id = env.str(f"OAUTH_{_provider.upper()}_CLIENT_ID", default="")
    _secret = env.str(f"OAUTH_{_provider.upper()}_CLIENT_SECRET", default="")
    if _client_id and _secret:
        SOCIALACCOUNT_PROVIDERS[_provider] = {
            "APPS": [{"client_id": _client_id, "secret": _secret}],
            "OAUTH_PKCE_ENABLED": True,
        }
OAUTH_OIDC_SERVER_URL = env.str("OAUTH_OIDC_SERVER_URL", default="")
OAUTH_OIDC_NAME = env.str("OAUTH_OIDC_NAME", default="OpenID Connect")
if OAUTH_OIDC_SERVER_URL:
    SOCIALACCOUNT_PROVIDERS["openid_connect"] = {
        "APPS": [
            {
                "provider_id": "oidc",
                "name": OAUTH_OIDC_NAME,
                "client_id": env.str("OAUTH_OIDC_CLIENT_ID"),  # required with a server URL
                "secret": env.str("OAUTH_OIDC_CLIENT_SECRET", default=""),
                "settings": {"server_url": OAUTH_OIDC_SERVER_URL},
            }
        ],
        "OAUTH_PKCE_ENABLED": True,
    }
# How long a `start` stays usable: its state and PKCE verifier wait this long in the cache.
OAUTH_STATE_TTL = 600
# Seconds allauth waits on a provider's token, userinfo and discovery endpoints.
SOCIALACCOUNT_REQUESTS_TIMEOUT = env.int("OAUTH_TIMEOUT", default=10)

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
# "json": one JSON object per line (for a log collector), the default in production; "plain":
# readable lines, the default in development. Both carry the request id (apps/core/requestlog.py).
LOG_FORMAT = env.str("LOG_FORMAT", default="json" if PRODUCTION else "plain")
if LOG_FORMAT not in ("json", "plain"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or plain, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {
            "()": "apps.core.requestlog.JsonFormatter",
            "fmt": "%(levelname)s %(name)s %(message)s %(request_id)s %(user_id)s %(room_id)s %(node_id)s",
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": "time",
        },
    },
    "filters": {
        # ?token=/?code= values never reach a log line (apps/core/logredact.py; the servers' own
        # access loggers get the same filter in CoreConfig.ready()).
        "redact_secrets": {"()": "apps.core.logredact.RedactSecretsFilter"},
        # The request id, user, room and node on every line (apps/core/requestlog.py).
        "context": {"()": "apps.core.requestlog.LogContextFilter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["redact_secrets", "context"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # uvicorn sets its own logger to INFO whatever LOG_LEVEL says; at INFO the ws process
        # writes three lines per socket (accepted, open, closed), ~0.1 ms of CPU per connect.
        "uvicorn.error": {"level": LOG_LEVEL},
    },
}
# In development WhiteNoise serves straight from the app and static/ folders (no collectstatic).
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# The server itself never fetches loopback/private/link-local/metadata addresses unless allowed
# (cloud metadata stays refused even then). Viewers' browsers may use any http(s) URL.
FETCH_ALLOW_PRIVATE_NETWORKS = env.bool("FETCH_ALLOW_PRIVATE_NETWORKS", default=False)

# Operators: who may read /readyz's error texts and timings (and /metrics): a bearer token, or a
# client address in these networks (judged after TRUSTED_PROXY_COUNT). docs/security.md.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=["127.0.0.0/8", "::1/128"])
for _network in METRICS_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_network.strip(), strict=False)
    except ValueError as _exc:  # refuse to start rather than answer 500 on every /readyz
        raise ImproperlyConfigured(f"METRICS_ALLOWED_NETWORKS: {_network!r} is not a network") from _exc

# Prometheus metrics at /metrics (docs/operations.md, "Metrics"). METRICS_ENABLE=false stops the
# request series and answers /metrics 404. Processes that share PROMETHEUS_MULTIPROC_DIR (one
# per host: gunicorn's workers, the ws nodes, the Celery worker) add up in one scrape; production
# keeps it under SYNCTV_VAR_DIR. It is put in the environment here, before anything imports
# prometheus_client, which reads it once at import (apps/core/metrics.py refuses to run otherwise).
METRICS_ENABLE = env.bool("METRICS_ENABLE", default=True)
METRICS_DIR = env.str(
    "PROMETHEUS_MULTIPROC_DIR", default=str(VAR_DIR / "metrics") if PRODUCTION and METRICS_ENABLE else ""
)
if METRICS_DIR:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = METRICS_DIR
    Path(METRICS_DIR).mkdir(parents=True, exist_ok=True)

# Live streams (docs/streaming.md): where streamers publish (shown in publish_url), and who may
# call /internal/rtmp/...: the RTMP server, with RTMP_CALLBACK_SECRET as ``?secret=`` (nginx-rtmp
# cannot add headers) and from an address in RTMP_CALLBACK_NETWORKS (the peer's own address,
# never a forwarded one: the RTMP server calls Django directly).
RTMP_URL = env.str("RTMP_URL", default="rtmp://localhost:1935/live").rstrip("/")


def _derived_secret(label: str) -> str:
    """A secret of its own for one purpose, derived from SECRET_KEY (HMAC-SHA256, base64url): every
    process that shares SECRET_KEY (Django, the Celery worker, scripts/rtmp rendering nginx's
    config) agrees on it without another variable to set, and knowing it reveals nothing of
    SECRET_KEY. Set the variable to choose it yourself (changing SECRET_KEY changes this one)."""
    digest = hmac.new(SECRET_KEY.encode(), f"synctv {label}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


RTMP_CALLBACK_SECRET = env.str("RTMP_CALLBACK_SECRET", default="") or _derived_secret("rtmp callback")
RTMP_CALLBACK_NETWORKS = env.list("RTMP_CALLBACK_NETWORKS", default=["127.0.0.0/8", "::1/128"])
for _network in RTMP_CALLBACK_NETWORKS:
    try:
        ipaddress.ip_network(_network.strip(), strict=False)
    except ValueError as _exc:  # refuse to start rather than refuse every publisher
        raise ImproperlyConfigured(f"RTMP_CALLBACK_NETWORKS: {_network!r} is not a network") from _exc
# The `rtmp` process (scripts/rtmp renders deploy/rtmp/nginx.conf.template from these): RTMP
# ingest, HLS over HTTP (reached only through URLs signed with HLS_SIGNING_SECRET, valid
# HLS_URL_TTL seconds), its control port (loopback only) and where it calls Django.
RTMP_PORT = env.int("RTMP_PORT", default=1935)
HLS_PORT = env.int("HLS_PORT", default=8088)
RTMP_CONTROL_PORT = env.int("RTMP_CONTROL_PORT", default=8089)
RTMP_CALLBACK_URL = env.str("RTMP_CALLBACK_URL", default=f"http://127.0.0.1:{PORT}").rstrip("/")
RTMP_NGINX_MODULE = env.str("RTMP_NGINX_MODULE", default="/usr/lib/nginx/modules/ngx_rtmp_module.so")
HLS_PUBLIC_URL = env.str("HLS_PUBLIC_URL", default=f"http://localhost:{HLS_PORT}").rstrip("/")
HLS_URL_TTL = min(env.int("HLS_URL_TTL", default=600), 600)
HLS_SIGNING_SECRET = env.str("HLS_SIGNING_SECRET", default="") or _derived_secret("hls signing")
