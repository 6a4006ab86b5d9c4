"""Account reads, including the authenticated-request pipeline shared by REST and WebSocket."""

from __future__ import annotations

from django.db.models import Exists, OuterRef
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenError

from apps.accounts import revocation
from apps.accounts.models import AuthSession, Role, User
from apps.accounts.tokens import AccessToken, GuestToken
from apps.core.errors import TokenInvalid, TokenRevoked, UserBanned

# Our tokens are ~900 bytes; anything far larger is not worth parsing.
MAX_TOKEN_BYTES = 8192


def authenticate_access_token(raw: str | bytes) -> tuple[User, AccessToken | GuestToken]:
    """SECURITY.md §1.1 pipeline: verify (RS256, exp, iss, type) -> jti not revoked -> load the
    user -> not banned -> session still live. One Redis round trip and one database query.
    Guest tokens pass too; what they may open is decided by the permission layer (``rid``).

    Raises TokenInvalid, TokenRevoked or UserBanned.
    """
    if not raw or len(raw) > MAX_TOKEN_BYTES:
        raise TokenInvalid()
    try:
        token = AccessToken(raw)
    except TokenError as exc:
        try:  # a guest's token (rare): same checks, its own type
            token = GuestToken(raw)
        except TokenError:
            raise TokenInvalid() from exc
    sid = token.get("sid")
    if not isinstance(sid, str) or not isinstance(token["sub"], str):
        raise TokenInvalid()
    if revocation.is_revoked(token["jti"]):
        raise TokenRevoked()
    live_session = AuthSession.objects.filter(
        pk=sid, user=OuterRef("pk"), revoked_at__isnull=True, expires_at__gt=timezone.now()
    )
    user = User.objects.filter(pk=token["sub"]).annotate(session_live=Exists(live_session)).first()
    if user is None:
        raise TokenInvalid()
    if user.role == Role.BANNED:
        raise UserBanned()
    if not user.session_live:
        raise TokenRevoked()
    return user, token


def user_live_sessions(*, user: User):
    return AuthSession.objects.filter(
        user=user, revoked_at__isnull=True, expires_at__gt=timezone.now()
    ).order_by("-created_at")
