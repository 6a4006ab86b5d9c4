"""Rooms, their members, invites, the playlist and the playback state."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.crypto import salted_hmac

from apps.core.ids import new_id
from apps.permissions import flags


class Room(models.Model):
    id = models.CharField(primary_key=True, max_length=32, default=new_id, editable=False)
    name = models.CharField(max_length=50)
    description = models.CharField(max_length=500, blank=True)
    creator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="rooms_created"
    )
    password = models.CharField(max_length=256, blank=True, help_text="Hashed; empty means no password.")
    hidden = models.BooleanField(default=False, help_text="Not listed in the public room list.")
    allow_guests = models.BooleanField(default=False)
    join_requires_approval = models.BooleanField(default=False)
    member_permissions = models.BigIntegerField(default=flags.DEFAULT_MEMBER)
    admin_permissions = models.BigIntegerField(default=flags.DEFAULT_ADMIN)
    guest_permissions = models.BigIntegerField(default=flags.DEFAULT_GUEST)
    playlist_version = models.BigIntegerField(default=0)
    closed_at = models.DateTimeField(
        null=True, blank=True, help_text="A closed room is read-only: no joins, no changes."
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["hidden", "closed_at", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"

    @property
    def has_password(self) -> bool:
        return bool(self.password)

    @property
    def is_closed(self) -> bool:
        return self.closed_at is not None


class RoomRole(models.TextChoices):
    CREATOR = "creator", "Creator"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"
    GUEST = "guest", "Guest"


class MemberStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    PENDING = "pending", "Pending approval"
    BANNED = "banned", "Banned"


class RoomMember(models.Model):
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="members")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=RoomRole.choices, default=RoomRole.MEMBER)
    status = models.CharField(max_length=16, choices=MemberStatus.choices, default=MemberStatus.ACTIVE)
    permissions_added = models.BigIntegerField(default=0)
    permissions_removed = models.BigIntegerField(default=0)
    joined_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    ban_reason = models.CharField(max_length=500, blank=True)
    ban_address = models.CharField(
        max_length=64,
        blank=True,
        help_text="A banned guest's address as a keyed hash: no new guests from it until the unban.",
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["room", "user"], name="one_membership_per_room")]
        indexes = [models.Index(fields=["room", "status", "role"])]
        ordering = ["joined_at", "id"]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.room_id} ({self.role}, {self.status})"

    @property
    def is_active(self) -> bool:
        return self.status == MemberStatus.ACTIVE


def new_invite_code() -> str:
    return secrets.token_urlsafe(9)  # 72 random bits, 12 characters of [A-Za-z0-9_-]


INVITE_REF_PREFIX = "inv:"  # ":" is never in a code, so a reference cannot be mistaken for one


def invite_ref(code: str) -> str:
    """What the audit log says for an invite: a keyed digest of its code, never the code itself.

    Holding the code is being let in (password and approval skipped), and members who may read
    the audit log need not be members who may invite. Keyed (SECRET_KEY via salted_hmac), so even
    a short code could not be found again by hashing guesses; 64 bits of digest tell the invites
    of a room apart. The same code always gives the same reference: the invite's creation and
    every join by it can be matched up in the log.
    """
    digest = salted_hmac("synctv.rooms.invite-ref", code, algorithm="sha256").hexdigest()
    return f"{INVITE_REF_PREFIX}{digest[:16]}"


class Invite(models.Model):
    code = models.CharField(primary_key=True, max_length=32, default=new_invite_code, editable=False)
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="invites")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    max_uses = models.PositiveIntegerField(null=True, blank=True)
    uses = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"invite {invite_ref(self.code)} to {self.room_id}"  # a repr ends up in logs: no code

    def usable(self, now=None) -> bool:
        now = now or timezone.now()
        if self.expires_at is not None and self.expires_at <= now:
            return False
        return self.max_uses is None or self.uses < self.max_uses


class MovieType(models.TextChoices):
    FILE = "file", "File"
    HLS = "hls", "HLS"
    LIVE = "live", "Live"


class Movie(models.Model):
    id = models.CharField(primary_key=True, max_length=32, default=new_id, editable=False)
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="movies")
    name = models.CharField(max_length=200)
    url = models.CharField(max_length=2048)
    type = models.CharField(max_length=8, choices=MovieType.choices, default=MovieType.FILE)
    position = models.IntegerField(default=0, help_text="Order in the playlist, from 0.")
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    subtitles = models.JSONField(default=list, blank=True)
    headers = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["room", "position", "created_at"]
        indexes = [models.Index(fields=["room", "position"])]

    def __str__(self) -> str:
        return self.name


class PlaybackState(models.Model):
    """Server-authoritative playback of a room. ``position`` is the position at ``updated_at``;
    while playing, the position now is ``position + (now - updated_at) * rate``."""

    room = models.OneToOneField(Room, primary_key=True, on_delete=models.CASCADE, related_name="playback")
    movie = models.ForeignKey(Movie, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    playing = models.BooleanField(default=False)
    position = models.FloatField(default=0.0)
    rate = models.FloatField(default=1.0)
    updated_at = models.DateTimeField(default=timezone.now)
    version = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"playback of {self.room_id} v{self.version}"

    def position_at(self, when) -> float:
        if not self.playing:
            return self.position
        elapsed = max(0.0, (when - self.updated_at).total_seconds())
        return max(0.0, self.position + elapsed * self.rate)


class SensitiveWord(models.Model):
    """A word masked in chat (and anything else passed through the filter). Moderators edit the
    list in the admin."""

    word = models.CharField(max_length=100, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["word"]

    def __str__(self) -> str:
        return self.word


class ChatMessage(models.Model):
    """Chat as sent to the room: already filtered and escaped. The last 50 are replayed after
    ``hello``; older ones are kept for moderation until the clean-up task removes them."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="chat_messages")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    text = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["room", "-id"])]

    def __str__(self) -> str:
        return f"{self.user_id}: {self.text[:40]}"
