"""A user's own account: registration, the password change and profile edits (a moderator's
edit of someone else's profile goes through the moderation rule, ``moderation``)."""

from __future__ import annotations

from enum import Enum
from typing import Final

from django.conf import settings
from django.db import IntegrityError, transaction

from apps.accounts.models import Role, User
from apps.accounts.services._common import TokenPair, _check_password_rule, _check_unique, _field_errors
from apps.accounts.services.moderation import _check_may_moderate
from apps.accounts.services.sessions import _session_open, _sessions_revoke_all
from apps.audit.actions import AuditAction
from apps.audit.services import audit_record
from apps.core.context import Origin
from apps.core.errors import InvalidInput


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
