"""E-mail endpoints (docs/api.md, "REST"; docs/accounts.md): verification and the password reset.
Thin: validate form, rate-limit, call a service (apps.accounts.services.email).

The reset request and the resend (both its forms) answer one fixed body whether or not a mail
goes out, and their limits count before anything is looked up, so a refusal does not tell either
(docs/security.md, "Accounts and staff").
"""

from __future__ import annotations

import hashlib

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts import services
from apps.accounts.api import ERRORS, PublicView, _validated
from apps.accounts.models import User
from apps.accounts.permissions import IsRegisteredUser
from apps.accounts.serializers import (
    AcceptedSerializer,
    EmailResendSerializer,
    EmailVerifySerializer,
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
    """Two forms (docs/accounts.md): no body, the caller's own address (a login, as any
    registered-user endpoint); ``{email}`` with no login, for a ``pending`` account that cannot
    log in. A bad token is still refused, as on every endpoint that takes a login."""

    permission_classes = [AllowAny]

    @extend_schema(
        request=EmailResendSerializer,
        responses={202: AcceptedSerializer, **ERRORS},
        summary="Send a new verification link: the caller's, or the one of {email} without a login "
        "(the same answer whether or not one is sent)",
    )
    def post(self, request):
        data = _validated(EmailResendSerializer, request)
        if "email" not in data:
            self._require_registered(request)
        ratelimit.hit_ip(request, limit="email_resend_ip")
        if "email" in data:
            # Counted for every address, known or not, before anything is looked up (as the reset).
            ratelimit.hit(request, limit="email_resend_email", key=_address_key(data["email"]))
            services.email_verification_resend_to(email=data["email"])
        else:
            ratelimit.hit(request, limit="email_resend_user", key=f"user:{request.user.pk}")
            services.email_verification_resend(user=request.user)
        return Response(RESEND_ACCEPTED, status=status.HTTP_202_ACCEPTED)

    def _require_registered(self, request) -> None:
        """The login the form without ``email`` needs: 401 without one, 403 for a guest."""
        permission = IsRegisteredUser()
        if not permission.has_permission(request, self):
            self.permission_denied(request, message=permission.message)


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
