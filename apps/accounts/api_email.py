"""E-mail endpoints (docs/api.md, "REST"; docs/accounts.md): verification and the password reset.
Thin: validate form, rate-limit, call a service (apps.accounts.services.email).

The reset request and the resend answer one fixed body whether or not a mail goes out, and
their limits count before anything is looked up, so a refusal does not tell either
(docs/security.md, "Accounts and staff").
"""

from __future__ import annotations

import hashlib

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts import services
from apps.accounts.api import ERRORS, PublicView, _validated
from apps.accounts.models import User
from apps.accounts.serializers import (
    AcceptedSerializer,
    EmailVerifySerializer,
    EmptySerializer,
    PasswordResetConfirmSerializer,
    PasswordResetSerializer,
    UserResultSerializer,
    UserSerializer,
)
from apps.core import ratelimit
from apps.core.context import Origin

RESET_ACCEPTED = {"detail": "If an account has this address, a reset link is on its way."}
RESEND_ACCEPTED = {"detail": "If your address awaits verification, a new link is on its way."}
KEY_ERRORS = {
    400: OpenApiResponse(description="invalid (a bad, expired or used key)"),
    429: OpenApiResponse(description="rate_limited"),
}


def _address_key(email: str) -> str:
    """The per-address limit's key: the address as it would be stored, lower-cased and hashed
    (so the counters' keys do not hold addresses)."""
    normalized = (User.objects.normalize_email(email) or "").lower()
    return "email:" + hashlib.sha256(normalized.encode()).hexdigest()


class EmailVerifyView(PublicView):
    @extend_schema(
        request=EmailVerifySerializer,
        responses={200: UserResultSerializer, **KEY_ERRORS},
        summary="Confirm an e-mail address with the key from its link",
    )
    def post(self, request):
        data = _validated(EmailVerifySerializer, request)
        ratelimit.hit_ip(request, limit="email_key_ip")
        user = services.email_verify(key=data["key"], origin=Origin.of(request))
        return Response({"user": UserSerializer(user).data})


class EmailResendView(APIView):
    @extend_schema(
        request=None,
        responses={202: AcceptedSerializer, **ERRORS},
        summary="Send the caller a new verification link (the same answer whether or not one is sent)",
    )
    def post(self, request):
        _validated(EmptySerializer, request)
        ratelimit.hit_ip(request, limit="email_resend_ip")
        ratelimit.hit(request, limit="email_resend_user", key=f"user:{request.user.pk}")
        services.email_verification_resend(user=request.user)
        return Response(RESEND_ACCEPTED, status=status.HTTP_202_ACCEPTED)


class PasswordResetView(PublicView):
    @extend_schema(
        request=PasswordResetSerializer,
        responses={202: AcceptedSerializer, **ERRORS},
        summary="Mail a password reset link (the same answer whether or not the address is known)",
    )
    def post(self, request):
        data = _validated(PasswordResetSerializer, request)
        ratelimit.hit_ip(request, limit="password_reset_ip")
        ratelimit.hit(request, limit="password_reset_email", key=_address_key(data["email"]))
        services.password_reset_request(email=data["email"], origin=Origin.of(request))
        return Response(RESET_ACCEPTED, status=status.HTTP_202_ACCEPTED)


class PasswordResetConfirmView(PublicView):
    @extend_schema(
        request=PasswordResetConfirmSerializer,
        responses={200: UserResultSerializer, **KEY_ERRORS},
        summary="Set a new password with the key from a reset link; every session ends",
    )
    def post(self, request):
        data = _validated(PasswordResetConfirmSerializer, request)
        ratelimit.hit_ip(request, limit="email_key_ip")
        user = services.password_reset_confirm(
            key=data["key"], password=data["password"], origin=Origin.of(request)
        )
        return Response({"user": UserSerializer(user).data})
