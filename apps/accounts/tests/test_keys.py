"""The JWT key store (docs/security.md, "Who is asking"): rotation without logging anyone out,
JWKS publication, retirement after the verification window, private keys encrypted at rest."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.accounts.keystore import keystore, public_pem, verification_window
from apps.accounts.models import SigningKey
from apps.accounts.tests.conftest import (
    JWKS_URLS,
    assert_refused,
    get_me,
    header_of,
    post_refresh,
    unverified,
)
from apps.core import crypto

pytestmark = pytest.mark.django_db


def _rotate() -> str:
    call_command("rotate_jwt_keys", stdout=io.StringIO())
    return SigningKey.objects.get(is_signing=True).kid


def _jwks(api, url: str = JWKS_URLS[0]) -> dict[str, dict]:
    r = api.get(url)
    assert r.status_code == 200, r.content
    return {k["kid"]: k for k in r.json()["keys"]}


def _rfc7638_thumbprint(jwk: dict) -> str:
    canonical = json.dumps({"e": jwk["e"], "kty": jwk["kty"], "n": jwk["n"]}, separators=(",", ":"))
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


# --- rotation --------------------------------------------------------------------------------------


def test_token_signed_before_rotation_verifies_after_it(account):
    old_kid = header_of(account.pair.access)["kid"]
    new_kid = _rotate()
    assert new_kid != old_kid

    assert get_me(account.pair.access).status_code == 200
    # The refresh token signed with the old key still rotates; the new pair uses the new key.
    r = post_refresh(account.pair.refresh)
    assert r.status_code == 200, r.content
    assert header_of(r.json()["access"])["kid"] == new_kid
    assert header_of(r.json()["refresh"])["kid"] == new_kid
    assert get_me(r.json()["access"]).status_code == 200


def test_new_tokens_carry_the_new_kid(account):
    old_kid = header_of(account.pair.access)["kid"]
    new_kid = _rotate()
    pair = account.login()
    assert header_of(pair.access)["kid"] == new_kid != old_kid
    assert header_of(pair.refresh)["kid"] == new_kid
    assert get_me(pair.access).status_code == 200


def test_rotation_leaves_one_signing_key_and_retires_the_old_one(db):
    first = keystore.signing_key().kid
    second = _rotate()
    third = _rotate()
    rows = {row.kid: row for row in SigningKey.objects.all()}
    assert set(rows) == {first, second, third}
    assert [kid for kid, row in rows.items() if row.is_signing] == [third]
    assert rows[first].retired_at is not None and rows[second].retired_at is not None
    assert rows[third].retired_at is None


def _rotate_on_another_node(monkeypatch) -> str:
    """Rotate the way another node would: this process's cached key set is not told."""
    keystore.signing_key()  # this node has loaded the key set
    monkeypatch.setattr(keystore, "invalidate", lambda: None)
    try:
        new_kid = _rotate()
    finally:
        monkeypatch.undo()
    assert keystore.signing_key().kid != new_kid  # still the cached set here
    return new_kid


def test_token_signed_by_a_key_rotated_in_elsewhere_verifies_at_once(account, monkeypatch):
    """A token signed with a key this node has not loaded yet: the unknown kid makes it look
    again, so no restart is needed."""
    new_kid = _rotate_on_another_node(monkeypatch)
    new_row = SigningKey.objects.get(kid=new_kid)
    private = serialization.load_pem_private_key(
        crypto.decrypt(bytes(new_row.private_key_encrypted), associated_data=new_kid.encode()), password=None
    )
    token = jwt.encode(unverified(account.pair.access), private, algorithm="RS256", headers={"kid": new_kid})
    monkeypatch.setattr(keystore, "_last_miss_reload", 0.0)
    assert get_me(token).status_code == 200


def test_signing_moves_to_a_key_rotated_in_elsewhere_after_the_refresh_interval(
    account, monkeypatch, settings
):
    new_kid = _rotate_on_another_node(monkeypatch)
    assert header_of(account.login().access)["kid"] != new_kid  # within JWT_KEYSET_REFRESH_SECONDS
    settings.JWT_KEYSET_REFRESH_SECONDS = 0  # the interval has passed
    pair = account.login()
    assert header_of(pair.access)["kid"] == new_kid
    assert get_me(pair.access).status_code == 200
    assert get_me(account.pair.access).status_code == 200  # the old key still verifies


def test_unknown_kids_do_not_reload_the_key_set_on_every_request(db, monkeypatch):
    keystore.signing_key()
    monkeypatch.setattr(keystore, "_last_miss_reload", 0.0)
    with CaptureQueriesContext(connection) as first:
        assert keystore.verifying_key("unknown-1") is None
    assert len(first) > 0  # one reload, in case another node just rotated
    with CaptureQueriesContext(connection) as flood:
        for i in range(20):
            assert keystore.verifying_key(f"unknown-{i}") is None
    assert len(flood) == 0


# --- JWKS ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", JWKS_URLS)
def test_jwks_lists_every_verifying_key_and_they_verify_the_tokens(account, api, url):
    old_access = account.pair.access
    new_kid = _rotate()
    new_access = account.login().access
    old_kid = header_of(old_access)["kid"]

    keys = _jwks(api, url)
    assert set(keys) == {old_kid, new_kid}
    for kid, jwk in keys.items():
        assert jwk["kty"] == "RSA"
        assert jwk["alg"] == "RS256"
        assert jwk["use"] == "sig"
        assert _rfc7638_thumbprint(jwk) == kid
        # Public parts only.
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk)

    for token in (old_access, new_access):
        jwk = keys[header_of(token)["kid"]]
        claims = jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=["RS256"], issuer="synctv")
        assert claims["sub"] == account.user.pk
    # And a key does not verify the other key's token.
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(old_access, jwt.PyJWK(keys[new_kid]).key, algorithms=["RS256"], issuer="synctv")


def test_jwks_is_public_and_cacheable(db, api):
    r = api.get(JWKS_URLS[1])
    assert r.status_code == 200
    assert "public" in r.headers.get("Cache-Control", "")
    assert _jwks(api, JWKS_URLS[0]) == _jwks(api, JWKS_URLS[1])


def test_jwks_matches_the_stored_public_keys(db, api):
    _rotate()
    keys = _jwks(api)
    for row in SigningKey.objects.all():
        assert public_pem(jwt.PyJWK(keys[row.kid]).key) == row.public_pem


# --- retirement --------------------------------------------------------------------------------------


def _retire_old_key(kid: str, *, ago: timedelta) -> None:
    SigningKey.objects.filter(kid=kid).update(retired_at=timezone.now() - ago)
    keystore.invalidate()


def test_retired_key_past_its_window_is_dropped_and_its_tokens_refused(account, api):
    old_kid = header_of(account.pair.access)["kid"]
    _rotate()
    # The token itself has not expired; only its key has left the verification window.
    _retire_old_key(old_kid, ago=verification_window() + timedelta(minutes=1))

    assert old_kid not in _jwks(api)
    assert_refused(get_me(account.pair.access))
    assert_refused(post_refresh(account.pair.refresh))
    assert get_me(account.login().access).status_code == 200


def test_retired_key_inside_its_window_still_verifies(account, api):
    old_kid = header_of(account.pair.access)["kid"]
    _rotate()
    _retire_old_key(old_kid, ago=verification_window() - timedelta(minutes=1))
    assert old_kid in _jwks(api)
    assert get_me(account.pair.access).status_code == 200


def test_verification_window_covers_the_longest_token_life(settings):
    assert verification_window() >= settings.JWT_REFRESH_LIFETIME + timedelta(
        seconds=settings.JWT_LEEWAY_SECONDS
    )
    assert verification_window() >= settings.JWT_ACCESS_LIFETIME


# --- storage -----------------------------------------------------------------------------------------


def test_private_keys_are_encrypted_at_rest(db):
    keystore.signing_key()
    _rotate()
    rows = list(SigningKey.objects.all())
    assert len(rows) == 2
    for row in rows:
        blob = bytes(row.private_key_encrypted)
        assert b"PRIVATE KEY" not in blob and b"-----BEGIN" not in blob
        # It decrypts, bound to its kid, to the private half of the stored public key.
        pem = crypto.decrypt(blob, associated_data=row.kid.encode())
        assert b"PRIVATE KEY" in pem
        private = serialization.load_pem_private_key(pem, password=None)
        der = private.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        assert der[64:128] not in blob  # not stored as DER either
        assert public_pem(private.public_key()) == row.public_pem
        with pytest.raises(crypto.DecryptionError):
            crypto.decrypt(blob, associated_data=b"another-kid")
        tampered = blob[:-1] + bytes([blob[-1] ^ 1])
        with pytest.raises(crypto.DecryptionError):
            crypto.decrypt(tampered, associated_data=row.kid.encode())


def test_public_pem_rows_hold_no_private_material(db):
    keystore.signing_key()
    for row in SigningKey.objects.all():
        assert "PRIVATE" not in row.public_pem
        assert row.public_pem.startswith("-----BEGIN PUBLIC KEY-----")
