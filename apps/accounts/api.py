"""Accounts REST endpoints (docs/api.md, "REST"). Thin: validate form, rate-limit, call a service."""

from __future__ import annotations

from django.utils.decorators import method_decorator
from django.views.decorators.cache import cache_control
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts import services
from apps.accounts.keystore import keystore
from apps.accounts.schema import JWKS
from apps.accounts.serializers import (
    AuthResultSerializer,
    EmptySerializer,
    LoginSerializer,
    PasswordChangeSerializer,
    PendingUserSerializer,
    RefreshSerializer,
    RegisterSerializer,
    TokenPairSerializer,
    UserSerializer,
    UserUpdateSerializer,
)
from apps.core import ratelimit
from apps.core.context import Origin

ERRORS = {400: OpenApiResponse(description="invalid"), 429: OpenApiResponse(description="rate_limited")}


def _validated(serializer_class, request, **kwargs) -> dict:
    serializer = serializer_class(data=request.data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _auth_result(user, pair) -> dict:
    return {"user": UserSerializer(user).data, "access": pair.access, "refresh": pair.refresh}


class PublicView(APIView):
    """Open to anonymous callers; a bad token on them is ignored, not refused."""

    permission_classes = [AllowAny]
    anonymous_allowed = True


class RegisterView(PublicView):
    @extend_schema(
        request=RegisterSerializer,
        responses={201: AuthResultSerializer, 202: PendingUserSerializer, **ERRORS},
        summary="Create an account",
    )
    def post(self, request):
        data = _validated(RegisterSerializer, request)
        ratelimit.hit_ip(request, limit="register_ip")
        user, pair = services.user_register(
            username=data["username"],
            password=data["password"],
            email=data.get("email"),
            origin=Origin.of(request),
        )
        # The same answer whether or not the address was free (services.user_register).
        shown = {**UserSerializer(user).data, "email": services.email_as_answered(data.get("email"))}
        if pair is None:
            return Response({"user": shown}, status=status.HTTP_202_ACCEPTED)
        return Response({**_auth_result(user, pair), "user": shown}, status=status.HTTP_201_CREATED)


class LoginView(PublicView):
    @extend_schema(
        request=LoginSerializer,
        responses={
            200: AuthResultSerializer,
            401: OpenApiResponse(description="invalid_credentials"),
            403: OpenApiResponse(description="user_banned"),
            **ERRORS,
        },
        summary="Log in with username or email and password",
    )
    def post(self, request):
        data = _validated(LoginSerializer, request)
        # The limits (per IP, per account) are counted by the service: the admin login shares them.
        user, pair = services.user_login(
            identifier=data["username"], password=data["password"], origin=Origin.of(request)
        )
        return Response(_auth_result(user, pair))


class RefreshView(PublicView):
    @extend_schema(
        request=RefreshSerializer,
        responses={
            200: TokenPairSerializer,
            401: OpenApiResponse(
                description="token_invalid / token_revoked (a reused token ends every session)"
            ),
            **ERRORS,
        },
        summary="Rotate a refresh token",
    )
    def post(self, request):
        data = _validated(RefreshSerializer, request)
        ratelimit.hit_ip(request, limit="refresh_ip")
        pair = services.session_refresh(raw_refresh=data["refresh"], origin=Origin.of(request))
        return Response({"access": pair.access, "refresh": pair.refresh})


class LogoutView(APIView):
    @extend_schema(request=RefreshSerializer, responses={204: None, **ERRORS}, summary="End this session")
    def post(self, request):
        data = _validated(RefreshSerializer, request)
        services.session_logout(
            user=request.user, access=request.auth, raw_refresh=data["refresh"], origin=Origin.of(request)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class LogoutAllView(APIView):
    @extend_schema(request=None, responses={204: None}, summary="End every session of the caller")
    def post(self, request):
        _validated(EmptySerializer, request)  # a malformed body is a 400, not a logout
        services.user_logout_all(user=request.user, origin=Origin.of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class PasswordChangeView(APIView):
    @extend_schema(
        request=PasswordChangeSerializer,
        responses={200: TokenPairSerializer, **ERRORS},
        summary="Change password; every other session ends",
    )
    def post(self, request):
        data = _validated(PasswordChangeSerializer, request)
        ratelimit.hit(request, limit="password_change_user", key=f"user:{request.user.pk}")
        pair = services.user_password_change(
            user=request.user,
            old_password=data["old_password"],
            new_password=data["new_password"],
            origin=Origin.of(request),
        )
        return Response({"access": pair.access, "refresh": pair.refresh})


class MeView(APIView):
    @extend_schema(responses={200: UserSerializer}, summary="The caller")
    def get(self, request):
        return Response(UserSerializer(request.user).data)

    @extend_schema(
        request=UserUpdateSerializer,
        responses={200: UserSerializer, **ERRORS},
        summary="Change the caller's username or email",
    )
    def patch(self, request):
        data = _validated(UserUpdateSerializer, request)
        if "email" in data and (data["email"] or None) != request.user.email:
            # A new address needs the current password: one budget with password changes, so a
            # stolen token cannot guess the password (or probe addresses) faster through either.
            ratelimit.hit(request, limit="password_change_user", key=f"user:{request.user.pk}")
        user = services.user_update_profile(user=request.user, origin=Origin.of(request), **data)
        return Response(UserSerializer(user).data)


@method_decorator(cache_control(public=True, max_age=60), name="get")
class JWKSView(PublicView):
    authentication_classes: list = []
    throttle_classes: list = []

    @extend_schema(
        responses={200: JWKS},
        summary="Public keys that verify SyncTV tokens",
    )
    def get(self, request):
        return Response(keystore.jwks())
