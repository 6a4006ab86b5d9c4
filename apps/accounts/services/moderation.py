"""Site moderation: global roles, bans and unbans (with the rule of who may do them to whom),
and the operator's creation of a root account."""

from __future__ import annotations

from django.db import transaction

from apps.accounts.models import STAFF_ROLES, Role, User
from apps.accounts.services._common import _check_password_rule, _check_unique
from apps.accounts.services.sessions import _sessions_revoke_all
from apps.audit.actions import AuditAction
from apps.audit.services import audit_record
from apps.core.context import Origin
from apps.core.errors import InvalidInput, PermissionDenied


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
