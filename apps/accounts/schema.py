"""OpenAPI description of the bearer authentication (drf-spectacular extension) and of the
answers that have no serializer of their own."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import inline_serializer
from rest_framework import serializers


class BearerAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "apps.accounts.authentication.BearerAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "RS256 access token from auth/login, auth/register or auth/refresh.",
        }


# GET auth/jwks and /.well-known/jwks.json (keystore.jwks(): PyJWT's RSA JWK plus kid/use/alg).
JWKS = inline_serializer(
    name="JWKS",
    fields={
        "keys": inline_serializer(
            name="JWK",
            fields={
                "kty": serializers.CharField(),
                "kid": serializers.CharField(),
                "use": serializers.CharField(),
                "alg": serializers.CharField(),
                "n": serializers.CharField(),
                "e": serializers.CharField(),
                "key_ops": serializers.ListField(child=serializers.CharField(), required=False),
            },
            many=True,
        )
    },
)
