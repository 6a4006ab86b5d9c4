"""A small OpenID Connect provider on loopback over HTTP, for the OAuth2 sign-in tests.

It does what a real provider does on the path SyncTV uses, and refuses what a real one refuses:
discovery (``/.well-known/openid-configuration``), ``/authorize`` (approves ``provider.user`` at
once and sends the browser back to ``redirect_uri`` with ``code`` and ``state``; only S256 PKCE
challenges are accepted), ``/token`` (checks the client's credentials, the redirect URI and that
``BASE64URL(SHA256(code_verifier))`` is the challenge of the code; codes are single use; answers
with an access token, a refresh token and an RS256 id_token), ``/userinfo`` (the bearer's claims)
and ``/jwks`` (the id_token's public key).

``oidc_provider`` is a pytest fixture: one server per test session, its user and its records
reset for each test. ``oidc_settings`` configures SyncTV's generic OIDC provider to use it.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.procs import QuietRequests
from tests.secretscan import register_secret

CLIENT_ID = "synctv-test-client"
CLIENT_SECRET = "test-client-secret-" + "x" * 16
KID = "test-key-1"
# Everything secret this provider hands out or is sent is known to the run's log scan
# (tests/secretscan.py): none of it may reach a log line.
register_secret(CLIENT_SECRET, "the OIDC client secret")


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    challenge: str
    claims: dict[str, Any]


@dataclass
class LoopbackProvider:
    """The provider's state; tests set ``user`` and read the records."""

    base: str = ""
    user: dict[str, Any] = field(default_factory=dict)
    codes: dict[str, Grant] = field(default_factory=dict)
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    token_refusals: list[str] = field(default_factory=list)
    userinfo_fails: bool = False
    key: Any = field(default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self, **user: Any) -> None:
        with self.lock:
            self.user = {
                "sub": "oidc-user-1",
                "email": "ada@example.com",
                "email_verified": True,
                "preferred_username": "ada",
                **user,
            }
            self.codes.clear()
            self.tokens.clear()
            self.authorize_requests.clear()
            self.token_requests.clear()
            self.token_refusals.clear()
            self.userinfo_fails = False

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.base,
            "authorization_endpoint": f"{self.base}/authorize",
            "token_endpoint": f"{self.base}/token",
            "userinfo_endpoint": f"{self.base}/userinfo",
            "jwks_uri": f"{self.base}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        }

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**jwk, "kid": KID, "alg": "RS256", "use": "sig"}]}

    def id_token(self, claims: dict[str, Any]) -> str:
        now = int(time.time())
        payload = {**claims, "iss": self.base, "aud": CLIENT_ID, "iat": now, "exp": now + 300}
        return jwt.encode(payload, self.key, algorithm="RS256", headers={"kid": KID})


class _Handler(QuietRequests, BaseHTTPRequestHandler):
    provider: LoopbackProvider  # set on the server's handler class

    def _json(self, status: int, body: Any) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/.well-known/openid-configuration":
            self._json(200, self.provider.discovery())
        elif url.path == "/jwks":
            self._json(200, self.provider.jwks())
        elif url.path == "/authorize":
            self._authorize(query)
        elif url.path == "/userinfo":
            self._userinfo()
        else:
            self._json(404, {"error": "not_found"})

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/token":
            self._json(404, {"error": "not_found"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        self._token(form)

    def _authorize(self, query: dict[str, str]) -> None:
        p = self.provider
        with p.lock:
            p.authorize_requests.append(query)
        problems = [
            query.get("client_id") != CLIENT_ID and "client_id",
            query.get("response_type") != "code" and "response_type",
            query.get("code_challenge_method") != "S256" and "code_challenge_method",
            not query.get("code_challenge") and "code_challenge",
            not query.get("redirect_uri") and "redirect_uri",
        ]
        if any(problems):
            self._json(400, {"error": "invalid_request", "fields": [x for x in problems if x]})
            return
        code = secrets.token_urlsafe(24)
        register_secret(code, "an OIDC authorization code")
        with p.lock:
            p.codes[code] = Grant(
                client_id=query["client_id"],
                redirect_uri=query["redirect_uri"],
                challenge=query["code_challenge"],
                claims=dict(p.user),
            )
        back = {"code": code, **({"state": query["state"]} if "state" in query else {})}
        self.send_response(302)
        self.send_header("Location", f"{query['redirect_uri']}?{urlencode(back)}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _client_credentials(self, form: dict[str, str]) -> tuple[str | None, str | None]:
        header = self.headers.get("Authorization", "")
        if header.startswith("Basic "):
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
            return client_id, secret
        return form.get("client_id"), form.get("client_secret")

    def _token(self, form: dict[str, str]) -> None:
        p = self.provider
        register_secret(form.get("code_verifier"), "a PKCE code verifier")
        with p.lock:
            p.token_requests.append(form)
            grant = p.codes.pop(form.get("code", ""), None)  # single use, even when refused below
        client_id, secret = self._client_credentials(form)
        refusal = None
        if (client_id, secret) != (CLIENT_ID, CLIENT_SECRET):
            refusal = "invalid_client"
        elif form.get("grant_type") != "authorization_code" or grant is None:
            refusal = "invalid_grant"
        elif form.get("redirect_uri") != grant.redirect_uri:
            refusal = "invalid_grant"
        elif not form.get("code_verifier") or s256(form["code_verifier"]) != grant.challenge:
            refusal = "invalid_grant"  # PKCE: the verifier does not match the challenge
        if refusal is not None or grant is None:
            with p.lock:
                p.token_refusals.append(refusal or "invalid_grant")
            self._json(400 if refusal != "invalid_client" else 401, {"error": refusal})
            return
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        id_token = p.id_token({"sub": grant.claims["sub"], "email": grant.claims.get("email")})
        register_secret(access, "an OIDC access token")
        register_secret(refresh, "an OIDC refresh token")
        register_secret(id_token, "an OIDC id token")
        with p.lock:
            p.tokens[access] = grant.claims
        self._json(
            200,
            {
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": 3600,
                "refresh_token": refresh,
                "id_token": id_token,
            },
        )

    def _userinfo(self) -> None:
        p = self.provider
        header = self.headers.get("Authorization", "")
        claims = p.tokens.get(header[7:]) if header.startswith("Bearer ") else None
        if p.userinfo_fails:
            self._json(500, {"error": "server_error"})
        elif claims is None:
            self._json(401, {"error": "invalid_token"})
        else:
            self._json(200, claims)


def follow_authorize(url: str) -> tuple[str, dict[str, str]]:
    """GET ``url`` (the provider's /authorize) as a browser would and return where the provider
    sends it back: (the redirect's URL without its query, the query). http.client: it logs
    nothing, and the URL carries the state."""
    target = urlsplit(url)
    conn = http.client.HTTPConnection(target.netloc, timeout=10)
    try:
        conn.request("GET", f"{target.path}?{target.query}")
        response = conn.getresponse()
        assert response.status == 302, response.read()
        location = urlsplit(response.getheader("Location") or "")
    finally:
        conn.close()
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    return f"{location.scheme}://{location.netloc}{location.path}", query


def start(provider: LoopbackProvider) -> ThreadingHTTPServer:
    handler = type("Handler", (_Handler,), {"provider": provider})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    provider.base = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True, name="oidc-provider").start()
    return server


@pytest.fixture(scope="session")
def _oidc_server() -> Iterator[LoopbackProvider]:
    provider = LoopbackProvider()
    server = start(provider)
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def oidc_provider(_oidc_server: LoopbackProvider) -> LoopbackProvider:
    _oidc_server.reset()
    return _oidc_server


def provider_settings(base: str, name: str = "Test OIDC") -> dict[str, Any]:
    """SOCIALACCOUNT_PROVIDERS as synctv/settings.py builds it from OAUTH_OIDC_* for ``base``."""
    return {
        "openid_connect": {
            "APPS": [
                {
                    "provider_id": "oidc",
                    "name": name,
                    "client_id": CLIENT_ID,
                    "secret": CLIENT_SECRET,
                    "settings": {"server_url": base},
                }
            ],
            "OAUTH_PKCE_ENABLED": True,
        }
    }


def provider_env(base: str, name: str = "Test OIDC") -> dict[str, str]:
    """The same, as the environment variables a server process reads."""
    return {
        "OAUTH_OIDC_SERVER_URL": base,
        "OAUTH_OIDC_CLIENT_ID": CLIENT_ID,
        "OAUTH_OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "OAUTH_OIDC_NAME": name,
    }


@pytest.fixture
def oidc_settings(settings, oidc_provider: LoopbackProvider) -> LoopbackProvider:
    settings.SOCIALACCOUNT_PROVIDERS = provider_settings(oidc_provider.base)
    settings.PUBLIC_URL = "http://testserver"
    return oidc_provider
