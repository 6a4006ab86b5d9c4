"""What every room service shares: the permission check, the row lock, the audit call and the
errors they raise. Private to apps.rooms.services."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser

from apps.accounts.models import User
from apps.audit.actions import AuditAction
from apps.audit.models import AuditEvent
from apps.audit.services import audit_record
from apps.core.context import Origin
from apps.core.errors import InvalidInput, NotFound, NotInRoom, PermissionDenied, RoomClosed
from apps.permissions import flags
from apps.permissions.rules import EscalationError, RoomActor
from apps.rooms.models import Room


def _invalid(field: str, message: str) -> InvalidInput:
    return InvalidInput(f"{field}: {message}", details={field: [message]})


def require(actor: RoomActor, perm: int) -> None:
    """Raise unless ``actor`` holds every bit of ``perm`` (not_in_room for outsiders)."""
    if not actor.is_member:
        raise NotInRoom()
    if not actor.can(perm):
        raise PermissionDenied(f"This needs {', '.join(flags.names(perm))}.")


def _require_open(room: Room) -> None:
    if room.is_closed:
        raise RoomClosed()


def _escalation(exc: EscalationError) -> PermissionDenied:
    return PermissionDenied(str(exc))


def _audit(
    action: AuditAction,
    *,
    actor_user: User | AnonymousUser | None,
    origin: Origin,
    room: Room,
    resource_type: str,
    resource_id: object,
    **details: Any,
) -> AuditEvent:
    return audit_record(
        action=action,
        origin=origin,
        user=actor_user,
        resource_type=resource_type,
        resource_id=str(resource_id),
        room_id=room.pk,
        details=details,
    )


def _lock_room(room: Room) -> Room:
    """Lock the room's row (the order of every room write: the room first, the audit chain
    last) and return it fresh. NotFound when it is gone: a delete that won the race for the row
    leaves nothing to write to, and the write must say so rather than fail at commit."""
    locked = Room.objects.select_for_update().filter(pk=room.pk).first()
    if locked is None:
        raise NotFound("No such room.")
    return locked


def _check_mask(field: str, value: Any) -> int:
    if not flags.is_valid_mask(value):
        raise _invalid(field, f"A permission mask: an integer from 0 to {flags.ALL_BITS}.")
    return int(value)
