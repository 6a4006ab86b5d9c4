"""Fixtures for the token, session and key-store security tests.

The forging helpers start from a *real* token's claims and change one thing, so every refusal
in the tests is caused by that one change (``test_resigned_real_claims_are_accepted`` shows
the untouched re-signed claims pass).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from rest_framework.test import APIClient

from apps.accounts.keystore import keystore
from apps.accounts.models import Role, User
from apps.accounts.services import TokenPair
from apps.accounts.tests.factories import create_user, login, make_user
from apps.core.tests.helpers import client_for

ME = "/api/v1/users/me"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
LOGOUT_ALL = "/api/v1/auth/logout-all"
PASSWORD_CHANGE = "/api/v1/auth/password/change"
LOGIN = "/api/v1/auth/login"
JWKS_URLS = ("/api/v1/auth/jwks", "/.well-known/jwks.json")


def b64url(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(obj: dict) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def unverified(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def header_of(token: str) -> dict[str, Any]:
    return jwt.get_unverified_header(token)


class Forge:
    """Builds tokens by hand, the way an attacker would."""

    @staticmethod
    def rs256(payload: dict, *, key=None, kid: str | None = None, alg: str = "RS256", headers=None) -> str:
        """Sign with the real signing key (default) or ``key``; the header carries ``kid``."""
        real = keystore.signing_key()
        hdr = {"kid": real.kid if kid is None else kid, **(headers or {})}
        if alg == "RS256":  # by hand, so odd claims (a non-string iss...) can be written
            return Forge.raw_rs256({"alg": "RS256", "typ": "JWT", **hdr}, payload, key=key)
        return jwt.encode(payload, key or real.private_key, algorithm=alg, headers=hdr)

    @staticmethod
    def raw_rs256(header: dict, payload: dict, *, key=None) -> str:
        """RS256 by hand, for headers PyJWT will not write (a non-string kid, no typ...)."""
        from jwt.algorithms import RSAAlgorithm

        signing_input = f"{b64url_json(header)}.{b64url_json(payload)}"
        signature = RSAAlgorithm(RSAAlgorithm.SHA256).sign(
            signing_input.encode(), key or keystore.signing_key().private_key
        )
        return f"{signing_input}.{b64url(signature)}"

    @staticmethod
    def hs256(payload: dict, secret: bytes, *, kid: str | None = None) -> str:
        """HMAC-SHA256 by hand: PyJWT refuses to use a PEM key as an HMAC secret."""
        header = {"alg": "HS256", "typ": "JWT", "kid": kid or keystore.signing_key().kid}
        signing_input = f"{b64url_json(header)}.{b64url_json(payload)}"
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{b64url(signature)}"

    @staticmethod
    def unsigned(payload: dict, *, alg: str = "none", signature: str = "") -> str:
        header = {"alg": alg, "typ": "JWT", "kid": keystore.signing_key().kid}
        return f"{b64url_json(header)}.{b64url_json(payload)}.{signature}"


@pytest.fixture
def forge() -> Forge:
    return Forge()


@pytest.fixture(scope="session")
def foreign_rsa_key() -> rsa.RSAPrivateKey:
    """An RSA key that is not in the key store."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class Account:
    user: User
    pair: TokenPair

    def login(self) -> TokenPair:
        return login(self.user)


@pytest.fixture
def account(db) -> Account:
    user, pair = make_user()
    return Account(user=user, pair=pair)


@pytest.fixture
def other_account(db) -> Account:
    user, pair = make_user()
    return Account(user=user, pair=pair)


@pytest.fixture
def alice() -> User:
    """A plain user row (no session) with an address and ``PASSWORD``."""
    return create_user("alice", email="alice@example.com")


@pytest.fixture
def root() -> User:
    return create_user("root", Role.ROOT)


def get_me(token: str | None = None, *, header: str | None = None):
    return client_for(token, header=header).get(ME)


def me(access: str):
    """``users/me`` with ``access``; a server error comes back as a 500 response."""
    return client_for(access, raise_request_exception=False).get(ME)


def post_refresh(raw_refresh: str):
    return APIClient().post(REFRESH, {"refresh": raw_refresh}, format="json")


def assert_refused(response, status: int = 401, code: str = "token_invalid") -> None:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["code"] == code, body


@pytest.fixture
def mandatory(settings):
    """ACCOUNT_EMAIL_VERIFICATION=mandatory: sign-ups stay pending until the address is verified."""
    settings.ACCOUNT_EMAIL_VERIFICATION = "mandatory"
