"""Secrets at rest (docs/security.md): AES-256-GCM, random 12-byte nonce, stored as
version || key id || nonce || ciphertext+tag; several keys (the first encrypts, all decrypt);
short, tampered or wrongly keyed data is a clean DecryptionError."""

from __future__ import annotations

import base64
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from apps.core import crypto
from apps.core.crypto import HEADER_BYTES, NONCE_BYTES, TAG_BYTES, DecryptionError, decrypt, encrypt

KEY_A = base64.b64encode(b"A" * 32).decode()
KEY_B = base64.b64encode(b"B" * 32).decode()


@pytest.fixture(autouse=True)
def fixed_key():
    with override_settings(ENCRYPTION_KEY=KEY_A):
        yield


@pytest.mark.parametrize(
    "plaintext", [b"", b"x", b"stream key 123", os.urandom(1000), "ünïcode ✓".encode(), b"\x00" * 64]
)
def test_round_trip(plaintext):
    blob = encrypt(plaintext)
    assert isinstance(blob, bytes)
    assert len(blob) == HEADER_BYTES + NONCE_BYTES + len(plaintext) + TAG_BYTES
    assert decrypt(blob) == plaintext
    if len(plaintext) >= 8:
        assert plaintext not in blob


def test_round_trip_with_associated_data_and_buffer_types():
    blob = encrypt(b"private key", associated_data=b"kid-1")
    assert decrypt(blob, associated_data=b"kid-1") == b"private key"
    assert decrypt(memoryview(blob), associated_data=b"kid-1") == b"private key"  # BinaryField rows
    assert decrypt(bytearray(blob), associated_data=b"kid-1") == b"private key"


def test_nonce_is_random():
    blobs = {encrypt(b"same") for _ in range(50)}
    assert len(blobs) == 50
    assert len({b[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES] for b in blobs}) == 50


def test_format_is_version_key_id_nonce_then_aesgcm():
    """Other tools can read it: a version byte, the 4-byte key id, the 12-byte nonce, then AESGCM
    output."""
    blob = encrypt(b"interop", associated_data=b"ad")
    assert blob[:1] == b"\x01" and blob[1:HEADER_BYTES] == crypto.key_id(b"A" * 32)
    body = blob[HEADER_BYTES:]
    assert AESGCM(b"A" * 32).decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], b"ad") == b"interop"


def test_values_written_before_key_ids_still_open():
    nonce = os.urandom(NONCE_BYTES)
    legacy = nonce + AESGCM(b"A" * 32).encrypt(nonce, b"old secret", b"kid-1")
    assert decrypt(legacy, associated_data=b"kid-1") == b"old secret"
    with override_settings(ENCRYPTION_KEY=f"{KEY_B},{KEY_A}"):
        assert decrypt(legacy, associated_data=b"kid-1") == b"old secret"
    assert not crypto.encrypted_with_first_key(legacy)


def test_the_first_key_encrypts_and_every_key_decrypts():
    under_a = encrypt(b"secret")
    with override_settings(ENCRYPTION_KEY=f"{KEY_B}, {KEY_A}"):  # B is new, A still configured
        under_b = encrypt(b"secret")
        assert under_b[1:HEADER_BYTES] == crypto.key_id(b"B" * 32)
        assert decrypt(under_a) == decrypt(under_b) == b"secret"
        assert crypto.encrypted_with_first_key(under_b) and not crypto.encrypted_with_first_key(under_a)
    with override_settings(ENCRYPTION_KEY=KEY_B), pytest.raises(DecryptionError):
        decrypt(under_a)  # A removed: what only A encrypted no longer opens
    with override_settings(ENCRYPTION_KEY=KEY_A), pytest.raises(DecryptionError):
        decrypt(under_b)


def test_a_key_id_that_names_no_configured_key_is_a_clean_error():
    blob = bytearray(encrypt(b"secret"))
    blob[1:HEADER_BYTES] = b"\x00\x00\x00\x00"  # the header is not trusted: every key is tried
    with pytest.raises(DecryptionError):
        decrypt(bytes(blob))


@pytest.mark.parametrize("length", [0, 1, NONCE_BYTES, NONCE_BYTES + TAG_BYTES - 1])
def test_short_ciphertext(length):
    with pytest.raises(DecryptionError):
        decrypt(os.urandom(length))


def test_nonce_and_tag_only_is_the_empty_plaintext_or_an_error():
    assert decrypt(encrypt(b"")) == b""
    with pytest.raises(DecryptionError):
        decrypt(os.urandom(NONCE_BYTES + TAG_BYTES))


def _positions(blob: bytes) -> list[int]:
    nonce = HEADER_BYTES
    return [
        nonce,
        nonce + NONCE_BYTES - 1,
        nonce + NONCE_BYTES,
        len(blob) // 2,
        len(blob) - TAG_BYTES,
        len(blob) - 1,
    ]


@pytest.mark.parametrize("where", range(6), ids=["nonce0", "nonce-end", "body0", "middle", "tag0", "tag-end"])
def test_any_flipped_bit_is_detected(where):
    blob = encrypt(b"a secret worth protecting")
    position = _positions(blob)[where]
    for bit in (0x01, 0x80):
        tampered = bytearray(blob)
        tampered[position] ^= bit
        with pytest.raises(DecryptionError):
            decrypt(bytes(tampered))


@pytest.mark.parametrize(
    "change",
    [
        lambda b: b[:-1],  # truncated tag
        lambda b: b + b"\x00",  # appended byte
        lambda b: b[1:],  # dropped first byte
        lambda b: (
            b[: HEADER_BYTES + NONCE_BYTES] + b[HEADER_BYTES + NONCE_BYTES + 1 :]
        ),  # a byte of ciphertext removed
    ],
    ids=["truncated", "appended", "shifted", "spliced"],
)
def test_reshaped_ciphertext_is_detected(change):
    with pytest.raises(DecryptionError):
        decrypt(change(encrypt(b"a secret worth protecting")))


def test_wrong_key():
    blob = encrypt(b"secret")
    with override_settings(ENCRYPTION_KEY=KEY_B), pytest.raises(DecryptionError):
        decrypt(blob)
    assert decrypt(blob) == b"secret"  # and the right key still works


def test_wrong_associated_data():
    blob = encrypt(b"secret", associated_data=b"kid-1")
    with pytest.raises(DecryptionError):
        decrypt(blob, associated_data=b"kid-2")
    with pytest.raises(DecryptionError):
        decrypt(blob)


def test_decryption_error_is_not_a_crypto_library_type():
    """Callers catch one exception of ours, not cryptography's InvalidTag."""
    with pytest.raises(DecryptionError) as info:
        decrypt(os.urandom(64))
    assert type(info.value) is DecryptionError


@pytest.mark.parametrize(
    "bad_key",
    [
        "not base64!!",
        base64.b64encode(b"short").decode(),
        base64.b64encode(b"x" * 16).decode(),  # AES-128 is not what the spec asks for
        base64.b64encode(b"x" * 33).decode(),
        "",
    ],
)
def test_misconfigured_key_is_improperly_configured(bad_key):
    with override_settings(ENCRYPTION_KEY=bad_key):
        with pytest.raises(ImproperlyConfigured):
            encrypt(b"x")
        with pytest.raises(ImproperlyConfigured):
            decrypt(b"\x00" * 40)


def test_keys_come_from_settings():
    assert [k.secret for k in crypto.keys()] == [b"A" * 32]
    with override_settings(ENCRYPTION_KEY=f"{KEY_B},{KEY_A}"):
        assert [k.secret for k in crypto.keys()] == [b"B" * 32, b"A" * 32]
    with override_settings(ENCRYPTION_KEY=f"{KEY_B},not base64!!"), pytest.raises(ImproperlyConfigured):
        encrypt(b"x")
