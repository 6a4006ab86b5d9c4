"""Micro costs, measured in-process against the same PostgreSQL + Redis as the servers.

Run by bench/run with the production environment; prints one JSON object. Each figure is the
median (and p90) of N timed calls after a short warm-up, wall time on one thread:

  rs256_verify_pyjwt      jwt.decode() of our access token with the public key object (RS256 only)
  access_token_verify     apps.accounts.tokens.AccessToken(raw): header, kid lookup, RS256, claims
  auth_pipeline           apps.accounts.selectors.authenticate_access_token(raw) as every request
                          after the first of a session pays it: verify + one Redis MGET (revoked
                          jti, the user's stamp), the user row from this process's authcache
  auth_pipeline_miss      the same with the authcache emptied first: verify + Redis + one
                          PostgreSQL query (user + live session), connection kept open
  auth_pipeline_request   auth_pipeline_miss preceded by django.db.close_old_connections(), i.e.
                          the first request of a session: the connection health check (a socket
                          poll in apps/core/postgresql, not a `SELECT 1`) and the query
  redis_exists            one Redis EXISTS round trip (django-free client)
  pg_select1              one `SELECT 1` round trip on the open Django connection
  rs256_sign              one access-token mint + sign (what login/refresh pay per token)
  argon2id_hash           one Argon2id hash with the project's parameters (19 MiB, t=2, p=1)
  login                   apps.accounts.services.user_login(): lookup, Argon2id verify, session
                          row, audit row, two RS256 signatures
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "synctv.settings")

import django  # noqa: E402

django.setup()

import jwt  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth.hashers import get_hasher  # noqa: E402
from django.db import close_old_connections, connection  # noqa: E402

from apps.accounts import authcache, services  # noqa: E402
from apps.accounts.keystore import keystore  # noqa: E402
from apps.accounts.models import User  # noqa: E402
from apps.accounts.selectors import authenticate_access_token  # noqa: E402
from apps.accounts.tokens import AccessToken, mint_access  # noqa: E402
from apps.core.context import Origin  # noqa: E402
from apps.core.redis import get_redis  # noqa: E402


def timed(fn, n: int, warmup: int = 20) -> dict:
    for _ in range(min(warmup, n)):
        fn()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t0)
    samples.sort()
    return {
        "n": n,
        "median_us": round(statistics.median(samples) / 1000, 1),
        "p90_us": round(samples[int(n * 0.9) - 1] / 1000, 1),
        "min_us": round(samples[0] / 1000, 1),
    }


def main() -> None:
    raw = os.environ["BENCH_ACCESS"]
    username = os.environ["BENCH_USERNAME"]
    password = os.environ["BENCH_PASSWORD"]
    n_fast = int(os.environ.get("BENCH_MICRO_N", "2000"))
    n_login = int(os.environ.get("BENCH_LOGIN_N", "30"))

    header = jwt.get_unverified_header(raw)
    public_key = keystore.verifying_key(header["kid"])
    user, _ = authenticate_access_token(raw)  # also a sanity check: the token is accepted
    assert user.username == username
    redis = get_redis()
    hasher = get_hasher("default")
    origin = Origin(ip="127.0.0.1", user_agent="bench/micro")

    def pg_select1():
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()

    def pipeline_miss():
        authcache.forget_all()
        authenticate_access_token(raw)

    def pipeline_request():
        close_old_connections()
        pipeline_miss()

    results = {
        "rs256_verify_pyjwt": timed(
            lambda: jwt.decode(
                raw,
                public_key,
                algorithms=["RS256"],
                issuer=settings.JWT_ISSUER,
                options={"verify_aud": False},
            ),
            n_fast,
        ),
        "access_token_verify": timed(lambda: AccessToken(raw), n_fast),
        "auth_pipeline": timed(lambda: authenticate_access_token(raw), n_fast),
        "auth_pipeline_miss": timed(pipeline_miss, n_fast),
        "auth_pipeline_request": timed(pipeline_request, n_fast),
        "redis_exists": timed(lambda: redis.exists("token:revoked:bench-none"), n_fast),
        "pg_select1": timed(pg_select1, n_fast),
        "rs256_sign": timed(lambda: str(mint_access(user=user, session_id="bench")), 200),
        "argon2id_hash": timed(lambda: hasher.encode(password, hasher.salt()), n_login, warmup=2),
        "login": timed(
            lambda: services.user_login(identifier=username, password=password, origin=origin),
            n_login,
            warmup=2,
        ),
    }
    results["meta"] = {
        "token_bytes": len(raw),
        "conn_health_checks": connection.settings_dict.get("CONN_HEALTH_CHECKS"),
        "conn_max_age": connection.settings_dict.get("CONN_MAX_AGE"),
        "hasher": f"{type(hasher).__module__}.{type(hasher).__name__}",
        "users": User.objects.count(),
    }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
