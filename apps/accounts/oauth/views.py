"""The OAuth2 REST endpoints (docs/api.md, Accounts). Thin: validate form, rate-limit, call a
service."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.api import ERRORS, PublicView, _auth_result, _validated
from apps.accounts.oauth import providers, selectors, services
from apps.accounts.serializers import AuthResultSerializer, EmptySerializer, StrictCharField
from apps.core import ratelimit
from apps.core.context import Origin


class ProviderSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="github, gitlab, google, discord, microsoft or oidc.")
    name = serializers.CharField()


class StartResultSerializer(serializers.Serializer):
    authorize_url = serializers.CharField(help_text="Send the browser here.")
    state = serializers.CharField()


class CallbackSerializer(serializers.Serializer):
    code = StrictCharField(max_length=2048)
    state = StrictCharField(max_length=128)

    def validate_state(self, value: str) -> str:
        # What ``start`` hands out: base64url. Anything else cannot be a state of ours.
        if not all(c.isascii() and (c.isalnum() or c in "-_") for c in value):
            raise serializers.ValidationError("Not a state this server issued.")
        return value


class IdentitySerializer(serializers.Serializer):
    provider = serializers.CharField()
    uid = serializers.CharField()
    email = serializers.CharField(allow_null=True)


NOT_FOUND = {404: OpenApiResponse(description="not_found: no such provider")}
PROVIDER_ERRORS = {502: OpenApiResponse(description="provider_unavailable")}


class ProvidersView(PublicView):
    @extend_schema(responses={200: ProviderSerializer(many=True)}, summary="Configured OAuth2 providers")
    def get(self, request):
        return Response([{"id": p.id, "name": p.name} for p in providers.configured(request._request)])


class OAuthStartView(PublicView):
    @extend_schema(
        request=None,
        responses={200: StartResultSerializer, **NOT_FOUND, **PROVIDER_ERRORS, **ERRORS},
        summary="Begin an OAuth2 sign-in (PKCE S256)",
    )
    def post(self, request, provider: str):
        _validated(EmptySerializer, request)
        ratelimit.hit_ip(request, limit="oauth_ip")
        url, state = services.oauth_start(request=request._request, provider_id=provider)
        return Response({"authorize_url": url, "state": state})


class OAuthCallbackView(PublicView):
    @extend_schema(
        request=CallbackSerializer,
        responses={
            200: AuthResultSerializer,
            403: OpenApiResponse(description="user_banned / account_pending"),
            **NOT_FOUND,
            **PROVIDER_ERRORS,
            **ERRORS,
        },
        summary="Finish an OAuth2 sign-in: the provider's code and our state for a token pair",
    )
    def post(self, request, provider: str):
        data = _validated(CallbackSerializer, request)
        ratelimit.hit_ip(request, limit="oauth_ip")
        user, pair = services.oauth_login(
            request=request._request,
            provider_id=provider,
            code=data["code"],
            state=data["state"],
            origin=Origin.of(request),
        )
        return Response(_auth_result(user, pair))


class IdentitiesView(APIView):
    @extend_schema(responses={200: IdentitySerializer(many=True)}, summary="The caller's linked providers")
    def get(self, request):
        return Response(IdentitySerializer(selectors.identities_of(request.user), many=True).data)


class IdentityView(APIView):
    @extend_schema(
        request=None,
        responses={
            204: None,
            404: OpenApiResponse(description="not_found: no identity of this provider"),
            409: OpenApiResponse(description="last_login_method: the only way to log in"),
        },
        summary="Unlink a provider (never the last way to log in)",
    )
    def delete(self, request, provider: str):
        services.identity_unlink(user=request.user, provider_id=provider, origin=Origin.of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
