"""The effective-permission rule and the anti-escalation rules (docs/security.md, "What they
may do").

A :class:`RoomActor` (:func:`build_actor`, from the membership row apps.rooms.selectors finds:
``room_actor``, ``room_access``) is the one answer to "may this actor do this in this room":
``actor.can(perm)``, asked by the services for REST, the WebSocket consumer, the admin and the
commands alike. Pure functions over the rows: no queries here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from apps.core.errors import NotInRoom
from apps.permissions import flags
from apps.permissions.flags import Perm

if TYPE_CHECKING:  # for annotations only: the rules never query
    from django.contrib.auth.models import AnonymousUser

    from apps.accounts.models import User
    from apps.rooms.models import Room, RoomMember

CREATOR, ADMIN, MEMBER, GUEST = "creator", "admin", "member", "guest"
RANK = {GUEST: 0, MEMBER: 1, ADMIN: 2, CREATOR: 3}


@dataclass(frozen=True)
class RoomActor:
    """Who is acting in one room: the account (None for anonymous), its membership row there
    (None if it has none), and what that adds up to."""

    user: User | AnonymousUser | None
    member: RoomMember | None
    permissions: int
    rank: int  # RANK of the acting role; site admins act as creator
    is_site_admin: bool = False

    @property
    def is_member(self) -> bool:
        """An active member (guests included) or a site admin acting as one."""
        return self.is_site_admin or (self.member is not None and self.member.status == "active")

    @property
    def is_creator(self) -> bool:
        """The room's creator, by an active membership. A site admin acts with the creator's
        rights but is not the creator: rules that allow "creator or site admin" ask both."""
        return self.member is not None and self.member.role == CREATOR and self.member.status == "active"

    @property
    def account(self) -> User:
        """The acting account, for a service past its permission check (which only an account
        passes): the author of what it writes. Anything else is refused, never written."""
        from apps.accounts.models import User  # the rules import no models at import time

        if not isinstance(self.user, User):
            raise NotInRoom()
        return self.user

    def can(self, perm: int) -> bool:
        """May this actor do what ``perm`` (one bit or several, all required) allows?"""
        return (self.permissions & perm) == perm


def effective_permissions(*, room: Room, member: RoomMember | None) -> int:
    """creator: every bit; admin/member: (room default for the role | added) & ~removed, with the
    default read now so a changed room default reaches existing members; guest: the room's
    guest mask (with the member's overrides) capped to chat, emoji and the member list.
    Anything but an active membership holds nothing."""
    if member is None or member.status != "active":
        return flags.NONE
    if member.role == CREATOR:
        return flags.ALL_BITS
    added, removed = member.permissions_added, member.permissions_removed
    if member.role == ADMIN:
        base = room.admin_permissions
    elif member.role == MEMBER:
        base = room.member_permissions
    elif member.role == GUEST:
        return ((room.guest_permissions | added) & ~removed) & flags.GUEST_CAP
    else:
        return flags.NONE
    return ((base | added) & ~removed) & flags.ALL_BITS


def build_actor(*, user: User | AnonymousUser | None, room: Room, member: RoomMember | None) -> RoomActor:
    """The actor for ``user`` in ``room`` given their membership row (or None)."""
    if user is None or not getattr(user, "is_authenticated", False) or getattr(user, "is_banned", False):
        return RoomActor(user=None if user is None else user, member=None, permissions=flags.NONE, rank=-1)
    if getattr(user, "is_site_admin", False):
        return RoomActor(
            user=user, member=member, permissions=flags.ALL_BITS, rank=RANK[CREATOR], is_site_admin=True
        )
    if member is None or member.status != "active":
        return RoomActor(user=user, member=member, permissions=flags.NONE, rank=-1)
    return RoomActor(
        user=user,
        member=member,
        permissions=effective_permissions(room=room, member=member),
        rank=RANK.get(member.role, -1),
    )


# --- anti-escalation ---------------------------------------------------------------------------------


class EscalationError(Exception):
    """A member change the actor is not allowed to make. ``str()`` says why."""


def check_member_change(
    *, actor: RoomActor, target: RoomMember, new_role: str | None, added: int | None, removed: int | None
) -> None:
    """Rules for PATCH members/{user}: nobody acts on the creator or on themselves; only holders of
    MANAGE_ADMINS (and the creator) promote, demote or change the bits of admins; nobody grants or
    takes away a bit they do not hold; the target must rank below the actor."""
    if target.role == CREATOR:
        raise EscalationError("Nobody can change the room's creator.")
    if actor.user is not None and target.user_id == getattr(actor.user, "pk", None):
        raise EscalationError("You cannot change your own role or permissions.")
    if target.role == GUEST or new_role == GUEST:
        raise EscalationError("Guests' roles cannot be changed; they join as guests only.")
    if new_role is not None and new_role not in (ADMIN, MEMBER):
        raise EscalationError("The role must be admin or member.")
    touches_admin = target.role == ADMIN or new_role == ADMIN
    if touches_admin and not actor.can(Perm.MANAGE_ADMINS):
        raise EscalationError("Only holders of MANAGE_ADMINS can promote, demote or change admins.")
    if not touches_admin and not actor.can(Perm.MANAGE_ADMINS) and actor.rank <= RANK[MEMBER]:
        raise EscalationError("Only room admins can change members.")
    if actor.rank <= RANK.get(target.role, 0) and not actor.can(Perm.MANAGE_ADMINS):
        raise EscalationError("You can only change members ranked below you.")
    for label, bits in (("grant", added), ("take away", removed)):
        if bits and (bits & ~actor.permissions):
            missing = flags.names(bits & ~actor.permissions)
            raise EscalationError(f"You cannot {label} permissions you do not hold: {', '.join(missing)}.")
    if new_role is not None and new_role != target.role:
        # A promotion grants the new role's room default: those bits too must be the actor's.
        room = target.room
        base = room.admin_permissions if new_role == ADMIN else room.member_permissions
        after = (base | target.permissions_added) & ~target.permissions_removed & flags.ALL_BITS
        gained = after & ~effective_permissions(room=room, member=target)
        if gained & ~actor.permissions:
            missing = flags.names(gained & ~actor.permissions)
            raise EscalationError(f"This role would grant permissions you do not hold: {', '.join(missing)}.")


def check_moderation(*, actor: RoomActor, target: RoomMember, perm: int) -> None:
    """Kick and ban (and their undoing): the actor needs ``perm`` and must outrank the target;
    nobody acts on the creator or on themselves."""
    if not actor.can(perm):
        raise EscalationError(f"This needs {flags.names(perm)[0]}.")
    if target.role == CREATOR:
        raise EscalationError("Nobody can act on the room's creator.")
    if actor.user is not None and target.user_id == getattr(actor.user, "pk", None):
        raise EscalationError("You cannot do this to yourself.")
    if RANK.get(target.role, 0) >= actor.rank:
        raise EscalationError("You can only act on members ranked below you.")


def check_settings_masks(*, actor: RoomActor, before: dict[str, int], after: dict[str, int]) -> None:
    """Changing a room default is granting (or taking) bits to everyone of that role: the same
    rule applies, you cannot move a bit you do not hold. The admin default is MANAGE_ADMINS'
    business."""
    for field, new in after.items():
        changed = new ^ before[field]
        if not changed:
            continue
        if field == "admin_permissions" and not actor.can(Perm.MANAGE_ADMINS):
            raise EscalationError("Only holders of MANAGE_ADMINS can change the admin defaults.")
        if changed & ~actor.permissions:
            missing = flags.names(changed & ~actor.permissions)
            raise EscalationError(f"You cannot change permissions you do not hold: {', '.join(missing)}.")
