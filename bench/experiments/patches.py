"""Candidate changes to app code, applied by monkeypatching for measurement only.

The replacement ``authenticate_access_token`` below mirrors the app's pipeline for access tokens
as of 2026-11-27 (verify, revocation, one query, ban, live session); it does not try guest
tokens. ``rawqs`` is what the app itself adopted in commit 6e1b3d1, ``plainser`` likewise.

BENCH_VARIANT entries handled here:
  rawsql      authenticate_access_token's user + live-session read as one constant SQL string
              (same query, same semantics, no ORM query building per request)
  noorder     the same ORM query without the Meta.ordering ORDER BY that .first() adds
  ormjoin     one ORM query from the session side: AuthSession + select_related("user") by the
              session id, liveness (owner, revoked_at, expires_at) checked in Python
  rawqs       the rawsql statement through User.objects.raw() instead of a cursor
  plainser    MeView answers with a plain Serializer (declared fields) instead of ModelSerializer
  rawredis    the revocation check calls the Redis client directly (no circuit breaker wrapper)
"""

from __future__ import annotations

import os

VARIANT = [v for v in os.environ.get("BENCH_VARIANT", "").split(",") if v]


def apply() -> list[str]:
    applied = []
    for mode in ("rawsql", "noorder", "ormjoin", "rawqs"):
        if mode in VARIANT:
            _patch_selector(mode)
            applied.append(mode)
    if "plainser" in VARIANT:
        _patch_serializer()
        applied.append("plainser")
    if "rawredis" in VARIANT:
        _patch_redis()
        applied.append("rawredis")
    return applied


def _patch_selector(mode: str) -> None:
    from django.db import connection
    from django.db.models import Exists, OuterRef
    from django.utils import timezone
    from rest_framework_simplejwt.exceptions import TokenError

    from apps.accounts import authentication, revocation, selectors
    from apps.accounts.models import AuthSession, Role, User
    from apps.accounts.tokens import AccessToken
    from apps.core.errors import TokenInvalid, TokenRevoked, UserBanned

    columns = [f.column for f in User._meta.concrete_fields]
    sql = (
        "SELECT " + ", ".join(f'u."{c}"' for c in columns) + ", EXISTS(SELECT 1 FROM accounts_authsession s"
        " WHERE s.id = %s AND s.user_id = u.id AND s.revoked_at IS NULL AND s.expires_at > %s)"
        " FROM accounts_user u WHERE u.id = %s"
    )

    def load(sub, sid):
        if mode == "ormjoin":
            now = timezone.now()
            found = list(AuthSession.objects.select_related("user").filter(pk=sid).order_by()[:1])
            if not found or found[0].user_id != sub:
                return None
            session = found[0]
            user = session.user
            user.session_live = session.revoked_at is None and session.expires_at > now
            return user
        if mode == "rawqs":
            named = sql.replace(") FROM accounts_user u", ") AS session_live FROM accounts_user u")
            found = list(User.objects.raw(named, [sid, timezone.now(), sub]))
            return found[0] if found else None
        if mode == "rawsql":
            with connection.cursor() as cur:
                cur.execute(sql, [sid, timezone.now(), sub])
                row = cur.fetchone()
            if row is None:
                return None
            user = User.from_db(connection.alias, columns, row[:-1])
            user.session_live = row[-1]
            return user
        live = AuthSession.objects.filter(
            pk=sid, user=OuterRef("pk"), revoked_at__isnull=True, expires_at__gt=timezone.now()
        )
        return User.objects.filter(pk=sub).annotate(session_live=Exists(live)).order_by().first()

    def authenticate_access_token(raw_token):
        if not raw_token or len(raw_token) > selectors.MAX_TOKEN_BYTES:
            raise TokenInvalid()
        try:
            token = AccessToken(raw_token)
        except TokenError as exc:
            raise TokenInvalid() from exc
        sid = token.get("sid")
        if not isinstance(sid, str) or not isinstance(token["sub"], str):
            raise TokenInvalid()
        if revocation.is_revoked(token["jti"]):
            raise TokenRevoked()
        user = load(token["sub"], sid)
        if user is None:
            raise TokenInvalid()
        if user.role == Role.BANNED:
            raise UserBanned()
        if not user.session_live:
            raise TokenRevoked()
        return user, token

    selectors.authenticate_access_token = authenticate_access_token
    authentication.authenticate_access_token = authenticate_access_token


def _patch_serializer() -> None:
    from rest_framework import serializers
    from rest_framework.response import Response

    from apps.accounts import api

    class PlainUserSerializer(serializers.Serializer):
        id = serializers.CharField(read_only=True)
        username = serializers.CharField(read_only=True)
        email = serializers.EmailField(read_only=True)
        role = serializers.CharField(read_only=True)
        date_joined = serializers.DateTimeField(read_only=True)

    def get(self, request):
        return Response(PlainUserSerializer(request.user).data)

    api.MeView.get = get


def _patch_redis() -> None:
    from apps.accounts import revocation
    from apps.core.redis import get_redis

    def is_revoked(jti: str) -> bool:
        key = revocation.KEY.format(jti=jti)
        return bool(get_redis().exists(key))

    revocation.is_revoked = is_revoked
    from apps.accounts import selectors

    selectors.revocation = revocation
