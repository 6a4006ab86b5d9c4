"""Shapes of the rooms API (docs/api.md, "REST": rooms, playlist, playback). Form only; rules in services."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from pydantic import ValidationError
from rest_framework import serializers

from apps.accounts.models import User
from apps.accounts.serializers import RefuseUnknownFields, StrictCharField
from apps.audit.models import AuditEvent
from apps.core import events
from apps.core.errors import InvalidInput
from apps.core.netguard import MAX_URL_LENGTH
from apps.permissions import flags
from apps.permissions.rules import effective_permissions
from apps.rooms.messages import RATE_RANGE, PlaybackChange
from apps.rooms.models import INVITE_REF_PREFIX, Movie, MovieType, Room, RoomMember, invite_ref
from apps.rooms.moderation import escape

MAX_BATCH = 100


class StrictBooleanField(serializers.BooleanField):
    """Only JSON true/false: DRF's BooleanField also takes "yes", 1, "on"..."""

    default_error_messages = {"invalid": "Must be true or false."}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


@extend_schema_field({"type": "integer", "format": "int64", "minimum": 0, "maximum": flags.ALL_BITS})
class MaskField(serializers.Field):
    """A permission mask: an integer (not a bool, not a string) from 0 to every known bit."""

    default_error_messages = {"invalid": f"A permission mask: an integer from 0 to {flags.ALL_BITS}."}

    def to_internal_value(self, data):
        if not flags.is_valid_mask(data):
            self.fail("invalid")
        return int(data)

    def to_representation(self, value):
        return int(value)


def user_ref(user: User) -> events.UserRef:
    """A user as every room payload shows them (REST and WebSocket). ``guest``: a guest's name is
    whatever they typed, so clients show it marked and never as a registered user's."""
    return {"id": user.pk, "username": user.public_name, "guest": bool(user.is_guest)}


class UserRefSerializer(serializers.Serializer):
    id = serializers.CharField()
    username = serializers.SerializerMethodField()
    guest = serializers.BooleanField(source="is_guest", help_text="A guest: the name is self-chosen.")

    def get_username(self, user) -> str:
        return user.public_name


class RoomSettingsSerializer(RefuseUnknownFields, serializers.Serializer):
    hidden = StrictBooleanField(required=False)
    allow_guests = StrictBooleanField(required=False)
    join_requires_approval = StrictBooleanField(required=False)
    member_permissions = MaskField(required=False)
    admin_permissions = MaskField(required=False)
    guest_permissions = MaskField(required=False)

    unknown_message = "Unknown setting."


class RoomSerializer(serializers.ModelSerializer):
    """Output. Name and description leave escaped (& < > " ')."""

    creator = UserRefSerializer()
    name = serializers.SerializerMethodField()
    description = serializers.SerializerMethodField()
    has_password = serializers.BooleanField()
    member_count = serializers.SerializerMethodField()
    settings = serializers.SerializerMethodField()
    closed = serializers.SerializerMethodField()

    class Meta:
        model = Room
        fields = [
            "id",
            "name",
            "description",
            "creator",
            "has_password",
            "member_count",
            "created_at",
            "settings",
            "closed",
            "playlist_version",
        ]

    def get_name(self, room) -> str:
        return escape(room.name)

    def get_description(self, room) -> str:
        return escape(room.description)

    def get_member_count(self, room) -> int:
        count = getattr(room, "member_count", None)
        return count if count is not None else room.members.filter(status="active").count()

    def get_settings(self, room) -> dict:
        return {
            "hidden": room.hidden,
            "allow_guests": room.allow_guests,
            "join_requires_approval": room.join_requires_approval,
            "member_permissions": room.member_permissions,
            "admin_permissions": room.admin_permissions,
            "guest_permissions": room.guest_permissions,
        }

    def get_closed(self, room) -> bool:
        return room.is_closed


class RoomCreateSerializer(serializers.Serializer):
    name = StrictCharField(min_length=1, max_length=50)
    description = StrictCharField(max_length=500, required=False, allow_blank=True, default="")
    password = StrictCharField(
        min_length=6, max_length=32, required=False, allow_blank=True, trim_whitespace=False
    )
    settings = RoomSettingsSerializer(required=False)


class RoomUpdateSerializer(RefuseUnknownFields, serializers.Serializer):
    name = StrictCharField(min_length=1, max_length=50, required=False)
    description = StrictCharField(max_length=500, required=False, allow_blank=True)
    password = StrictCharField(
        min_length=6,
        max_length=32,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        help_text="An empty string removes the password.",
    )
    settings = RoomSettingsSerializer(required=False)


class JoinSerializer(serializers.Serializer):
    password = StrictCharField(required=False, max_length=128, trim_whitespace=False)
    invite = StrictCharField(required=False, max_length=32)


class GuestSerializer(serializers.Serializer):
    name = StrictCharField(min_length=1, max_length=32)


class InviteCreateSerializer(serializers.Serializer):
    max_uses = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=100000)
    expires_in = serializers.IntegerField(
        required=False, allow_null=True, min_value=60, max_value=30 * 24 * 3600, help_text="Seconds."
    )


class InviteSerializer(serializers.Serializer):
    code = serializers.CharField()
    url = serializers.CharField()
    expires_at = serializers.DateTimeField(allow_null=True)
    max_uses = serializers.IntegerField(allow_null=True)
    uses = serializers.IntegerField()


_DATETIME = serializers.DateTimeField()  # DRF's own rendering of a datetime (settings-aware)


def member_view(member: RoomMember) -> dict[str, Any]:
    """A membership as REST (``MemberSerializer``) and the socket's ``hello`` show it. Written out
    because a ModelSerializer builds its fields again for every instance it renders (~0.4 ms of a
    WebSocket connect's node CPU; bench/ws/README.md, "Joins and moves");
    apps/rooms/tests/test_member_view.py holds it equal to the declared fields' own rendering."""
    return {
        "user": user_ref(member.user),
        "role": str(member.role),
        "status": str(member.status),
        "permissions_added": int(member.permissions_added),
        "permissions_removed": int(member.permissions_removed),
        "effective_permissions": effective_permissions(room=member.room, member=member),
        "joined_at": _DATETIME.to_representation(member.joined_at),
    }


class MemberSerializer(serializers.ModelSerializer):
    """Output. The fields below document it (OpenAPI); ``member_view`` renders it."""

    user = UserRefSerializer()
    effective_permissions = serializers.SerializerMethodField()

    class Meta:
        model = RoomMember
        fields = [
            "user",
            "role",
            "status",
            "permissions_added",
            "permissions_removed",
            "effective_permissions",
            "joined_at",
        ]

    def get_effective_permissions(self, member) -> int:
        return effective_permissions(room=member.room, member=member)

    def to_representation(self, instance: RoomMember) -> dict[str, Any]:
        return member_view(instance)


class MemberUpdateSerializer(RefuseUnknownFields, serializers.Serializer):
    """A misspelt field ("permission_added") must not pass for "nothing to change"."""

    role = serializers.ChoiceField(choices=["admin", "member"], required=False)
    permissions_added = MaskField(required=False)
    permissions_removed = MaskField(required=False)


class BanSerializer(serializers.Serializer):
    reason = StrictCharField(required=False, allow_blank=True, max_length=500, default="")


class MovieSerializer(serializers.ModelSerializer):
    added_by = serializers.SerializerMethodField()

    class Meta:
        model = Movie
        fields = ["id", "name", "url", "type", "position", "added_by", "created_at", "subtitles", "headers"]

    def get_added_by(self, movie) -> dict | None:
        user = movie.added_by
        return user_ref(user) if user else None


class SubtitleSerializer(serializers.Serializer):
    name = StrictCharField(max_length=100)
    url = StrictCharField(max_length=MAX_URL_LENGTH)
    lang = StrictCharField(max_length=16, required=False, allow_blank=True)


HEADER_NAME_MAX = 64
HEADER_VALUE_MAX = 1024


def _validate_headers(value):
    if not isinstance(value, dict):
        raise serializers.ValidationError("An object of header name to value.")
    if len(value) > 20:
        raise serializers.ValidationError("At most 20 headers.")
    for name, val in value.items():
        if not isinstance(val, str) or len(name) > HEADER_NAME_MAX or len(val) > HEADER_VALUE_MAX:
            raise serializers.ValidationError("Header names up to 64 characters, values strings up to 1024.")
        # Names: ASCII letters, digits and "-" (str.isalnum alone takes any script); values: no
        # control characters (tab aside), which HTTP clients refuse or split headers on.
        if (
            not name.isascii()
            or not name.replace("-", "").isalnum()
            or any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in val)
        ):
            raise serializers.ValidationError(f"Invalid header {name[:64]!r}.")
    return value


class MovieInSerializer(serializers.Serializer):
    name = StrictCharField(min_length=1, max_length=200)
    url = StrictCharField(max_length=MAX_URL_LENGTH + 1)  # longer is refused with a clear message
    type = serializers.ChoiceField(choices=MovieType.choices, required=False, default=MovieType.FILE)
    subtitles = SubtitleSerializer(many=True, required=False, max_length=20)
    headers = serializers.JSONField(required=False, validators=[_validate_headers])


class MovieEditSerializer(MovieInSerializer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.required = False
        self.fields["type"].default = serializers.empty


class ReorderSerializer(serializers.Serializer):
    order = serializers.ListField(child=StrictCharField(max_length=32), max_length=1000, allow_empty=True)


# The words PUT playback answers a bad field with (a socket's error frame has pydantic's own).
_PLAYBACK_WORDS = {
    "movie_id": "No such movie in this room.",
    "playing": "true or false.",
    "position": "A finite number.",
    "rate": "A finite number.",
    "version": "An integer.",
}


def playback_change(body: object) -> PlaybackChange:
    """The body of PUT rooms/{id}/playback, checked by the socket's own rules
    (messages.PlaybackChange), or InvalidInput: every unknown field named, else the first bad
    field."""
    if not isinstance(body, dict):
        raise InvalidInput("The body must be a JSON object.")
    try:
        return PlaybackChange.model_validate(body)
    except ValidationError as exc:
        errors = exc.errors()
    unknown = sorted(str(error["loc"][0]) for error in errors if error["type"] == "extra_forbidden")
    if unknown:
        raise InvalidInput(
            f"{unknown[0]}: unknown field.", details={key: ["Unknown field."] for key in unknown}
        )
    field = str(errors[0]["loc"][0])
    words = errors[0]["msg"] if errors[0]["type"] == RATE_RANGE else _PLAYBACK_WORDS[field]
    raise InvalidInput(f"{field}: {words}", details={field: [words]})


class PlaybackSerializer(serializers.Serializer):
    movie_id = serializers.CharField(allow_null=True)
    playing = serializers.BooleanField()
    position = serializers.FloatField()
    rate = serializers.FloatField()
    updated_at = serializers.DateTimeField()
    version = serializers.IntegerField()
    server_time = serializers.DateTimeField()
    server_time_ms = serializers.IntegerField()


class AuditEventSerializer(serializers.ModelSerializer):
    user = serializers.SerializerMethodField()

    class Meta:
        model = AuditEvent
        # No IP or user agent: room admins see what happened, not where members connect from.
        fields = ["seq", "created_at", "user", "action", "resource_type", "resource_id", "details"]

    def get_user(self, event) -> dict | None:
        user = event.user
        return user_ref(user) if user else None

    def to_representation(self, event):
        data = super().to_representation(event)
        # Rows written before invite references (models.invite_ref) hold the invite's code: as the
        # invite's resource id and as details.invite of a join by it. They stay as stored (the
        # hash chain covers them) and are shown with the reference, like newer rows.
        if event.resource_type == "invite":
            data["resource_id"] = _as_invite_ref(data["resource_id"])
        details = data.get("details")
        if isinstance(details, dict) and "invite" in details:
            data["details"] = {**details, "invite": _as_invite_ref(details["invite"])}
        return data


def _as_invite_ref(value):
    if isinstance(value, str) and value and not value.startswith(INVITE_REF_PREFIX):
        return invite_ref(value)
    return value
