"""Account reads, including the authenticated-request pipeline shared by REST and WebSocket."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, NamedTuple

from django.db import DatabaseError, connection
from django.db.models import QuerySet
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenError

from apps.accounts import authcache, revocation
from apps.accounts.models import AuthSession, Role, User
from apps.accounts.tokens import AccessToken, GuestToken
from apps.core import copies, dbfaults
from apps.core.errors import TokenInvalid, TokenRevoked, UserBanned

# Our tokens are ~900 bytes; anything far larger is not worth parsing.
MAX_TOKEN_BYTES = 8192


# The hot path of every authenticated request: one parameterized query, written out because
# building the equivalent queryset (annotate + Exists + OuterRef) costs more CPU than running it.
_USER_WITH_SESSION_SQL: str | None = None


class _Loaded(NamedTuple):
    user: User
    values: tuple[Any, ...]  # the converted row, as authcache keeps it
    session_live: bool
    cacheable: bool  # the session stays live for as long as a cache entry may be used


def _user_with_session_state(*, user_id: str, session_id: str) -> _Loaded | None:
    global _USER_WITH_SESSION_SQL
    if _USER_WITH_SESSION_SQL is None:
        user_table, session_table = User._meta.db_table, AuthSession._meta.db_table
        columns = ", ".join(f'u."{f.column}"' for f in User._meta.concrete_fields)
        _USER_WITH_SESSION_SQL = (
            f'SELECT {columns}, EXISTS(SELECT 1 FROM "{session_table}" s WHERE s."id" = %s '  # noqa: S608 - names from the model, values are parameters
            f'AND s."user_id" = u."id" AND s."revoked_at" IS NULL AND s."expires_at" > %s) AS session_live, '
            f'EXISTS(SELECT 1 FROM "{session_table}" s WHERE s."id" = %s '
            f'AND s."user_id" = u."id" AND s."revoked_at" IS NULL AND s."expires_at" > %s) AS live_later '
            f'FROM "{user_table}" u WHERE u."id" = %s'
        )
    now = timezone.now()
    later = now + timedelta(seconds=authcache.MAX_AGE_S)
    adapt = connection.ops.adapt_datetimefield_value  # as the ORM would send them
    with connection.cursor() as cursor:
        cursor.execute(_USER_WITH_SESSION_SQL, [session_id, adapt(now), session_id, adapt(later), user_id])
        row = cursor.fetchone()
    if row is None:
        return None
    values = tuple(_convert(row[:-2]))
    return _Loaded(
        user=_user_from_row(values), values=values, session_live=bool(row[-2]), cacheable=bool(row[-1])
    )


def _user_from_row(values: tuple[Any, ...]) -> User:
    # from_db, not .raw(): the same model instance (converters included) for less CPU. A new
    # instance every time: a view may change the one it gets.
    return User.from_db(connection.alias, _USER_FIELDS, values)


_USER_FIELDS = [f.attname for f in User._meta.concrete_fields]


_CONVERTERS: list[tuple[Any, list[Any]]] | None = None


def _convert(values: Sequence[Any]) -> list[Any]:
    """Apply the backend's converters (SQLite hands datetimes back as strings). Which converters
    a column needs is worked out once per process (one database per process)."""
    global _CONVERTERS
    if _CONVERTERS is None:
        cols = [field.get_col(User._meta.db_table) for field in User._meta.concrete_fields]
        _CONVERTERS = [(col, connection.ops.get_db_converters(col)) for col in cols]
    out = []
    for value, (col, converters) in zip(values, _CONVERTERS, strict=True):
        for converter in converters:
            value = converter(value, col, connection)
        out.append(value)
    return out


def authenticate_access_token(raw: str | bytes) -> tuple[User, AccessToken | GuestToken]:
    """The pipeline of docs/security.md, "Who is asking": verify (RS256, exp, iss, type) -> jti not
    revoked -> load the user -> not banned -> session still live. One Redis round trip, and one database query
    unless this process loaded the same user and session since anything changed (authcache).
    Guest tokens pass too; what they may open is decided by the permission layer (``rid``).

    Raises TokenInvalid, TokenRevoked or UserBanned.
    """
    token = verify_access_token(raw)
    return authenticate_verified_token(token), token


def verify_access_token(raw: str | bytes) -> AccessToken | GuestToken:
    """The first step of the pipeline alone: the signature, expiry, issuer and type, and a subject
    and session id of the right shape. No Redis; the database only when the key store has to
    (re)load its keys, which ``keystore.offline()`` turns into KeysNotLoaded (the WebSocket
    verifies on its event loop, apps.rooms.handshake). Raises TokenInvalid."""
    if not raw or len(raw) > MAX_TOKEN_BYTES:
        raise TokenInvalid()
    token: AccessToken | GuestToken
    # simplejwt annotates the constructor's ``token`` as a Token; it takes the encoded string.
    try:
        token = AccessToken(raw)  # type: ignore[arg-type]
    except TokenError as exc:
        try:  # a guest's token (rare): same checks, its own type
            token = GuestToken(raw)  # type: ignore[arg-type]
        except TokenError:
            raise TokenInvalid() from exc
    sid = token.get("sid")
    if not isinstance(sid, str) or not isinstance(token["sub"], str):
        raise TokenInvalid()
    return token


def authenticate_verified_token(token: AccessToken | GuestToken) -> User:
    """The rest of the pipeline for a token ``verify_access_token`` passed: not revoked, the user,
    not banned, the session live. Raises TokenInvalid, TokenRevoked or UserBanned."""
    sid = token["sid"]
    revoked, stamp, redis_answered = revocation.check(token["jti"], token["sub"])
    if revoked:
        raise TokenRevoked()
    cached = authcache.lookup(token["sub"], sid, stamp)
    if cached is not None:  # loaded by an earlier request; nothing about it changed since
        user, session_live = _user_from_row(cached), True
    else:
        try:
            loaded = _user_with_session_state(user_id=token["sub"], session_id=sid)
        except DatabaseError as exc:  # the database is down: the copy, if still good, answers
            user = _user_from_copy(exc, token["sub"], sid, stamp if redis_answered else None)
            session_live = True
        else:
            if loaded is None:
                raise TokenInvalid()
            user, session_live = loaded.user, loaded.session_live
            if loaded.cacheable and redis_answered:  # no second try at a Redis that just failed
                kept_under = authcache.store(token["sub"], sid, stamp, loaded.values)
                if kept_under is not None:
                    kept = {"stamp": kept_under, "user": copies.row(user, omit=USER_SECRETS)}
                    copies.keep(_copy_name(token["sub"], sid), kept)
    if user.role == Role.BANNED:
        raise UserBanned()
    if not session_live:
        raise TokenRevoked()
    return user


USER_SECRETS = frozenset({"password"})


def _copy_name(user_id: str, session_id: str) -> str:
    return f"auth:{user_id}:{session_id}"


def _user_from_copy(exc: DatabaseError, user_id: str, session_id: str, stamp: str | None) -> User:
    """While the database cannot be reached: the user as the copy kept with this session's last
    load has it, if nothing that authentication reads changed since (the stamp Redis holds now is
    the one the copy was kept under; every change of the user and every end of a session replaces
    it, apps.accounts.authcache). Else the database's error stands."""
    if stamp is None or not dbfaults.lost_connection(exc):
        raise exc
    copy = copies.recall(_copy_name(user_id, session_id))
    if copy is None or copy.get("stamp") != stamp:
        raise exc
    return copies.instance(User, copy["user"], blanks={"password": "!"})


def user_live_sessions(*, user: User) -> QuerySet[AuthSession]:
    return AuthSession.objects.filter(
        user=user, revoked_at__isnull=True, expires_at__gt=timezone.now()
    ).order_by("-created_at")
