"""Room writes: rooms, membership, invites, playlist, playback.

Keyword-only, one transaction each, the audit event in that transaction. Every function that
takes ``actor`` (a :class:`~apps.permissions.rules.RoomActor`) checks the actor's right itself
through apps.permissions; nothing here trusts the caller to have checked.
"""

from __future__ import annotations

import ipaddress
import unicodedata
from datetime import timedelta
from typing import Any

from django.conf import settings as django_settings
from django.contrib.auth.hashers import check_password, make_password
from django.db import IntegrityError, transaction
from django.db.models import F, Max, Q
from django.utils import timezone
from django.utils.crypto import salted_hmac
from rest_framework.fields import DateTimeField

from apps.accounts.models import AuthSession, User
from apps.accounts.tokens import mint_guest
from apps.audit.actions import AuditAction
from apps.audit.services import audit_record
from apps.core import events, realtime, rows
from apps.core.context import Origin
from apps.core.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    NotInRoom,
    PermissionDenied,
    RoomClosed,
    RoomPasswordRequired,
    RoomPasswordWrong,
)
from apps.core.ids import new_id
from apps.core.netguard import validate_media_url
from apps.permissions import flags
from apps.permissions.flags import Perm
from apps.permissions.rules import (
    EscalationError,
    RoomActor,
    build_actor,
    check_member_change,
    check_moderation,
    check_settings_masks,
)
from apps.rooms.messages import UNSET, Unset
from apps.rooms.models import (
    Invite,
    MemberStatus,
    Movie,
    MovieType,
    PlaybackState,
    Room,
    RoomMember,
    RoomRole,
    invite_ref,
)
from apps.rooms.serializers import MemberSerializer, RoomSerializer, user_ref

# The columns a playback change writes: all but the room.
PLAYBACK_COLUMNS = ("movie", "playing", "position", "rate", "updated_at", "version")
MAX_MOVIES_PER_ROOM = 1000
MASK_FIELDS = ("member_permissions", "admin_permissions", "guest_permissions")
SETTING_FIELDS = ("hidden", "allow_guests", "join_requires_approval", *MASK_FIELDS)


# --- helpers -------------------------------------------------------------------------------------


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
    action: AuditAction, *, actor_user, origin: Origin, room: Room, resource_type: str, resource_id, **details
):
    return audit_record(
        action=action,
        origin=origin,
        user=actor_user,
        resource_type=resource_type,
        resource_id=str(resource_id),
        room_id=room.pk,
        details=details,
    )


def _bump_playlist(room: Room) -> None:
    Room.objects.filter(pk=room.pk).update(playlist_version=F("playlist_version") + 1)
    realtime.room_event(room.pk, events.playlist())


def _announce_playback(room: Room, state: PlaybackState, actor_user) -> None:
    """After commit, every member on every node gets the new state (position at server_time)."""
    from apps.rooms.selectors import playback_view

    by = user_ref(actor_user) if getattr(actor_user, "pk", None) else None
    realtime.room_event(room.pk, events.playback(state=events.playback_state(playback_view(state)), by=by))


def _announce_playback_reset(room: Room, actor_user) -> None:
    state = PlaybackState.objects.filter(room=room).first()
    if state is not None:
        _announce_playback(room, state, actor_user)


def _announce_member(room: Room, member: RoomMember) -> None:
    realtime.room_event(room.pk, events.member_updated(member=MemberSerializer(member).data))


def _announce_removed(room: Room, user_id: str, reason: str) -> None:
    realtime.room_event(room.pk, events.member_removed(user_id=user_id, reason=reason))


def _check_mask(field: str, value: Any) -> int:
    if not flags.is_valid_mask(value):
        raise _invalid(field, f"A permission mask: an integer from 0 to {flags.ALL_BITS}.")
    return int(value)


# --- rooms -------------------------------------------------------------------------------------------


def room_create(
    *,
    creator: User,
    name: str,
    description: str = "",
    password: str = "",
    settings: dict | None = None,
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


def _lock_room(room: Room) -> Room:
    """Lock the room's row (the order of every room write: the room first, the audit chain
    last) and return it fresh. NotFound when it is gone: a delete that won the race for the row
    leaves nothing to write to, and the write must say so rather than fail at commit."""
    locked = Room.objects.select_for_update().filter(pk=room.pk).first()
    if locked is None:
        raise NotFound("No such room.")
    return locked


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


# --- membership ---------------------------------------------------------------------------------------


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
    invite = None
    if invite_code:
        invite = Invite.objects.filter(code=invite_code, room=room).first()
        if invite is None or not invite.usable():
            raise PermissionDenied("This invite is not valid (expired, used up or for another room).")
    elif room.has_password:
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
    status = MemberStatus.PENDING if (room.join_requires_approval and invite is None) else MemberStatus.ACTIVE
    try:
        with transaction.atomic():
            if invite is not None:
                # One conditional UPDATE: two joins racing for the last use cannot both get it.
                used = (
                    Invite.objects.filter(pk=invite.pk)
                    .filter(Q(max_uses__isnull=True) | Q(uses__lt=F("max_uses")))
                    .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
                    .update(uses=F("uses") + 1)
                )
                if not used:
                    raise PermissionDenied("This invite was just used up.")
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
        member = RoomMember.objects.filter(room=room, user=user).first()
        if member is None:
            raise NotFound("No such room.") from None
        return member, False
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
            created_by=actor.user,
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
    before = {"role": target.role, "added": target.permissions_added, "removed": target.permissions_removed}
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
        after = {
            "role": target.role,
            "added": target.permissions_added,
            "removed": target.permissions_removed,
        }
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


# --- playlist ------------------------------------------------------------------------------------------


def _clean_movie(data: dict) -> dict:
    out: dict[str, Any] = {}
    if "name" in data:
        out["name"] = data["name"]
    if "url" in data:
        out["url"] = validate_media_url(data["url"])
    if "type" in data:
        if data["type"] not in MovieType.values:
            raise _invalid("type", f"One of {', '.join(MovieType.values)}.")
        out["type"] = data["type"]
    if "subtitles" in data:
        # Viewers' browsers load subtitle files too: the same URL rules as the movie's.
        for subtitle in data["subtitles"]:
            validate_media_url(subtitle.get("url") if isinstance(subtitle, dict) else None, field="subtitles")
        out["subtitles"] = data["subtitles"]
    if "headers" in data:
        out["headers"] = data["headers"]
    return out


def movies_add(*, actor: RoomActor, room: Room, items: list[dict], origin: Origin) -> list[Movie]:
    """Append one or many movies to the playlist, in the order given."""
    _require_open(room)
    require(actor, Perm.ADD_MOVIE)
    cleaned = [_clean_movie(item) for item in items]
    with transaction.atomic():
        _lock_room(room)  # orders concurrent appends
        count = Movie.objects.filter(room=room).count()
        if count + len(cleaned) > MAX_MOVIES_PER_ROOM:
            raise InvalidInput(f"A playlist holds at most {MAX_MOVIES_PER_ROOM} movies.")
        last = Movie.objects.filter(room=room).aggregate(m=Max("position"))["m"]
        start = 0 if last is None else last + 1  # not `or -1`: a last position of 0 is falsy
        movies = [
            Movie(
                room=room,
                added_by=actor.user if actor.user and actor.user.pk else None,
                position=start + i,
                **c,
            )
            for i, c in enumerate(cleaned)
        ]
        for movie in movies:  # one save each, not bulk_create: django-auditlog hears post_save only
            movie.save(force_insert=True)
        _bump_playlist(room)
        _audit(
            AuditAction.PLAYLIST_ADD,
            actor_user=actor.user,
            origin=origin,
            room=room,
            resource_type="movie",
            resource_id=movies[0].pk if len(movies) == 1 else "",
            movies=[m.pk for m in movies],
        )
    return movies


def movie_edit(*, actor: RoomActor, room: Room, movie: Movie, changes: dict, origin: Origin) -> Movie:
    _require_open(room)
    require(actor, Perm.EDIT_MOVIE)
    cleaned = _clean_movie(changes)
    with transaction.atomic():
        _lock_room(room)  # NotFound if the room was deleted meanwhile
        for key, value in cleaned.items():
            setattr(movie, key, value)
        movie.save()
        _bump_playlist(room)
        _audit(
            AuditAction.PLAYLIST_EDIT,
            actor_user=actor.user,
            origin=origin,
            room=room,
            resource_type="movie",
            resource_id=movie.pk,
            fields=sorted(cleaned),
        )
    return movie


def movie_delete(*, actor: RoomActor, room: Room, movie: Movie, origin: Origin) -> None:
    """DELETE_MOVIE, or the movie's own adder (who may take back what they added)."""
    _require_open(room)
    own = actor.user is not None and movie.added_by_id == getattr(actor.user, "pk", None) and actor.is_member
    if not own:
        require(actor, Perm.DELETE_MOVIE)
    with transaction.atomic():
        _lock_room(room)  # NotFound if the room was deleted meanwhile
        reset = PlaybackState.objects.filter(room=room, movie=movie).update(
            movie=None, playing=False, position=0.0, updated_at=timezone.now(), version=F("version") + 1
        )
        if reset:
            _announce_playback_reset(room, actor.user)
        movie_id = movie.pk  # delete() sets movie.pk to None
        movie.delete()
        _bump_playlist(room)
        _audit(
            AuditAction.PLAYLIST_DELETE,
            actor_user=actor.user,
            origin=origin,
            room=room,
            resource_type="movie",
            resource_id=movie_id,
            name=movie.name,
        )


def playlist_clear(*, actor: RoomActor, room: Room, origin: Origin) -> int:
    _require_open(room)
    require(actor, Perm.DELETE_MOVIE)
    with transaction.atomic():
        _lock_room(room)  # NotFound if the room was deleted meanwhile
        reset = PlaybackState.objects.filter(room=room, movie__isnull=False).update(
            movie=None, playing=False, position=0.0, updated_at=timezone.now(), version=F("version") + 1
        )
        if reset:
            _announce_playback_reset(room, actor.user)
        count, _ = Movie.objects.filter(room=room).delete()
        _bump_playlist(room)
        _audit(
            AuditAction.PLAYLIST_CLEAR,
            actor_user=actor.user,
            origin=origin,
            room=room,
            resource_type="room",
            resource_id=room.pk,
            removed=count,
        )
    return count


def playlist_reorder(*, actor: RoomActor, room: Room, order: list[str], origin: Origin) -> None:
    """Set the whole order at once: ``order`` must name every movie of the room exactly once."""
    _require_open(room)
    require(actor, Perm.REORDER_PLAYLIST)
    with transaction.atomic():
        _lock_room(room)
        current = {m.pk: m for m in Movie.objects.filter(room=room)}
        if len(order) != len(set(order)) or set(order) != set(current):
            raise _invalid("order", "Give every movie of the playlist exactly once.")
        changed = []
        for index, movie_id in enumerate(order):
            movie = current[movie_id]
            if movie.position != index:
                movie.position = index
                changed.append(movie)
        Movie.objects.bulk_update(changed, ["position"])
        _bump_playlist(room)
        _audit(
            AuditAction.PLAYLIST_REORDER,
            actor_user=actor.user,
            origin=origin,
            room=room,
            resource_type="room",
            resource_id=room.pk,
            order=order,
        )


# --- playback --------------------------------------------------------------------------------------------


def playback_update(
    *,
    actor: RoomActor,
    room: Room,
    movie_id: str | Unset | None = UNSET,
    playing: bool | Unset = UNSET,
    position: float | Unset = UNSET,
    rate: float | Unset = UNSET,
    expected_version: int | Unset = UNSET,
    origin: Origin,
) -> PlaybackState:
    """Change the room's playback; UNSET leaves a field as it is, ``movie_id=None`` is no movie.
    The arguments are a validated messages.PlaybackChange (``.changes()``: finite numbers, the
    position clamped, the rate in range), REST and WebSocket alike. PLAY_CONTROL always;
    CHANGE_CURRENT_MOVIE too when the movie changes. With ``expected_version``, a stale version
    is refused (409 carrying the current state), so of two writers that read the same state
    exactly one wins."""
    _require_open(room)
    require(actor, Perm.PLAY_CONTROL)
    if movie_id is UNSET and playing is UNSET and position is UNSET and rate is UNSET:
        raise InvalidInput("Nothing to change: give playing, position, rate or movie_id.")
    with transaction.atomic():
        # rows.lock/rows.update: the same two statements as select_for_update().get() and
        # save(), without building them on every change (apps/core/rows.py says why).
        state = rows.lock(PlaybackState, room.pk)
        if state is None:  # rooms get theirs at creation; this is for rows made by other means
            _lock_room(room)  # or the room was deleted meanwhile: NotFound, not a failed insert
            state, _ = PlaybackState.objects.select_for_update().get_or_create(room=room)
        if expected_version is not UNSET and expected_version != state.version:
            from apps.rooms.selectors import playback_view

            raise Conflict(
                "The playback changed since you read it.",
                details={"current": _json_state(playback_view(state))},
            )
        now = timezone.now()
        # Materialise where the room is now, then apply the change from there.
        state.position = state.position_at(now)
        if movie_id is not UNSET and movie_id != state.movie_id:
            require(actor, Perm.CHANGE_CURRENT_MOVIE)
            if movie_id is None:
                state.movie = None
            else:
                # NUL: PostgreSQL refuses it in a query (an id never holds one).
                movie = None if "\x00" in movie_id else Movie.objects.filter(room=room, pk=movie_id).first()
                if movie is None:
                    raise _invalid("movie_id", "No such movie in this room.")
                state.movie = movie
            state.position = 0.0
            state.playing = False
        if playing is not UNSET:
            state.playing = playing
        if position is not UNSET:
            state.position = position
        if rate is not UNSET:
            state.rate = rate
        state.updated_at = now
        state.version += 1
        rows.update(state, PLAYBACK_COLUMNS)
        _announce_playback(room, state, actor.user)
        _audit(
            AuditAction.PLAYBACK_UPDATE,
            actor_user=actor.user,
            origin=origin,
            room=room,
            resource_type="playback",
            resource_id=room.pk,
            movie_id=state.movie_id,
            playing=state.playing,
            position=round(state.position, 3),
            rate=state.rate,
            version=state.version,
        )
    return state


def _json_state(view: dict) -> dict:
    as_api = DateTimeField().to_representation  # the same format as every other API time
    return {k: (as_api(v) if hasattr(v, "isoformat") else v) for k, v in view.items()}


def actor_for_user(*, user, room: Room) -> RoomActor:
    """For admin actions and commands: ``user`` as an actor in ``room`` (site admins act as creator)."""
    member = RoomMember.objects.filter(room=room, user=user).first() if user is not None else None
    return build_actor(user=user, room=room, member=member)
