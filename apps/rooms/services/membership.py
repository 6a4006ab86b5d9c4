"""Who is in a room: join and leave, guests, invites, and what members do to each other (change,
kick, ban, unban, approve)."""

from __future__ import annotations

import ipaddress
import unicodedata
from datetime import timedelta
from typing import Any

from django.conf import settings as django_settings
from django.contrib.auth.hashers import check_password
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.crypto import salted_hmac

from apps.accounts.models import AuthSession, User
from apps.accounts.tokens import mint_guest
from apps.audit.actions import AuditAction
from apps.core import events, realtime
from apps.core.context import Origin
from apps.core.errors import (
    InvalidInput,
    NotFound,
    NotInRoom,
    PermissionDenied,
    RoomPasswordRequired,
    RoomPasswordWrong,
)
from apps.core.ids import new_id
from apps.permissions.flags import Perm
from apps.permissions.rules import (
    EscalationError,
    RoomActor,
    build_actor,
    check_member_change,
    check_moderation,
)
from apps.rooms.models import Invite, MemberStatus, Room, RoomMember, RoomRole, invite_ref
from apps.rooms.serializers import MemberSerializer
from apps.rooms.services._common import (
    _audit,
    _check_mask,
    _escalation,
    _invalid,
    _lock_room,
    _require_open,
    require,
)


def _announce_member(room: Room, member: RoomMember) -> None:
    realtime.room_event(room.pk, events.member_updated(member=MemberSerializer(member).data))


def _announce_removed(room: Room, user_id: str, reason: str) -> None:
    realtime.room_event(room.pk, events.member_removed(user_id=user_id, reason=reason))


def _join_pass(
    *, user: User, room: Room, password: str | None, invite_code: str | None, origin: Origin
) -> Invite | None:
    """What lets ``user`` in: a usable invite (returned), else the room's password if it has
    one (None). A wrong password is audited and refused."""
    if invite_code:
        invite = Invite.objects.filter(code=invite_code, room=room).first()
        if invite is None or not invite.usable():
            raise PermissionDenied("This invite is not valid (expired, used up or for another room).")
        return invite
    if room.has_password:
        if not password:
            raise RoomPasswordRequired()
        if not check_password(password, room.password):
            with transaction.atomic():
                _audit(
                    AuditAction.MEMBER_JOIN_PASSWORD_WRONG,
                    actor_user=user,
                    origin=origin,
                    room=room,
                    resource_type="room",
                    resource_id=room.pk,
                )
            raise RoomPasswordWrong()
    return None


def _use_invite(invite: Invite) -> None:
    # One conditional UPDATE: two joins racing for the last use cannot both get it.
    used = (
        Invite.objects.filter(pk=invite.pk)
        .filter(Q(max_uses__isnull=True) | Q(uses__lt=F("max_uses")))
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
        .update(uses=F("uses") + 1)
    )
    if not used:
        raise PermissionDenied("This invite was just used up.")


def member_join(
    *, user: User, room: Room, password: str | None = None, invite_code: str | None = None, origin: Origin
) -> tuple[RoomMember, bool]:
    """Join ``room``. Returns (member, created). A password room needs its password or a valid
    invite; an approval room leaves the member pending unless invited. Banned members stay out."""
    if user.is_guest:
        raise PermissionDenied("Guests join through rooms/{id}/guest.")
    _require_open(room)
    existing = RoomMember.objects.filter(room=room, user=user).first()
    if existing is not None and existing.status == MemberStatus.BANNED:
        raise PermissionDenied("You are banned from this room.")
    if existing is not None and existing.status in (MemberStatus.ACTIVE, MemberStatus.PENDING):
        return existing, False
    invite = _join_pass(user=user, room=room, password=password, invite_code=invite_code, origin=origin)
    status = MemberStatus.PENDING if (room.join_requires_approval and invite is None) else MemberStatus.ACTIVE
    try:
        with transaction.atomic():
            if invite is not None:
                _use_invite(invite)
            member = RoomMember.objects.create(room=room, user=user, role=RoomRole.MEMBER, status=status)
            _audit(
                AuditAction.MEMBER_JOIN if status == MemberStatus.ACTIVE else AuditAction.MEMBER_REQUEST,
                actor_user=user,
                origin=origin,
                room=room,
                resource_type="member",
                resource_id=user.pk,
                invite=invite_ref(invite.code) if invite else None,  # never the code (models.invite_ref)
            )
    except IntegrityError:
        # Another join of the same user won (the unique membership), or the room was deleted
        # meanwhile (the membership's room is gone at commit).
        existing = RoomMember.objects.filter(room=room, user=user).first()
        if existing is None:
            raise NotFound("No such room.") from None
        return existing, False
    return member, True


def member_leave(*, user: User, room: Room, origin: Origin) -> None:
    """Leave a room. The creator cannot leave (delete the room instead); a ban is not undone by
    leaving."""
    member = RoomMember.objects.filter(room=room, user=user).first()
    if member is None or member.status == MemberStatus.BANNED:
        raise NotInRoom()
    if member.role == RoomRole.CREATOR:
        raise PermissionDenied("The creator cannot leave; delete the room instead.")
    with transaction.atomic():
        _lock_room(room)  # NotFound if the room was deleted meanwhile
        member.delete()
        _announce_removed(room, user.pk, "left")
        _audit(
            AuditAction.MEMBER_LEAVE,
            actor_user=user,
            origin=origin,
            room=room,
            resource_type="member",
            resource_id=user.pk,
        )


GUEST_BAN_SALT = "synctv.rooms.guest-ban-address"


def guest_address_keys(ip: str | None) -> list[str]:
    """What a guest ban stores and matches for a client address: a keyed hash (SECRET_KEY; a ban
    row keeps no address in clear) of the address, or of its /64 for IPv6, where one host or
    home holds a whole /64 and picks new addresses at will. The first key is the current
    secret's; the others are SECRET_KEY_FALLBACKS', so rotating the secret keeps bans working."""
    try:
        address = ipaddress.ip_address(ip or "")
    except ValueError:
        return []
    if address.version == 6:
        mapped = address.ipv4_mapped
        network = str(mapped) if mapped else str(ipaddress.ip_network(f"{address}/64", strict=False))
    else:
        network = str(address)
    secrets = [django_settings.SECRET_KEY, *getattr(django_settings, "SECRET_KEY_FALLBACKS", [])]
    return [
        salted_hmac(GUEST_BAN_SALT, network, secret=key, algorithm="sha256").hexdigest() for key in secrets
    ]


def _check_guest_name(name: str) -> None:
    """A guest may not take a registered user's username (compared case- and width-blind): the
    badge marks guests, and this keeps "alice (guest)" from sitting next to the real alice."""
    # Format characters (zero-width spaces and joiners, direction marks) are invisible: without
    # them "al\u200bice" is "alice" on the screen, so it must be here too.
    visible = "".join(c for c in name if unicodedata.category(c) != "Cf")
    folded = unicodedata.normalize("NFKC", visible).casefold().strip()
    if User.objects.with_ci().filter(username_ci=folded, is_guest=False).exists():
        raise _invalid("name", "This name belongs to a registered user; choose another.")


def guest_join(*, room: Room, name: str, origin: Origin) -> tuple[RoomMember, str]:
    """A guest account bound to this room and a 4-hour guest token. Only rooms that allow guests
    and have no password, and not from an address a guest was banned from this room at."""
    _require_open(room)
    if not room.allow_guests:
        raise PermissionDenied("This room does not allow guests.")
    if room.has_password:
        raise PermissionDenied("Guests cannot join a room with a password.")
    if room.join_requires_approval:
        raise PermissionDenied("This room approves its members; guests cannot join it.")
    keys = guest_address_keys(origin.ip)
    if (
        keys
        and RoomMember.objects.filter(room=room, status=MemberStatus.BANNED, ban_address__in=keys).exists()
    ):
        # The same answer as a banned member's join: a ban on a guest is a ban on where it came
        # from (member_ban), or a new guest name would undo it.
        raise PermissionDenied("You are banned from this room.")
    _check_guest_name(name)
    with transaction.atomic():
        _lock_room(room)  # NotFound if the room was deleted meanwhile
        guest = User(username=f"guest-{new_id()}", display_name=name, is_guest=True)
        guest.set_unusable_password()
        guest.save(force_insert=True)
        member = RoomMember.objects.create(room=room, user=guest, role=RoomRole.GUEST)
        expires = timezone.now() + django_settings.GUEST_TOKEN_LIFETIME
        session = AuthSession.objects.create(
            user=guest,
            refresh_jti="",
            expires_at=expires,
            ip=origin.ip,
            user_agent=origin.user_agent,
            node_id=django_settings.SYNCTV_NODE_ID,
        )
        token = mint_guest(user=guest, session_id=session.pk, room_id=room.pk)
        _audit(
            AuditAction.MEMBER_GUEST_JOIN,
            actor_user=guest,
            origin=origin,
            room=room,
            resource_type="member",
            resource_id=guest.pk,
            name=name,
        )
    return member, str(token)


def invite_create(
    *, actor: RoomActor, room: Room, max_uses: int | None, expires_in: int | None, origin: Origin
) -> Invite:
    _require_open(room)
    require(actor, Perm.INVITE_MEMBERS)
    with transaction.atomic():
        _lock_room(room)  # NotFound if the room was deleted meanwhile
        invite = Invite.objects.create(
            room=room,
            created_by=actor.account,
            max_uses=max_uses,
            expires_at=timezone.now() + timedelta(seconds=expires_in) if expires_in else None,
        )
        _audit(
            AuditAction.INVITE_CREATE,
            actor_user=actor.user,
            origin=origin,
            room=room,
            resource_type="invite",
            resource_id=invite_ref(invite.code),  # never the code: audit readers need not be inviters
            max_uses=max_uses,
            expires_in=expires_in,
        )
    return invite


def _grants(member: RoomMember) -> dict[str, Any]:
    """A member's role and overrides, as member_update audits them before and after."""
    return {"role": member.role, "added": member.permissions_added, "removed": member.permissions_removed}


def member_update(
    *,
    actor: RoomActor,
    room: Room,
    target: RoomMember,
    role: str | None = None,
    permissions_added: int | None = None,
    permissions_removed: int | None = None,
    origin: Origin,
) -> RoomMember:
    """Change a member's role or per-member overrides under the anti-escalation rules."""
    _require_open(room)
    if not actor.is_member:
        raise NotInRoom()
    if role is None and permissions_added is None and permissions_removed is None:
        raise InvalidInput("Nothing to change: give role, permissions_added or permissions_removed.")
    if permissions_added is not None:
        permissions_added = _check_mask("permissions_added", permissions_added)
    if permissions_removed is not None:
        permissions_removed = _check_mask("permissions_removed", permissions_removed)
    # Only the bits that actually change count as granting/taking.
    added_delta = None if permissions_added is None else permissions_added ^ target.permissions_added
    removed_delta = None if permissions_removed is None else permissions_removed ^ target.permissions_removed
    try:
        check_member_change(
            actor=actor, target=target, new_role=role, added=added_delta, removed=removed_delta
        )
    except EscalationError as exc:
        raise _escalation(exc) from exc
    if target.status != MemberStatus.ACTIVE:
        raise InvalidInput("Only active members can be changed; approve or unban first.")
    before = _grants(target)
    with transaction.atomic():
        _lock_room(room)  # NotFound if the room was deleted meanwhile
        if role is not None:
            target.role = role
        if permissions_added is not None:
            target.permissions_added = permissions_added
        if permissions_removed is not None:
            target.permissions_removed = permissions_removed
        target.save(update_fields=["role", "permissions_added", "permissions_removed", "updated_at"])
        _announce_member(room, target)
        after = _grants(target)
        action = (
            AuditAction.MEMBER_ROLE_CHANGE
            if before["role"] != after["role"]
            else AuditAction.MEMBER_PERMISSIONS_CHANGE
        )
        _audit(
            action,
            actor_user=actor.user,
            origin=origin,
            room=room,
            resource_type="member",
            resource_id=target.user_id,
            before=before,
            after=after,
        )
    return target


def _require_moderation(actor: RoomActor, target: RoomMember, perm: int) -> None:
    """Kick/ban/unban rules (apps.permissions.rules.check_moderation) as API errors."""
    try:
        check_moderation(actor=actor, target=target, perm=perm)
    except EscalationError as exc:
        if not actor.is_member:
            raise NotInRoom() from exc
        raise _escalation(exc) from exc


def member_kick(*, actor: RoomActor, room: Room, target: RoomMember, origin: Origin) -> None:
    _require_moderation(actor, target, Perm.KICK_MEMBERS)
    if target.status == MemberStatus.BANNED:
        raise InvalidInput("This member is banned; unban them instead.")
    with transaction.atomic():
        _lock_room(room)  # NotFound if the room was deleted meanwhile
        target.delete()
        _announce_removed(room, target.user_id, "kicked")
        _audit(
            AuditAction.MEMBER_KICK,
            actor_user=actor.user,
            origin=origin,
            room=room,
            resource_type="member",
            resource_id=target.user_id,
        )


def _guest_ban_address(target: RoomMember) -> str:
    """A guest is a name and a token: banning only those, the same person is back in a second as
    a new guest. A guest's ban also covers the address it joined from (its one session's, the
    client address guest_join saw), until the unban deletes the row. "" for registered users."""
    if not target.user.is_guest:
        return ""
    sessions = AuthSession.objects.filter(user_id=target.user_id).order_by("-created_at")
    keys = guest_address_keys(sessions.values_list("ip", flat=True).first())
    return keys[0] if keys else ""


def member_ban(
    *, actor: RoomActor, room: Room, target: RoomMember, reason: str = "", origin: Origin
) -> RoomMember:
    _require_moderation(actor, target, Perm.BAN_MEMBERS)
    ban_address = _guest_ban_address(target)
    with transaction.atomic():
        _lock_room(room)  # NotFound if the room was deleted meanwhile
        target.status = MemberStatus.BANNED
        _announce_removed(room, target.user_id, "banned")
        target.ban_reason = reason[:500]
        target.ban_address = ban_address
        target.save(update_fields=["status", "ban_reason", "ban_address", "updated_at"])
        _audit(
            AuditAction.MEMBER_BAN,
            actor_user=actor.user,
            origin=origin,
            room=room,
            resource_type="member",
            resource_id=target.user_id,
            reason=reason[:500],
            address_ban=bool(ban_address),  # that the guest's address is banned too, never the address
        )
    return target


def member_unban(*, actor: RoomActor, room: Room, target: RoomMember, origin: Origin) -> None:
    """Lift a room ban: the row goes, so the user may join again like anyone. Undoing a ban has
    the ban's rules: BAN_MEMBERS and a target ranked below the actor (an admin cannot lift the
    creator's ban of another admin)."""
    if not actor.is_member:
        raise NotInRoom()
    _require_moderation(actor, target, Perm.BAN_MEMBERS)
    if target.status != MemberStatus.BANNED:
        raise InvalidInput("This member is not banned.")
    with transaction.atomic():
        _lock_room(room)  # NotFound if the room was deleted meanwhile
        target.delete()
        _audit(
            AuditAction.MEMBER_UNBAN,
            actor_user=actor.user,
            origin=origin,
            room=room,
            resource_type="member",
            resource_id=target.user_id,
        )


def member_approve(*, actor: RoomActor, room: Room, target: RoomMember, origin: Origin) -> RoomMember:
    if not actor.is_member:
        raise NotInRoom()
    if not (actor.can(Perm.KICK_MEMBERS) or actor.can(Perm.BAN_MEMBERS)):
        raise PermissionDenied("This needs KICK_MEMBERS or BAN_MEMBERS.")
    if target.status != MemberStatus.PENDING:
        raise InvalidInput("This member is not waiting for approval.")
    with transaction.atomic():
        _lock_room(room)  # NotFound if the room was deleted meanwhile
        target.status = MemberStatus.ACTIVE
        target.save(update_fields=["status", "updated_at"])
        _audit(
            AuditAction.MEMBER_APPROVE,
            actor_user=actor.user,
            origin=origin,
            room=room,
            resource_type="member",
            resource_id=target.user_id,
        )
    return target


def actor_for_user(*, user: User | None, room: Room) -> RoomActor:
    """For admin actions and commands: ``user`` as an actor in ``room`` (site admins act as creator)."""
    member = RoomMember.objects.filter(room=room, user=user).first() if user is not None else None
    return build_actor(user=user, room=room, member=member)
