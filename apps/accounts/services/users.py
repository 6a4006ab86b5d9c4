"""A user's own account: registration, the password change and profile edits (a moderator's
edit of someone else's profile goes through the moderation rule, ``moderation``)."""

from __future__ import annotations

from enum import Enum
from typing import Final

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.core.cache import caches
from django.db import IntegrityError, transaction

from apps.accounts.models import Role, User
from apps.accounts.services import email as _email
from apps.accounts.services._common import TokenPair, _check_password_rule, _check_unique, _field_errors
from apps.accounts.services.moderation import _check_may_moderate
from apps.accounts.services.sessions import _session_open, _sessions_revoke_all
from apps.audit.actions import AuditAction
from apps.audit.services import audit_record
from apps.core.context import Origin
from apps.core.errors import InvalidInput
from apps.core.redis import REDIS_DOWN_ERRORS


def user_register(
    *, username: str, password: str, email: str | None, origin: Origin
) -> tuple[User, TokenPair | None]:
    """Create an account. Returns the user and a token pair, or no pair if it is pending (it
    awaits review, or e-mail verification when that is mandatory).

    The answer must not tell whether ``email`` belongs to another account (docs/security.md,
    "Accounts and staff"). The address stays with its owner, who is told by mail that someone
    tried (unless verification is off). With optional (or no) verification the new account is
    created without an address; with mandatory verification no account is created at all and
    the caller gets an unsaved pending user that answers like a created one: the same hashing
    work is spent, and the username is held for as long as a verification link lives, so
    trying it again answers "taken" as it would after a real sign-up (``_username_reserved``).
    Usernames are public, so a taken one is still refused by name.
    """
    email = User.objects.normalize_email(email) or None
    mandatory = settings.ACCOUNT_EMAIL_VERIFICATION == "mandatory"
    if mandatory and email is None:
        raise _field_errors("email", ["An email address is required to sign up."])
    _check_unique(username=username)
    if _username_reserved(username):
        raise _field_errors("username", ["This username is taken."])
    candidate = User(username=username, email=email)
    _check_password_rule(password, candidate, "password")
    pending = settings.ACCOUNT_REVIEW_REQUIRED or mandatory
    role = Role.PENDING if pending else Role.USER
    owner_email = _owner_email(email)
    if owner_email is not None and mandatory:
        return _register_known_address(
            username=username, password=password, owner_email=owner_email, origin=origin
        ), None
    for _attempt in range(2):
        try:
            return _register_create(
                username=username,
                password=password,
                email=email,
                owner_email=owner_email,
                role=role,
                origin=origin,
            )
        except IntegrityError as exc:
            # Lost a race with another registration of the same name or address.
            if (
                owner_email is not None
                or User.objects.with_ci().filter(username_ci=username.lower()).exists()
            ):
                raise _field_errors("username", ["This username is taken."]) from exc
            # The address's unique index refused it: someone holds it now.
            owner_email = _owner_email(email) or email
            if mandatory and owner_email is not None:
                return _register_known_address(
                    username=username, password=password, owner_email=owner_email, origin=origin
                ), None
    raise AssertionError("unreachable")


def _register_create(
    *, username: str, password: str, email: str | None, owner_email: str | None, role: str, origin: Origin
) -> tuple[User, TokenPair | None]:
    """The account, its audit event and its first mail, in one transaction. An address that has
    an owner (``owner_email``) is not stored: the owner is told instead."""
    with transaction.atomic():
        user = User.objects.create_user(
            username=username, password=password, email=None if owner_email is not None else email, role=role
        )
        audit_record(
            action=AuditAction.USER_REGISTER,
            origin=origin,
            user=user,
            resource_type="user",
            resource_id=user.pk,
            details={"email_taken": True} if owner_email is not None else None,
        )
        if owner_email is not None:
            _email._account_exists_notice(email=owner_email)
        else:
            _email._address_set_after_signup(user=user)
        pair = _session_open(user=user, origin=origin) if role == Role.USER else None
    return user, pair


def _owner_email(email: str | None) -> str | None:
    """The address as the account that has it stores it (matched in any case), or None."""
    if email is None:
        return None
    found: str | None = (
        User.objects.with_ci().filter(email_ci=email.lower()).values_list("email", flat=True).first()
    )
    return found


def _reserved_key(username: str) -> str:
    return f"register:reserved:{username.lower()}"


def _username_reserved(username: str) -> bool:
    try:
        return bool(caches["default"].get(_reserved_key(username)))
    except REDIS_DOWN_ERRORS:
        return False  # best effort: without Redis, the residual of _register_known_address


def _register_known_address(*, username: str, password: str, owner_email: str, origin: Origin) -> User:
    """Mandatory verification, an address that has an owner: no account, the owner is told, and
    the answer is that of a new pending account (``user_register``)."""
    make_password(password)  # the hash a created account would have cost
    try:
        timeout = settings.ACCOUNT_EMAIL_CONFIRMATION_EXPIRE_DAYS * 24 * 3600
        caches["default"].add(_reserved_key(username), 1, timeout)
    except REDIS_DOWN_ERRORS:
        pass
    with transaction.atomic():
        audit_record(
            action=AuditAction.USER_REGISTER,
            origin=origin,
            resource_type="user",
            details={"email_taken": True, "created": False, "username": username},
        )
        _email._account_exists_notice(email=owner_email)
    # No address on it: the caller shows the one asked for (``email_as_answered``).
    return User(username=username, email=None, role=Role.PENDING)


def email_as_answered(email: str | None) -> str | None:
    """The address a registration answer shows: the one asked for, whether or not it was stored
    (``user_register``), normalized as a stored one would be."""
    return User.objects.normalize_email(email) or None


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


class _Unchanged(Enum):
    """The type of ``UNCHANGED``: a one-member enum, so a type checker narrows it away with ``is``."""

    UNCHANGED = "unchanged"


UNCHANGED: Final = _Unchanged.UNCHANGED


def user_update_profile(
    *,
    user: User,
    origin: Origin,
    actor: User | None = None,
    username: str | _Unchanged = UNCHANGED,
    email: str | _Unchanged | None = UNCHANGED,
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
    changes: dict[str, list[str | None]] = {}
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
            if "email" in changes:
                _email._address_changed(user=user)
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
