"""Input and output shapes of the accounts API. Validation of form only; rules live in services."""

from __future__ import annotations

from django.core.validators import RegexValidator
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.accounts.models import Role
from apps.accounts.services.email import email_verified
from apps.accounts.validators import MAX_LENGTH as PASSWORD_MAX

USERNAME_RULE = RegexValidator(
    r"^[A-Za-z0-9_.-]+\Z",
    "Use only letters, digits, '_', '.' and '-'.",
    code="invalid_username",
)
# Longer passwords are refused by the password rule; this bound only stops hashing megabytes.
PASSWORD_INPUT_MAX = 1024


class StrictCharField(serializers.CharField):
    """A string field that takes only JSON strings.

    DRF's CharField turns numbers into strings, so ``{"username": 1234}`` would register
    "1234" and ``{"password": 12345678}`` would be hashed: a wrong type is a 400 instead.
    """

    default_error_messages = {"not_a_string": "Must be a string."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


class StrictEmailField(StrictCharField, serializers.EmailField):
    pass


def username_field(**kwargs) -> serializers.CharField:
    return StrictCharField(min_length=3, max_length=32, validators=[USERNAME_RULE], **kwargs)


def password_field(**kwargs) -> serializers.CharField:
    return StrictCharField(
        max_length=PASSWORD_INPUT_MAX, trim_whitespace=False, style={"input_type": "password"}, **kwargs
    )


class UserSerializer(serializers.Serializer):
    """The caller as the API shows it. Declared fields, not a ModelSerializer: ``users/me`` is
    the hottest read and ModelSerializer rebuilds its fields from the model on every call."""

    id = serializers.CharField(read_only=True)
    username = serializers.CharField(read_only=True)
    email = serializers.EmailField(read_only=True, allow_null=True)
    email_verified = serializers.SerializerMethodField(
        help_text="Whether the address was confirmed (its verification link, a password reset sent "
        "to it, or a provider that vouches for it); false without one."
    )
    role = serializers.ChoiceField(choices=Role.choices, read_only=True)
    date_joined = serializers.DateTimeField(read_only=True)

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_email_verified(self, user) -> bool:
        return email_verified(user)


class UserUpdateSerializer(serializers.Serializer):
    username = username_field(required=False)
    email = StrictEmailField(required=False, allow_null=True, allow_blank=True, max_length=254)
    current_password = password_field(
        required=False, write_only=True, help_text="Required to change the email address."
    )


class RegisterSerializer(serializers.Serializer):
    username = username_field()
    password = password_field(help_text=f"8 to {PASSWORD_MAX} characters, 3 of 4 character classes.")
    email = StrictEmailField(required=False, allow_null=True, allow_blank=True, max_length=254)


class LoginSerializer(serializers.Serializer):
    username = StrictCharField(max_length=254, help_text="Username or email address.")
    password = password_field()


class RefreshSerializer(serializers.Serializer):
    refresh = StrictCharField(max_length=8192)


class EmptySerializer(serializers.Serializer):
    """For endpoints that take no fields: the body must still be a JSON object (or absent)."""


class PasswordChangeSerializer(serializers.Serializer):
    old_password = password_field()
    new_password = password_field()


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()


class AuthResultSerializer(TokenPairSerializer):
    user = UserSerializer()


class PendingUserSerializer(serializers.Serializer):
    user = UserSerializer()


class EmailVerifySerializer(serializers.Serializer):
    key = StrictCharField(max_length=500, help_text="The key from the verification link.")


class RefuseUnknownFields:
    """Serializer mixin: a body key that is not a field is a 400 naming it, not silently ignored."""

    unknown_message = "Unknown field."

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))  # type: ignore[attr-defined]
            if unknown:
                raise serializers.ValidationError({key: [self.unknown_message] for key in unknown})
        return super().to_internal_value(data)  # type: ignore[misc]


class EmailResendSerializer(RefuseUnknownFields, serializers.Serializer):
    """No body (or ``{}``): the caller's own address, which needs a login. ``{email}``: the form
    without a login, for an account that cannot log in before its address is verified."""

    email = StrictEmailField(
        required=False,
        max_length=254,
        help_text="Without a login: the address to send a new link to (if an account holds it "
        "unverified). Leave out to send the caller's own.",
    )


class PasswordResetSerializer(serializers.Serializer):
    email = StrictEmailField(max_length=254)


class PasswordResetConfirmSerializer(serializers.Serializer):
    key = StrictCharField(max_length=500, help_text="The key from the reset link.")
    password = password_field(
        help_text=f"The new password: 8 to {PASSWORD_MAX} characters, 3 of 4 character classes."
    )


class AcceptedSerializer(serializers.Serializer):
    """The answer of a request whose outcome is not told (a mail may or may not go out)."""

    detail = serializers.CharField()


class UserResultSerializer(serializers.Serializer):
    user = UserSerializer()
