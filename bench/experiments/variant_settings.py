"""synctv.settings with measured tweaks, for bench/experiments only (never used by the app).

BENCH_VARIANT is a comma-separated list:
  nohc            CONN_HEALTH_CHECKS = False (no `SELECT 1` before each request's first query)
  mw-NAME         drop every middleware whose dotted path contains NAME (e.g. mw-Auditlog)
  apimw           keep only Security, CORS, Common (what a bearer-token JSON API needs)
  pool            psycopg connection pool (Django 5.1+ OPTIONS["pool"], max 8 per process),
                  CONN_MAX_AGE = 0 as pooling requires
The patches that replace app functions (see experiments/patches.py) are applied by the
entry points (inproc.py, wsgi.py), not here.
"""

import os

from synctv.settings import *  # noqa: F403
from synctv.settings import DATABASES, MIDDLEWARE

VARIANT = [v for v in os.environ.get("BENCH_VARIANT", "").split(",") if v]

for _v in VARIANT:
    if _v == "nohc":
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
    elif _v == "pool":
        DATABASES["default"]["CONN_MAX_AGE"] = 0
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {"min_size": 2, "max_size": 8, "timeout": 10}
    elif _v.startswith("mw-"):
        MIDDLEWARE = [m for m in MIDDLEWARE if _v[3:] not in m]
    elif _v == "apimw":
        MIDDLEWARE = [
            "django.middleware.security.SecurityMiddleware",
            "corsheaders.middleware.CorsMiddleware",
            "django.middleware.common.CommonMiddleware",
        ]
