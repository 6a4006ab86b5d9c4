"""Token forgery and tampering (docs/security.md, "Who is asking"): everything but a well-formed,
RS256-signed, unexpired, correctly issued access token of a live session is refused on GET
/users/me.

Every forged token starts from the claims of a real token and changes one thing; the control
test shows those claims re-signed untouched are accepted, so each refusal is due to the change.
"""

from __future__ import annotations

import time
from datetime import timedelta

import jwt
import pytest
from django.conf import settings

from apps.accounts import revocation
from apps.accounts.keystore import keystore, public_pem
from apps.accounts.tests.conftest import (
    JWKS_URLS,
    LOGIN,
    ME,
    assert_refused,
    b64url_json,
    get_me,
    header_of,
    post_refresh,
    unverified,
)
from apps.accounts.tests.factories import PASSWORD
from apps.core.tests.helpers import client_for

pytestmark = pytest.mark.django_db


# --- control -----------------------------------------------------------------------------------


def test_real_access_token_is_accepted(account):
    r = get_me(account.pair.access)
    assert r.status_code == 200, r.content
    assert r.json()["id"] == account.user.pk


def test_resigned_real_claims_are_accepted(account, forge):
    """The forging helpers make tokens the server accepts when nothing is wrong with them."""
    claims = unverified(account.pair.access)
    r = get_me(forge.rs256(claims))
    assert r.status_code == 200, r.content


def test_missing_authorization_is_not_authenticated(db):
    assert_refused(get_me(), 401, "not_authenticated")


# --- algorithm confusion ---------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_is_refused(account, forge, alg):
    claims = unverified(account.pair.access)
    assert_refused(get_me(forge.unsigned(claims, alg=alg)))
    # Not even with a leftover signature part.
    signature = account.pair.access.rsplit(".", 1)[1]
    assert_refused(get_me(forge.unsigned(claims, alg=alg, signature=signature)))


@pytest.mark.parametrize("trailing_newline", [True, False])
def test_hs256_keyed_with_the_public_pem_is_refused(account, forge, trailing_newline):
    """The classic RS256 -> HS256 confusion: the public key (published!) as the HMAC secret."""
    secret = public_pem(keystore.signing_key().public_key)  # what var/jwt_public.pem holds
    secret = secret if trailing_newline else secret.rstrip("\n")
    claims = unverified(account.pair.access)
    assert_refused(get_me(forge.hs256(claims, secret.encode())))


def test_hs256_keyed_with_the_jwks_pem_and_der_is_refused(account, forge, api):
    """Same attack with the key material exactly as an outsider gets it from the JWKS."""
    from cryptography.hazmat.primitives import serialization

    jwk = api.get(JWKS_URLS[0]).json()["keys"][0]
    public_key = jwt.PyJWK(jwk).key
    claims = unverified(account.pair.access)
    for encoding, fmt in [
        (serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        (serialization.Encoding.PEM, serialization.PublicFormat.PKCS1),
        (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
    ]:
        secret = public_key.public_bytes(encoding, fmt)
        assert_refused(get_me(forge.hs256(claims, secret, kid=jwk["kid"])))


@pytest.mark.parametrize("alg", ["RS384", "RS512", "PS256"])
def test_other_rsa_algorithms_with_the_real_key_are_refused(account, forge, alg):
    """RS256 only, even when the signature is genuine under another RSA scheme."""
    claims = unverified(account.pair.access)
    assert_refused(get_me(forge.rs256(claims, alg=alg)))


# --- signature and key id --------------------------------------------------------------------------


def _flip_char(text: str, index: int) -> str:
    replacement = "B" if text[index] != "B" else "C"
    return text[:index] + replacement + text[index + 1 :]


@pytest.mark.parametrize("where", [0, 100, 200])
def test_flipped_signature_char_is_refused(account, where):
    head, payload, signature = account.pair.access.split(".")
    assert_refused(get_me(f"{head}.{payload}.{_flip_char(signature, where)}"))


def test_tampered_payload_with_original_signature_is_refused(account, other_account):
    """Swap the payload for another user's while keeping the signature."""
    head, _, signature = account.pair.access.split(".")
    _, other_payload, _ = other_account.pair.access.split(".")
    assert_refused(get_me(f"{head}.{other_payload}.{signature}"))


def test_truncated_signature_is_refused(account):
    head, payload, signature = account.pair.access.split(".")
    assert_refused(get_me(f"{head}.{payload}."))
    assert_refused(get_me(f"{head}.{payload}.{signature[:-10]}"))


def test_foreign_rsa_key_with_the_real_kid_is_refused(account, forge, foreign_rsa_key):
    claims = unverified(account.pair.access)
    assert_refused(get_me(forge.rs256(claims, key=foreign_rsa_key)))


def test_unknown_kid_is_refused(account, forge, foreign_rsa_key):
    claims = unverified(account.pair.access)
    assert_refused(get_me(forge.rs256(claims, key=foreign_rsa_key, kid="attacker-key")))
    # The real key under a kid the store does not know is refused too.
    assert_refused(get_me(forge.rs256(claims, kid="not-a-known-kid")))


@pytest.mark.parametrize("kid", [False, "", 12345, None, "k" * 200, "../../etc/passwd"])
def test_missing_or_odd_kid_is_refused(account, forge, kid):
    claims = unverified(account.pair.access)
    header = {"alg": "RS256", "typ": "JWT"}
    if kid is not False:
        header["kid"] = kid
    # Control: the same hand-made token with the real kid passes.
    assert get_me(forge.raw_rs256({**header, "kid": keystore.signing_key().kid}, claims)).status_code == 200
    assert_refused(get_me(forge.raw_rs256(header, claims)))


def test_embedded_jwk_header_is_not_trusted(account, forge, foreign_rsa_key):
    """A token carrying its own key (jwk / jku / x5u headers) must not be verified with it."""
    from jwt.algorithms import RSAAlgorithm

    claims = unverified(account.pair.access)
    jwk = RSAAlgorithm.to_jwk(foreign_rsa_key.public_key(), as_dict=True)
    for extra in ({"jwk": jwk}, {"jku": "https://evil.example/jwks.json"}, {"x5u": "https://evil.example/c"}):
        assert_refused(get_me(forge.rs256(claims, key=foreign_rsa_key, headers=extra)))


# --- claims ----------------------------------------------------------------------------------------


def test_expired_token_is_refused(account, forge):
    claims = unverified(account.pair.access)
    now = int(time.time())
    claims.update(iat=now - 3700, exp=now - 60)  # well past the 5 s leeway
    assert_refused(get_me(forge.rs256(claims)))


def test_expiry_leeway_is_small(account, forge):
    """Expired by less than JWT_LEEWAY_SECONDS passes (clock skew); just past it does not."""
    leeway = settings.JWT_LEEWAY_SECONDS
    assert leeway == 5
    claims = unverified(account.pair.access)
    now = int(time.time())
    claims["exp"] = now - 2
    assert get_me(forge.rs256(claims)).status_code == 200
    claims["exp"] = now - leeway - 5
    assert_refused(get_me(forge.rs256(claims)))


def test_far_future_expiry_claim_does_not_help_a_foreign_signature(account, forge, foreign_rsa_key):
    claims = unverified(account.pair.access)
    claims["exp"] = int(time.time()) + 10 * 365 * 86400
    assert_refused(get_me(forge.rs256(claims, key=foreign_rsa_key)))


@pytest.mark.parametrize("iss", ["evil", "synctv ", "SYNCTV", "", None, ["synctv"]])
def test_wrong_issuer_is_refused(account, forge, iss):
    assert settings.JWT_ISSUER == "synctv"
    claims = unverified(account.pair.access)
    claims["iss"] = iss
    assert_refused(get_me(forge.rs256(claims)))


@pytest.mark.parametrize("claim", ["jti", "sub", "exp", "iat", "iss", "token_type", "sid"])
def test_missing_required_claim_is_refused(account, forge, claim):
    claims = unverified(account.pair.access)
    del claims[claim]
    assert_refused(get_me(forge.rs256(claims)))


@pytest.mark.parametrize(
    "claim,value",
    [
        ("sub", 1),
        ("sub", None),
        ("sub", "no-such-user"),
        ("sid", None),
        ("sid", 7),
        ("exp", "tomorrow"),
        ("iat", "now"),
        ("token_type", "refresh"),
        ("token_type", "Access"),
    ],
)
def test_bad_claim_values_are_refused(account, forge, claim, value):
    claims = unverified(account.pair.access)
    claims[claim] = value
    assert_refused(get_me(forge.rs256(claims)))


def test_sid_of_another_user_is_refused(account, other_account, forge):
    """A validly signed token pointing at someone else's session is not a live session."""
    claims = unverified(account.pair.access)
    claims["sid"] = unverified(other_account.pair.access)["sid"]
    assert_refused(get_me(forge.rs256(claims)), 401, "token_revoked")


def test_sid_of_unknown_session_is_refused(account, forge):
    claims = unverified(account.pair.access)
    claims["sid"] = "nosuchsession"
    assert_refused(get_me(forge.rs256(claims)), 401, "token_revoked")


def test_token_of_a_deleted_user_is_refused(account):
    pair = account.pair
    account.user.delete()
    assert_refused(get_me(pair.access))
    assert post_refresh(pair.refresh).status_code == 401


def test_refresh_token_is_not_an_access_token(account):
    assert unverified(account.pair.refresh)["token_type"] == "refresh"
    assert_refused(get_me(account.pair.refresh))


def test_access_token_is_not_a_refresh_token(account):
    r = post_refresh(account.pair.access)
    assert_refused(r)
    # And the session survives: presenting the wrong type is not refresh-token reuse.
    assert get_me(account.pair.access).status_code == 200


def test_refresh_claims_relabelled_as_access_are_refused(account, forge):
    """A refresh token's claims (no username/role) with token_type flipped still need a real
    signature; re-signing them is only possible with the private key."""
    claims = unverified(account.pair.refresh)
    claims["token_type"] = "access"
    head, _, signature = account.pair.refresh.split(".")
    assert_refused(get_me(f"{head}.{b64url_json(claims)}.{signature}"))


# --- malformed Authorization headers ---------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer a b",
        "Bearer !!!!",
        "Bearer bm90IGEgdG9rZW4=",
        "Bearer eyJhbGciOiJSUzI1NiJ9",
        "Bearer eyJhbGciOiJSUzI1NiJ9.e30",
        "Bearer eyJhbGciOiJSUzI1NiJ9.%%%.xyz",
        "Bearer ...",
        "Bearer a.b.c.d",
        "Bearer " + "A" * 9000,
    ],
)
def test_malformed_authorization_header_is_refused(db, header):
    assert_refused(get_me(header=header))


def test_oversized_token_is_refused_before_parsing(account):
    padded = account.pair.access + "." + "A" * 9000
    assert_refused(get_me(padded))


def test_non_bearer_scheme_is_not_authenticated(account):
    assert_refused(get_me(header=f"Basic {account.pair.access}"), 401, "not_authenticated")


# --- revocation, ban -------------------------------------------------------------------------------


def test_revoked_jti_is_refused_while_the_session_is_live(account):
    """The jti list alone stops a token (the session row is untouched here)."""
    claims = unverified(account.pair.access)
    revocation.revoke_jti(claims["jti"], claims["exp"])
    assert_refused(get_me(account.pair.access), 401, "token_revoked")
    # Another token of the same session is unaffected.
    assert get_me(account.login().access).status_code == 200


def test_banned_users_token_is_refused_403(account):
    from apps.accounts import services
    from apps.accounts.tests.factories import TEST_ORIGIN

    assert get_me(account.pair.access).status_code == 200
    services.user_ban(actor=None, user=account.user, reason="spam", origin=TEST_ORIGIN)
    assert_refused(get_me(account.pair.access), 403, "user_banned")


def test_role_claim_is_not_trusted_over_the_database(account):
    """A token minted while the user was an admin does not keep them admin after a demotion."""
    from apps.accounts import services
    from apps.accounts.tests.factories import TEST_ORIGIN

    services.user_set_role(actor=None, user=account.user, role="admin", origin=TEST_ORIGIN)
    admin_access = account.login().access
    assert unverified(admin_access)["role"] == "admin"
    services.user_set_role(actor=None, user=account.user, role="user", origin=TEST_ORIGIN)
    r = get_me(admin_access)
    assert r.status_code == 200
    assert r.json()["role"] == "user"


# --- optional authentication ----------------------------------------------------------------------


BAD_HEADERS = ["Bearer garbage", "Bearer", "Bearer a b", "Bearer eyJhbGciOiJub25lIn0.e30."]


@pytest.mark.parametrize("header", BAD_HEADERS)
@pytest.mark.parametrize("url", JWKS_URLS)
def test_jwks_ignores_a_bad_token(db, url, header):
    r = client_for(header=header).get(url)
    assert r.status_code == 200, r.content
    assert r.json()["keys"]


def test_login_with_a_bad_token_still_works(account, forge):
    expired = unverified(account.pair.access)
    expired.update(exp=int(time.time()) - 3600)
    headers = [*BAD_HEADERS, f"Bearer {forge.rs256(expired)}", f"Bearer {account.pair.refresh}"]
    for header in headers:
        r = client_for(header=header).post(
            LOGIN, {"username": account.user.username, "password": PASSWORD}, format="json"
        )
        assert r.status_code == 200, (header, r.content)
        assert r.json()["access"]


def test_login_with_a_revoked_or_banned_token_is_anonymous(account, other_account):
    """A revoked token on an anonymous-allowed endpoint is ignored, not an error."""
    claims = unverified(account.pair.access)
    revocation.revoke_jti(claims["jti"], claims["exp"])
    r = client_for(account.pair.access).post(
        LOGIN, {"username": other_account.user.username, "password": PASSWORD}, format="json"
    )
    assert r.status_code == 200, r.content
    assert r.json()["user"]["id"] == other_account.user.pk


def test_refresh_endpoint_ignores_a_bad_access_header(account):
    r = client_for(header="Bearer garbage").post(
        "/api/v1/auth/refresh", {"refresh": account.pair.refresh}, format="json"
    )
    assert r.status_code == 200, r.content


def test_protected_endpoints_are_strict(account):
    """The optional-auth leniency must not leak to protected views."""
    for method, url in [("get", ME), ("post", "/api/v1/auth/logout-all"), ("post", "/api/v1/auth/logout")]:
        r = getattr(client_for(header="Bearer garbage"), method)(url, {}, format="json")
        assert_refused(r)


# --- claims of issued tokens -----------------------------------------------------------------------


def _verify(token: str) -> dict:
    key = keystore.signing_key()
    return jwt.decode(
        token,
        key.public_key,
        algorithms=["RS256"],
        issuer=settings.JWT_ISSUER,
        options={"require": ["exp", "iat", "jti", "iss", "sub"]},
    )


def test_access_token_claims(account):
    header = header_of(account.pair.access)
    assert header["alg"] == "RS256"
    assert header["kid"] == keystore.signing_key().kid
    claims = _verify(account.pair.access)
    assert claims["sub"] == account.user.pk
    assert claims["username"] == account.user.username
    assert claims["role"] == account.user.role == "user"
    assert claims["token_type"] == "access"
    assert claims["iss"] == settings.JWT_ISSUER
    assert claims["nid"] == settings.SYNCTV_NODE_ID
    assert claims["exp"] - claims["iat"] == 3600
    assert abs(claims["iat"] - time.time()) < 60
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16
    assert isinstance(claims["sid"], str) and claims["sid"]
    assert settings.JWT_ACCESS_LIFETIME == timedelta(hours=1)


def test_refresh_token_claims(account):
    assert header_of(account.pair.refresh)["alg"] == "RS256"
    claims = _verify(account.pair.refresh)
    assert claims["sub"] == account.user.pk
    assert claims["token_type"] == "refresh"
    assert claims["iss"] == settings.JWT_ISSUER
    assert claims["nid"] == settings.SYNCTV_NODE_ID
    assert claims["exp"] - claims["iat"] == 30 * 24 * 3600
    assert claims["sid"] == unverified(account.pair.access)["sid"]
    # The refresh token says nothing about the user beyond the id.
    assert "username" not in claims and "role" not in claims


def test_jti_and_sid_are_unique(account):
    pairs = [account.pair, account.login(), account.login()]
    jtis = [unverified(t)["jti"] for p in pairs for t in (p.access, p.refresh)]
    assert len(set(jtis)) == len(jtis)
    sids = {unverified(p.access)["sid"] for p in pairs}
    assert len(sids) == 3


def test_refreshed_access_token_has_full_claims(account):
    r = post_refresh(account.pair.refresh)
    assert r.status_code == 200, r.content
    claims = _verify(r.json()["access"])
    assert claims["username"] == account.user.username
    assert claims["role"] == "user"
    assert claims["sid"] == unverified(account.pair.access)["sid"]
    assert claims["exp"] - claims["iat"] == 3600
