"""Account writes: registration, login sessions, token rotation and revocation, roles and bans.

Every function here is keyword-only, runs in one transaction and writes its audit event in
that transaction. Functions that take ``actor`` check the actor's right themselves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, models, transaction
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenError

from apps.accounts import authcache, revocation
from apps.accounts.models import STAFF_ROLES, AuthSession, Role, User
from apps.accounts.tokens import AccessToken, RefreshToken, mint_access, mint_refresh
from apps.audit.actions import AuditAction
from apps.audit.services import audit_record
from apps.core import events, ratelimit, realtime
from apps.core.context import Origin
from apps.core.errors import (
    AccountPending,
    InvalidCredentials,
    InvalidInput,
    PermissionDenied,
    TokenInvalid,
    TokenRevoked,
    UserBanned,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str


def _epoch_to_datetime(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


def _field_errors(field: str, messages) -> InvalidInput:
    messages = list(messages)
    return InvalidInput(f"{field}: {messages[0]}", details={field: messages})


def _check_password_rule(password: str, user: User | None, field: str) -> None:
    try:
        password_validation.validate_password(password, user)
    except DjangoValidationError as exc:
        raise _field_errors(field, exc.messages) from exc


def _check_unique(*, username: str | None = None, email: str | None = None, exclude_pk=None) -> None:
    qs = User.objects.with_ci()
    if exclude_pk is not None:
        qs = qs.exclude(pk=exclude_pk)
    if username is not None and qs.filter(username_ci=username.lower()).exists():
        raise _field_errors("username", ["This username is taken."])
    if email and qs.filter(email_ci=email.lower()).exists():
        raise _field_errors("email", ["This email address is already registered."])


# --- sessions and tokens ------------------------------------------------------------------------


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
        return RefreshToken(raw)
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


# --- registration and login -----------------------------------------------------------------------


def user_register(
    *, username: str, password: str, email: str | None, origin: Origin
) -> tuple[User, TokenPair | None]:
    """Create an account. Returns the user and a token pair, or no pair if it awaits review.

    The answer must not tell whether ``email`` belongs to another account (docs/security.md,
    "Accounts and staff").
    Until e-mail verification exists, an address that is taken is left with its owner and the
    new account gets none; the caller answers as if it had been stored (``email_as_answered``).
    Usernames are public, so a taken one is still refused by name.
    """
    email = User.objects.normalize_email(email) or None
    _check_unique(username=username)
    candidate = User(username=username, email=email)
    _check_password_rule(password, candidate, "password")
    role = Role.PENDING if settings.ACCOUNT_REVIEW_REQUIRED else Role.USER
    email_taken = email is not None and User.objects.with_ci().filter(email_ci=email.lower()).exists()
    for _attempt in range(2):
        stored_email = None if email_taken else email
        try:
            with transaction.atomic():
                user = User.objects.create_user(
                    username=username, password=password, email=stored_email, role=role
                )
                audit_record(
                    action=AuditAction.USER_REGISTER,
                    origin=origin,
                    user=user,
                    resource_type="user",
                    resource_id=user.pk,
                    details={"email_taken": True} if email_taken else None,
                )
                pair = _session_open(user=user, origin=origin) if role == Role.USER else None
            return user, pair
        except IntegrityError as exc:
            # Lost a race with another registration of the same name or address.
            if email_taken or User.objects.with_ci().filter(username_ci=username.lower()).exists():
                raise _field_errors("username", ["This username is taken."]) from exc
            email_taken = True
    raise AssertionError("unreachable")


def email_as_answered(email: str | None) -> str | None:
    """The address a registration answer shows: the one asked for, whether or not it was stored
    (``user_register``), normalized as a stored one would be."""
    return User.objects.normalize_email(email) or None


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
    ratelimit.take(limit="login_ip", key=ratelimit.ip_key(origin.ip))
    user = _find_login_user(identifier)
    attempt = ratelimit.take(limit="login_user", key=_login_account_key(identifier, user))
    if user is None:
        # Spend the same hashing time as a real check, so timing does not reveal accounts.
        User().set_password(password)
        ok = False
    else:
        # check_password re-hashes with the current Argon2id parameters if they differ.
        ok = user.check_password(password)
    if ok:
        ratelimit.give_back(attempt)
    via_details = {"via": via} if via != "api" else {}
    refusal = None
    if ok and user.role == Role.BANNED:
        refusal = "banned"
    elif ok and user.role == Role.PENDING:
        refusal = "pending"
    elif ok and staff_only and not user.is_staff:
        refusal = "not_staff"
    if ok and refusal is None:
        return user
    with transaction.atomic():
        if not ok:
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
                user=user,
                resource_type="user",
                resource_id=user.pk,
                details={"reason": refusal, **via_details},
            )
    if not ok or refusal == "not_staff":
        raise InvalidCredentials()
    if refusal == "banned":
        raise UserBanned()
    raise AccountPending()


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


def session_refresh(*, raw_refresh: str, origin: Origin) -> TokenPair:
    """Rotate a refresh token: the presented one dies at once and a new pair is issued.

    One conditional UPDATE decides the winner, so two concurrent refreshes with one token get
    one new pair between them. A refresh token that was already rotated away being presented
    again is treated as theft: every session of the user ends (the loser of a concurrent
    refresh included: there is no grace window). The current token of a session that was
    ended (logout, password change, ban) is merely refused.
    """
    old = _decode_refresh(raw_refresh)
    jti, sid, user_id = old["jti"], old.get("sid"), old["sub"]
    if not isinstance(sid, str):
        raise TokenInvalid()
    now = timezone.now()
    with transaction.atomic():
        user = User.objects.filter(pk=user_id).first()
        if user is None:
            raise TokenInvalid()
        if user.role == Role.BANNED:
            raise UserBanned()
        new_refresh = mint_refresh(user=user, session_id=sid)
        won = AuthSession.objects.filter(
            pk=sid, user=user, refresh_jti=jti, revoked_at__isnull=True, expires_at__gt=now
        ).update(
            refresh_jti=new_refresh["jti"],
            last_refreshed_at=now,
            expires_at=_epoch_to_datetime(new_refresh["exp"]),
        )
        if won:
            audit_record(
                action=AuditAction.TOKEN_REFRESH,
                origin=origin,
                user=user,
                resource_type="session",
                resource_id=sid,
            )
            access = mint_access(user=user, session_id=sid)
            transaction.on_commit(lambda: revocation.revoke_jti(jti, old["exp"]))
            return TokenPair(access=str(access), refresh=str(new_refresh))
        session = AuthSession.objects.filter(pk=sid, user=user).first()
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
            resource_id=sid,
            details={"jti": jti, "sessions_revoked": count},
        )
    revocation.revoke_jti(jti, old["exp"])
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


def user_password_change(*, user: User, old_password: str, new_password: str, origin: Origin) -> TokenPair:
    """Change the caller's password; every session ends and a new one starts for the caller."""
    if not user.check_password(old_password):
        with transaction.atomic():
            audit_record(
                action=AuditAction.AUTH_PASSWORD_CHANGE_FAILED,
                origin=origin,
                user=user,
                resource_type="user",
                resource_id=user.pk,
            )
        raise InvalidInput(
            "old_password: the current password is wrong.",
            details={"old_password": ["The current password is wrong."]},
        )
    _check_password_rule(new_password, user, "new_password")
    with transaction.atomic():
        user.set_password(new_password)
        user.save(update_fields=["password"])
        count = _sessions_revoke_all(user=user, reason="password_change")
        audit_record(
            action=AuditAction.AUTH_PASSWORD_CHANGE,
            origin=origin,
            user=user,
            resource_type="user",
            resource_id=user.pk,
            details={"sessions_revoked": count},
        )
        return _session_open(user=user, origin=origin)


UNCHANGED = object()


def user_update_profile(
    *,
    user: User,
    origin: Origin,
    actor: User | None = None,
    username=UNCHANGED,
    email=UNCHANGED,
    current_password: str | None = None,
) -> User:
    """Edit a username or email address (UNCHANGED leaves one as it is).

    ``actor`` None (or the user): the user edits their own account, and a new address (or none)
    needs their current password: an address is how an account will be recovered, and asking
    for it keeps a stolen access token from moving it, and address probing to the account's
    owner (docs/security.md). Another ``actor`` (a moderator in the admin) is held to the
    moderation rule of bans and role changes: only root edits a staff account.
    """
    if actor is not None and actor.pk != user.pk:
        _check_may_moderate(actor=actor, target=user, what="edit the account of")
        actor_is_owner = False
    else:
        actor, actor_is_owner = user, True
    changes: dict[str, list] = {}
    new_username, new_email = user.username, user.email
    if username is not UNCHANGED and username != user.username:
        _check_unique(username=username, exclude_pk=user.pk)
        changes["username"] = [user.username, username]
        new_username = username
    if email is not UNCHANGED and (email or None) != user.email:
        new_email = email or None
        if actor_is_owner:
            _check_current_password(user=user, password=current_password, origin=origin)
        _check_unique(email=new_email, exclude_pk=user.pk)
        changes["email"] = [user.email, new_email]
    if not changes:
        return user
    try:
        with transaction.atomic():
            user.username, user.email = new_username, new_email
            user.save(update_fields=["username", "email"])
            audit_record(
                action=AuditAction.USER_UPDATE,
                origin=origin,
                user=actor,
                resource_type="user",
                resource_id=user.pk,
                details={"fields": sorted(changes)},
            )
    except IntegrityError as exc:
        user.refresh_from_db(fields=["username", "email"])
        raise _field_errors(next(iter(changes)), ["This value is taken."]) from exc
    return user


def _check_current_password(*, user: User, password: str | None, origin: Origin) -> None:
    if not password:
        raise _field_errors("current_password", ["Changing the email address needs your current password."])
    if not user.check_password(password):
        with transaction.atomic():
            audit_record(
                action=AuditAction.USER_UPDATE_REFUSED,
                origin=origin,
                user=user,
                resource_type="user",
                resource_id=user.pk,
                details={"reason": "wrong_password"},
            )
        raise _field_errors("current_password", ["The current password is wrong."])


# --- site roles and bans ----------------------------------------------------------------------------


def _check_may_moderate(
    *, actor: User | None, target: User, new_role: str | None = None, what: str = "change the role of"
) -> None:
    """Site moderation rules, for bans, role changes and edits of someone else's account
    (``what`` only words the refusal). ``actor`` None means an operator at the command line."""
    if actor is None:
        return
    if actor.role not in STAFF_ROLES:
        raise PermissionDenied("Only site admins can do this.")
    if actor.pk == target.pk:
        raise PermissionDenied("You cannot change your own role.")
    if actor.role != Role.ROOT and (target.role in STAFF_ROLES or new_role in STAFF_ROLES):
        raise PermissionDenied(f"Only root can {what} an admin.")


def user_set_role(*, actor: User | None, user: User, role: str, origin: Origin) -> User:
    """Change a user's global role (bans go through user_ban, which also records the reason)."""
    if role not in Role.values:
        raise InvalidInput(f"role: unknown role {role!r}.", details={"role": ["Unknown role."]})
    if role == Role.BANNED:
        return user_ban(actor=actor, user=user, reason="", origin=origin)
    _check_may_moderate(actor=actor, target=user, new_role=role)
    previous = user.role
    if previous == role:
        return user
    with transaction.atomic():
        user.role = role
        if previous == Role.BANNED:
            user.banned_reason = ""
        user.save(update_fields=["role", "banned_reason"])
        audit_record(
            action=AuditAction.USER_ROLE_CHANGE,
            origin=origin,
            user=actor,
            resource_type="user",
            resource_id=user.pk,
            details={"from": previous, "to": role},
        )
    return user


def user_ban(*, actor: User | None, user: User, reason: str, origin: Origin) -> User:
    """Ban a user site-wide: every session ends and the next request is refused."""
    _check_may_moderate(actor=actor, target=user, new_role=Role.BANNED)
    with transaction.atomic():
        previous = user.role
        user.role = Role.BANNED
        user.banned_reason = reason[:500]
        user.save(update_fields=["role", "banned_reason"])
        count = _sessions_revoke_all(user=user, reason="banned")
        audit_record(
            action=AuditAction.USER_BAN,
            origin=origin,
            user=actor,
            resource_type="user",
            resource_id=user.pk,
            details={"reason": reason[:500], "previous_role": previous, "sessions_revoked": count},
        )
    return user


def user_unban(*, actor: User | None, user: User, origin: Origin) -> User:
    """Lift a ban. The user comes back as an ordinary user, never with a staff role."""
    if user.role != Role.BANNED:
        return user
    _check_may_moderate(actor=actor, target=user, new_role=Role.USER)
    with transaction.atomic():
        user.role = Role.USER
        user.banned_reason = ""
        user.save(update_fields=["role", "banned_reason"])
        audit_record(
            action=AuditAction.USER_UNBAN,
            origin=origin,
            user=actor,
            resource_type="user",
            resource_id=user.pk,
        )
    return user


def user_create_root(*, username: str, password: str, email: str | None, origin: Origin) -> User:
    """Operator command: create a root account (password rule applies)."""
    email = email or None
    _check_unique(username=username, email=email)
    _check_password_rule(password, User(username=username, email=email), "password")
    with transaction.atomic():
        user = User.objects.create_user(username=username, password=password, email=email, role=Role.ROOT)
        audit_record(
            action=AuditAction.USER_CREATE_ROOT,
            origin=origin,
            user=None,
            resource_type="user",
            resource_id=user.pk,
        )
    return user


def sessions_purge_expired(*, keep_days: int = 7) -> int:
    """Delete sessions expired or revoked more than ``keep_days`` ago. Returns how many."""
    cutoff = timezone.now() - timedelta(days=keep_days)
    deleted, _ = AuthSession.objects.filter(
        models.Q(expires_at__lt=cutoff) | models.Q(revoked_at__lt=cutoff)
    ).delete()
    return deleted
