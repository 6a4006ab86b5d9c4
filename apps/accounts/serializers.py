"""Input and output shapes of the accounts API. Validation of form only; rules live in services."""

from __future__ import annotations

from django.core.validators import RegexValidator
from rest_framework import serializers

from apps.accounts.models import User
from apps.accounts.validators import MAX_LENGTH as PASSWORD_MAX

USERNAME_RULE = RegexValidator(
    r"^[A-Za-z0-9_.-]+\Z",
    "Use only letters, digits, '_', '.' and '-'.",
    code="invalid_username",
)
# Longer passwords are refused by the password rule; this bound only stops hashing megabytes.
PASSWORD_INPUT_MAX = 1024


def username_field(**kwargs) -> serializers.CharField:
    return serializers.CharField(min_length=3, max_length=32, validators=[USERNAME_RULE], **kwargs)


def password_field(**kwargs) -> serializers.CharField:
    return serializers.CharField(
        max_length=PASSWORD_INPUT_MAX, trim_whitespace=False, style={"input_type": "password"}, **kwargs
    )


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "username", "email", "role", "date_joined"]
        read_only_fields = fields


class UserUpdateSerializer(serializers.Serializer):
    username = username_field(required=False)
    email = serializers.EmailField(required=False, allow_null=True, allow_blank=True, max_length=254)


class RegisterSerializer(serializers.Serializer):
    username = username_field()
    password = password_field(help_text=f"8 to {PASSWORD_MAX} characters, 3 of 4 character classes.")
    email = serializers.EmailField(required=False, allow_null=True, allow_blank=True, max_length=254)


class LoginSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=254, help_text="Username or email address.")
    password = password_field()


class RefreshSerializer(serializers.Serializer):
    refresh = serializers.CharField(max_length=8192)


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
