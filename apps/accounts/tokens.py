"""RS256 tokens: simplejwt's token classes on top of the database key store.

Claims (docs/security.md, "Who is asking"): access ``sub, username, role, iat, exp, jti, iss``; refresh
``sub, iat, exp, jti, iss``; both also ``nid`` (issuing node), ``sid`` (login session) and
``token_type``, so a refresh token can never pass as an access token or the reverse. Guest
tokens (``token_type`` guest) add ``rid``, the one room they open.
"""

from __future__ import annotations

from typing import Any

import jwt
from django.conf import settings
from rest_framework_simplejwt.backends import TokenBackend
from rest_framework_simplejwt.exceptions import TokenBackendError, TokenBackendExpiredToken
from rest_framework_simplejwt.tokens import AccessToken as SimpleAccessToken
from rest_framework_simplejwt.tokens import Token

from apps.accounts.keystore import keystore

ALGORITHM = "RS256"
REQUIRED_CLAIMS = ["exp", "iat", "jti", "iss", "sub", "token_type"]


class KeyStoreTokenBackend(TokenBackend):
    """Signs with the key store's signing key (``kid`` in the header) and verifies with any
    published key. Anything but RS256 is refused before a key is even looked up."""

    def __init__(self) -> None:
        super().__init__(ALGORITHM)

    def get_leeway(self):
        from datetime import timedelta

        return timedelta(seconds=settings.JWT_LEEWAY_SECONDS)

    def encode(self, payload: dict[str, Any]) -> str:
        key = keystore.signing_key()
        claims = {**payload, "iss": settings.JWT_ISSUER}
        return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})

    def decode(self, token, verify: bool = True) -> dict[str, Any]:
        if not verify:
            raise TokenBackendError("Unverified decoding is not allowed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise TokenBackendError("Token is invalid") from exc
        if header.get("alg") != ALGORITHM:
            raise TokenBackendError("Invalid algorithm specified")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > 128:
            raise TokenBackendError("Token has no usable key id")
        public_key = keystore.verifying_key(kid)
        if public_key is None:
            raise TokenBackendError("Unknown signing key")
        try:
            return jwt.decode(
                token,
                public_key,
                algorithms=[ALGORITHM],
                issuer=settings.JWT_ISSUER,
                leeway=self.get_leeway(),
                options={"require": REQUIRED_CLAIMS, "verify_aud": False},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenBackendExpiredToken("Token is expired") from exc
        except jwt.InvalidTokenError as exc:
            raise TokenBackendError("Token is invalid") from exc


token_backend = KeyStoreTokenBackend()


class AccessToken(SimpleAccessToken):
    token_type = "access"
    lifetime = settings.JWT_ACCESS_LIFETIME
    _token_backend = token_backend


class RefreshToken(Token):
    token_type = "refresh"
    lifetime = settings.JWT_REFRESH_LIFETIME
    _token_backend = token_backend


class GuestToken(Token):
    """A guest's access token: bound to one room (``rid``), 4 hours, no refresh."""

    token_type = "guest"
    lifetime = settings.GUEST_TOKEN_LIFETIME
    _token_backend = token_backend


def mint_guest(*, user, session_id: str, room_id: str) -> GuestToken:
    token = GuestToken()
    token["sub"] = user.pk
    token["username"] = user.public_name
    token["role"] = "guest"
    token["sid"] = session_id
    token["rid"] = room_id
    token["nid"] = settings.SYNCTV_NODE_ID
    return token


def mint_access(*, user, session_id: str) -> AccessToken:
    token = AccessToken()
    token["sub"] = user.pk
    token["username"] = user.username
    token["role"] = user.role
    token["sid"] = session_id
    token["nid"] = settings.SYNCTV_NODE_ID
    return token


def mint_refresh(*, user, session_id: str) -> RefreshToken:
    token = RefreshToken()
    token["sub"] = user.pk
    token["sid"] = session_id
    token["nid"] = settings.SYNCTV_NODE_ID
    return token
