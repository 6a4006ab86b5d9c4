"""Secrets at rest (docs/security.md): AES-256-GCM, random 12-byte nonce, stored as nonce || ciphertext+tag;
short, tampered or wrongly keyed data is a clean DecryptionError."""

from __future__ import annotations

import base64
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from apps.core import crypto
from apps.core.crypto import NONCE_BYTES, TAG_BYTES, DecryptionError, decrypt, encrypt

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
    assert len(blob) == NONCE_BYTES + len(plaintext) + TAG_BYTES
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
    assert len({b[:NONCE_BYTES] for b in blobs}) == 50


def test_format_is_nonce_then_aesgcm():
    """Other tools can read it: the first 12 bytes are the nonce, the rest is AESGCM output."""
    blob = encrypt(b"interop", associated_data=b"ad")
    assert AESGCM(b"A" * 32).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], b"ad") == b"interop"


@pytest.mark.parametrize("length", [0, 1, NONCE_BYTES, NONCE_BYTES + TAG_BYTES - 1])
def test_short_ciphertext(length):
    with pytest.raises(DecryptionError):
        decrypt(os.urandom(length))


def test_nonce_and_tag_only_is_the_empty_plaintext_or_an_error():
    assert decrypt(encrypt(b"")) == b""
    with pytest.raises(DecryptionError):
        decrypt(os.urandom(NONCE_BYTES + TAG_BYTES))


def _positions(blob: bytes) -> list[int]:
    return [0, NONCE_BYTES - 1, NONCE_BYTES, len(blob) // 2, len(blob) - TAG_BYTES, len(blob) - 1]


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
        lambda b: b[:NONCE_BYTES] + b[NONCE_BYTES + 1 :],  # a byte of ciphertext removed
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


def test_key_comes_from_settings():
    assert crypto._key() == b"A" * 32
