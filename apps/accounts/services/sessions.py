"""Login sessions and their tokens: login (API and admin), refresh-token rotation with reuse
detection, logout, revocation of one token or of every session of a user, and the purge of
old session rows."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NoReturn

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenError

from apps.accounts import authcache, revocation
from apps.accounts.models import AuthSession, Role, User
from apps.accounts.services._common import TokenPair, _epoch_to_datetime
from apps.accounts.tokens import AccessToken, RefreshToken, mint_access, mint_refresh
from apps.audit.actions import AuditAction
from apps.audit.services import audit_record
from apps.core import events, ratelimit, realtime
from apps.core.context import Origin
from apps.core.errors import (
    AccountPending,
    InvalidCredentials,
    InvalidInput,
    TokenInvalid,
    TokenRevoked,
    UserBanned,
)


def _session_open(*, user: User, origin: Origin) -> TokenPair:
    """Start a login session and mint its first token pair. Caller holds the transaction."""
    session = AuthSession(
        user=user,
        refresh_jti="",
        ip=origin.ip,
        user_agent=origin.user_agent,
        node_id=settings.SYNCTV_NODE_ID,
        expires_at=timezone.now(),
    )
    refresh = mint_refresh(user=user, session_id=session.id)
    session.refresh_jti = refresh["jti"]
    session.expires_at = _epoch_to_datetime(refresh["exp"])
    session.save(force_insert=True)
    access = mint_access(user=user, session_id=session.id)
    return TokenPair(access=str(access), refresh=str(refresh))


def _sessions_revoke_all(*, user: User, reason: str) -> int:
    """End every live session of ``user``: all their access and refresh tokens stop working, and
    (after commit) their open sockets on every node re-check their token and close."""
    _announce_sessions_changed(user)
    return AuthSession.objects.filter(user=user, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_reason=reason
    )


def _announce_sessions_changed(user: User) -> None:
    # The stamp first: a socket that re-checks its token on the news must not find a cached row.
    authcache.user_changed(user.pk)
    realtime.user_event(user.pk, events.sessions_revoked())


def _decode_refresh(raw: str) -> RefreshToken:
    try:
        # simplejwt annotates ``token`` as a Token, but it takes (and here gets) the encoded string.
        return RefreshToken(raw)  # type: ignore[arg-type]
    except TokenError as exc:
        raise TokenInvalid("The refresh token is invalid or expired.") from exc


def tokens_revoke_all(*, user: User, reason: str, origin: Origin, actor: User | None = None) -> int:
    """End every session of ``user``. The caller (view, admin, command) has checked the right."""
    with transaction.atomic():
        count = _sessions_revoke_all(user=user, reason=reason)
        audit_record(
            action=AuditAction.TOKENS_REVOKE_ALL,
            origin=origin,
            user=actor or user,
            resource_type="user",
            resource_id=user.pk,
            details={"reason": reason, "sessions": count},
        )
    return count


def token_revoke_jti(*, jti: str, expires_at_epoch: float, origin: Origin, actor: User | None = None) -> None:
    """Revoke one token id until it would have expired anyway."""
    with transaction.atomic():
        audit_record(
            action=AuditAction.TOKEN_REVOKE,
            origin=origin,
            user=actor,
            resource_type="token",
            resource_id=jti,
        )
        transaction.on_commit(lambda: revocation.revoke_jti(jti, expires_at_epoch))


# --- login ----------------------------------------------------------------------------------------


def _find_login_user(identifier: str) -> User | None:
    lookup = "email_ci" if "@" in identifier else "username_ci"
    return User.objects.with_ci().filter(**{lookup: identifier.lower()}).first()


def _login_account_key(identifier: str, user: User | None) -> str:
    """The per-account login limit's key: the account when the identifier names one, so its
    username and its e-mail address share one budget; else the identifier as typed, lower-cased."""
    return f"account:{user.pk}" if user is not None else f"name:{identifier.lower()}"


def _login_check(*, identifier: str, password: str, origin: Origin, via: str, staff_only: bool) -> User:
    """One login attempt, whatever the client (the API, the admin): the limits, the password and
    the audit event of a failure or a refusal. Returns the user whose password matched.

    Both limits count *before* the password is hashed (an atomic increment that refuses when
    over), so parallel guesses cannot slip through together and a refused attempt costs no hash.
    A matching password gives its per-account count back: the owner logging in does not use up
    the failed-attempt budget (docs/security.md). Raises RateLimited, InvalidCredentials,
    UserBanned or AccountPending.
    """
    # No address (the admin backend called without a request): one budget, under "None".
    ratelimit.take(limit="login_ip", key=ratelimit.ip_key(str(origin.ip)))
    user = _find_login_user(identifier)
    attempt = ratelimit.take(limit="login_user", key=_login_account_key(identifier, user))
    matched: User | None = None
    if user is None:
        # Spend the same hashing time as a real check, so timing does not reveal accounts.
        User().set_password(password)
    elif user.check_password(password):
        # check_password re-hashes with the current Argon2id parameters if they differ.
        matched = user
    if matched is not None:
        ratelimit.give_back(attempt)
    refusal = None if matched is None else _login_refusal(matched, staff_only=staff_only)
    if matched is not None and refusal is None:
        return matched
    via_details = {"via": via} if via != "api" else {}
    with transaction.atomic():
        if matched is None:
            audit_record(
                action=AuditAction.AUTH_LOGIN_FAILED,
                origin=origin,
                user=user,
                resource_type="user",
                resource_id=user.pk if user else "",
                details={"identifier": identifier[:254], **via_details},
            )
        else:
            audit_record(
                action=AuditAction.AUTH_LOGIN_REFUSED,
                origin=origin,
                user=matched,
                resource_type="user",
                resource_id=matched.pk,
                details={"reason": refusal, **via_details},
            )
    if matched is None or refusal == "not_staff":
        raise InvalidCredentials()
    if refusal == "banned":
        raise UserBanned()
    raise AccountPending()


def _login_refusal(user: User, *, staff_only: bool) -> str | None:
    """Why a user whose password matched may not log in, or None."""
    if user.role == Role.BANNED:
        return "banned"
    if user.role == Role.PENDING:
        return "pending"
    if staff_only and not user.is_staff:
        return "not_staff"
    return None


def _login_record(*, user: User, origin: Origin, via: str) -> None:
    """The successful login's row changes and audit event. Caller holds the transaction."""
    user.last_login = timezone.now()
    user.save(update_fields=["last_login"])
    audit_record(
        action=AuditAction.AUTH_LOGIN,
        origin=origin,
        user=user,
        resource_type="user",
        resource_id=user.pk,
        details={"via": via} if via != "api" else None,
    )


def user_login(*, identifier: str, password: str, origin: Origin) -> tuple[User, TokenPair]:
    """Check credentials and open a session. Same answer for unknown user and wrong password.

    Rate-limited per client IP and per account (``_login_check``): every caller is, so no client
    can offer a way around the limits."""
    user = _login_check(identifier=identifier, password=password, origin=origin, via="api", staff_only=False)
    with transaction.atomic():
        _login_record(user=user, origin=origin, via="api")
        return user, _session_open(user=user, origin=origin)


def user_admin_login(*, identifier: str, password: str, origin: Origin) -> User:
    """The Django admin's login (apps/accounts/backends.py): the same limits, budget and audit
    events as ``user_login``; only staff accounts get in, and no token session is opened (the
    admin keeps its own cookie session)."""
    user = _login_check(identifier=identifier, password=password, origin=origin, via="admin", staff_only=True)
    with transaction.atomic():
        _login_record(user=user, origin=origin, via="admin")
    return user


# --- refresh, logout --------------------------------------------------------------------------------


def session_refresh(*, raw_refresh: str, origin: Origin) -> TokenPair:
    """Rotate a refresh token: the presented one dies at once and a new pair is issued.

    One conditional UPDATE decides the winner, so two concurrent refreshes with one token get
    one new pair between them. A refresh token that was already rotated away being presented
    again is treated as theft: every session of the user ends (the loser of a concurrent
    refresh included: there is no grace window). The current token of a session that was
    ended (logout, password change, ban) is merely refused.
    """
    old = _decode_refresh(raw_refresh)
    jti, sid, user_id, old_exp = old["jti"], old.get("sid"), old["sub"], old["exp"]
    if not isinstance(sid, str):
        raise TokenInvalid()
    now = timezone.now()
    with transaction.atomic():
        user = _refresh_user(user_id)
        pair = _refresh_rotate(user=user, sid=sid, jti=jti, old_exp=old_exp, now=now, origin=origin)
        if pair is not None:
            return pair
        session = AuthSession.objects.filter(pk=sid, user=user).first()
    _refresh_refuse(session=session, user=user, jti=jti, old_exp=old_exp, now=now, origin=origin)


def _refresh_user(user_id: str) -> User:
    """The refresh token's user, who must still exist and not be banned."""
    user = User.objects.filter(pk=user_id).first()
    if user is None:
        raise TokenInvalid()
    if user.role == Role.BANNED:
        raise UserBanned()
    return user


def _refresh_rotate(
    *, user: User, sid: str, jti: str, old_exp: float, now: datetime, origin: Origin
) -> TokenPair | None:
    """The conditional UPDATE that moves the session to a new refresh token if ``jti`` is still
    its current one and the session is live; the new pair if it won, None if it did not.
    Caller holds the transaction."""
    new_refresh = mint_refresh(user=user, session_id=sid)
    won = AuthSession.objects.filter(
        pk=sid, user=user, refresh_jti=jti, revoked_at__isnull=True, expires_at__gt=now
    ).update(
        refresh_jti=new_refresh["jti"],
        last_refreshed_at=now,
        expires_at=_epoch_to_datetime(new_refresh["exp"]),
    )
    if not won:
        return None
    audit_record(
        action=AuditAction.TOKEN_REFRESH,
        origin=origin,
        user=user,
        resource_type="session",
        resource_id=sid,
    )
    access = mint_access(user=user, session_id=sid)
    transaction.on_commit(lambda: revocation.revoke_jti(jti, old_exp))
    return TokenPair(access=str(access), refresh=str(new_refresh))


def _refresh_refuse(
    *, session: AuthSession | None, user: User, jti: str, old_exp: float, now: datetime, origin: Origin
) -> NoReturn:
    """Answer a refresh that lost the conditional UPDATE (``session`` as read after it)."""
    if session is None:
        raise TokenInvalid()
    if session.revoked_at is None and session.expires_at <= now:
        raise TokenInvalid("The session has expired; log in again.")
    if session.refresh_jti == jti:
        # The session's current token, but the session was ended (logout, password change,
        # ban): refuse it, without treating a device that missed the news as a thief.
        raise TokenRevoked("This session has ended; log in again.")
    # A refresh token that was already rotated away came back: one of the two presenters
    # has a copy it should not have. End every session of the user.
    with transaction.atomic():
        count = _sessions_revoke_all(user=user, reason="refresh_reuse")
        audit_record(
            action=AuditAction.TOKEN_REUSE_DETECTED,
            origin=origin,
            user=user,
            resource_type="session",
            resource_id=session.pk,
            details={"jti": jti, "sessions_revoked": count},
        )
    revocation.revoke_jti(jti, old_exp)
    raise TokenRevoked("This refresh token was already used; every session has been ended.")


def session_logout(*, user: User, access: AccessToken, raw_refresh: str, origin: Origin) -> None:
    """End the caller's session: its access token and the given refresh token stop working."""
    refresh = _decode_refresh(raw_refresh)
    if refresh["sub"] != user.pk:
        raise InvalidInput(
            "refresh: this refresh token belongs to someone else.", details={"refresh": ["Not your token."]}
        )
    session_ids = {access["sid"], refresh.get("sid")}
    with transaction.atomic():
        AuthSession.objects.filter(user=user, pk__in=session_ids, revoked_at__isnull=True).update(
            revoked_at=timezone.now(), revoked_reason="logout"
        )
        _announce_sessions_changed(user)
        audit_record(
            action=AuditAction.AUTH_LOGOUT,
            origin=origin,
            user=user,
            resource_type="session",
            resource_id=access["sid"],
            details={"access_jti": access["jti"], "refresh_jti": refresh["jti"]},
        )
        transaction.on_commit(lambda: revocation.revoke_jti(access["jti"], access["exp"]))
        transaction.on_commit(lambda: revocation.revoke_jti(refresh["jti"], refresh["exp"]))


def user_logout_all(*, user: User, origin: Origin) -> None:
    tokens_revoke_all(user=user, reason="logout_all", origin=origin)


def sessions_purge_expired(*, keep_days: int = 7) -> int:
    """Delete sessions expired or revoked more than ``keep_days`` ago. Returns how many."""
    cutoff = timezone.now() - timedelta(days=keep_days)
    deleted, _ = AuthSession.objects.filter(
        models.Q(expires_at__lt=cutoff) | models.Q(revoked_at__lt=cutoff)
    ).delete()
    return deleted
