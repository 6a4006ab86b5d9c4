"""Rooms themselves: create, update (info and settings), delete, close and reopen."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.hashers import make_password
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import User
from apps.audit.actions import AuditAction
from apps.core import events, realtime
from apps.core.context import Origin
from apps.core.errors import PermissionDenied
from apps.permissions.flags import Perm
from apps.permissions.rules import EscalationError, RoomActor, check_settings_masks
from apps.rooms.models import PlaybackState, Room, RoomMember, RoomRole
from apps.rooms.serializers import RoomSerializer
from apps.rooms.services._common import _audit, _check_mask, _escalation, _lock_room, _require_open, require

MASK_FIELDS = ("member_permissions", "admin_permissions", "guest_permissions")
SETTING_FIELDS = ("hidden", "allow_guests", "join_requires_approval", *MASK_FIELDS)


def room_create(
    *,
    creator: User,
    name: str,
    description: str = "",
    password: str = "",
    settings: dict[str, Any] | None = None,
    origin: Origin,
) -> Room:
    """Create a room; the caller becomes its creator (a member with every bit)."""
    if creator.is_guest or creator.is_banned:
        raise PermissionDenied("Only registered users can create rooms.")
    settings = settings or {}
    room = Room(name=name, description=description, creator=creator)
    if password:
        room.password = make_password(password)
    for field in SETTING_FIELDS:
        if field in settings:
            value = settings[field]
            setattr(room, field, _check_mask(field, value) if field in MASK_FIELDS else bool(value))
    with transaction.atomic():
        room.save(force_insert=True)
        RoomMember.objects.create(room=room, user=creator, role=RoomRole.CREATOR)
        PlaybackState.objects.create(room=room)
        _audit(
            AuditAction.ROOM_CREATE,
            actor_user=creator,
            origin=origin,
            room=room,
            resource_type="room",
            resource_id=room.pk,
            name=name,
            has_password=bool(password),
        )
    return room


def room_update(*, actor: RoomActor, room: Room, changes: dict[str, Any], origin: Origin) -> Room:
    """PATCH a room. Name, description and password need EDIT_ROOM_INFO; settings need
    EDIT_ROOM_SETTINGS, and moving a permission default is granting: only bits you hold."""
    _require_open(room)
    info = {k: changes[k] for k in ("name", "description", "password") if k in changes}
    settings = changes.get("settings") or {}
    if info:
        require(actor, Perm.EDIT_ROOM_INFO)
    if settings:
        require(actor, Perm.EDIT_ROOM_SETTINGS)
    if not info and not settings:
        if not (actor.can(Perm.EDIT_ROOM_INFO) or actor.can(Perm.EDIT_ROOM_SETTINGS)):
            require(actor, Perm.EDIT_ROOM_INFO)
        return room
    with transaction.atomic():
        room = _lock_room(room)  # NotFound if a delete won the race for the row
        before_masks = {f: getattr(room, f) for f in MASK_FIELDS}
        after_masks = {f: _check_mask(f, settings[f]) for f in MASK_FIELDS if f in settings}
        try:
            check_settings_masks(actor=actor, before=before_masks, after=after_masks)
        except EscalationError as exc:
            raise _escalation(exc) from exc
        changed: dict[str, Any] = {}
        if "name" in info:
            changed["name"] = [room.name, info["name"]]
            room.name = info["name"]
        if "description" in info:
            changed["description"] = True
            room.description = info["description"]
        if "password" in info:
            changed["password"] = "set" if info["password"] else "removed"
            room.password = make_password(info["password"]) if info["password"] else ""
        for field in SETTING_FIELDS:
            if field in settings:
                value = after_masks[field] if field in MASK_FIELDS else bool(settings[field])
                if getattr(room, field) != value:
                    changed[field] = [getattr(room, field), value]
                    setattr(room, field, value)
        room.save()
        realtime.room_event(room.pk, events.room_updated(room=RoomSerializer(room).data))
        action = AuditAction.ROOM_SETTINGS_CHANGE if settings else AuditAction.ROOM_UPDATE
        _audit(
            action,
            actor_user=actor.user,
            origin=origin,
            room=room,
            resource_type="room",
            resource_id=room.pk,
            changes=changed,
        )
    return room


def room_delete(*, actor: RoomActor, room: Room, origin: Origin) -> None:
    """Delete a room: its creator or a site admin only."""
    if not (actor.is_creator or actor.is_site_admin):
        raise PermissionDenied("Only the creator or a site admin can delete a room.")
    with transaction.atomic():
        # The order of every audited write: the room's row first, the audit chain last. Appending
        # first held the chain lock (every audited write of every room takes turns on it) while
        # this waited for the room's row, which a PATCH holding it and waiting for the chain
        # deadlocked with, and through the whole cascade (a 1,000-movie room's rows and their
        # django-auditlog entries). Now the chain lock is held for the append and the commit only.
        locked = _lock_room(room)  # NotFound if a concurrent delete won
        name = locked.name
        locked.delete()  # the cascade (members, movies, playback, chat, invites); `room` keeps its pk
        realtime.room_event(room.pk, events.room_closed(reason="room_deleted"))
        _audit(
            AuditAction.ROOM_DELETE,
            actor_user=actor.user,
            origin=origin,
            room=room,
            resource_type="room",
            resource_id=room.pk,
            name=name,
        )


def room_set_closed(*, actor: RoomActor, room: Room, closed: bool, origin: Origin) -> Room:
    """Close (read-only, unlisted, no joins) or reopen a room: creator or site admin."""
    if not (actor.is_creator or actor.is_site_admin):
        raise PermissionDenied("Only the creator or a site admin can close a room.")
    with transaction.atomic():
        _lock_room(room)  # NotFound if the room was deleted meanwhile
        room.closed_at = timezone.now() if closed else None
        if closed:
            realtime.room_event(room.pk, events.room_closed(reason="room_closed"))
        room.save(update_fields=["closed_at", "updated_at"])
        _audit(
            AuditAction.ROOM_CLOSE if closed else AuditAction.ROOM_REOPEN,
            actor_user=actor.user,
            origin=origin,
            room=room,
            resource_type="room",
            resource_id=room.pk,
        )
    return room
