"""AES-256-GCM for secrets at rest (docs/security.md, "Secrets at rest").

Stored form: ``0x01 || key id (4 bytes) || nonce (12 random bytes) || ciphertext+tag``. The key
id names the key that encrypted it (the first 4 bytes of HMAC-SHA256(key, "synctv key id"): it
tells keys apart and reveals nothing of them), so that with several keys configured a value is
opened by the right one at once. Values written before key ids existed (``nonce || ciphertext``)
still open: every configured key is tried.

Keys come from configuration, never from public data: SYNCTV_ENCRYPTION_KEY is a comma-separated
list of base64 32-byte keys. The first encrypts; all of them decrypt. Rotation: put the new key
first, run ``manage.py reencrypt_secrets`` (every column registered with :func:`register_column`
is rewritten under the first key), then drop the old key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

VERSION = b"\x01"
KEY_ID_BYTES = 4
HEADER_BYTES = len(VERSION) + KEY_ID_BYTES
NONCE_BYTES = 12
TAG_BYTES = 16


class DecryptionError(Exception):
    """The data is too short, was tampered with, or none of the configured keys encrypted it."""


@dataclass(frozen=True)
class Key:
    secret: bytes
    id: bytes


def key_id(secret: bytes) -> bytes:
    return hmac.new(secret, b"synctv key id", hashlib.sha256).digest()[:KEY_ID_BYTES]


def keys() -> list[Key]:
    """The configured keys, the one that encrypts first."""
    configured = settings.ENCRYPTION_KEY
    found: list[Key] = []
    for text in str(configured).split(","):
        try:
            secret = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ImproperlyConfigured(
                "SYNCTV_ENCRYPTION_KEY must be base64 (a comma-separated list)"
            ) from exc
        if len(secret) != 32:
            raise ImproperlyConfigured("each SYNCTV_ENCRYPTION_KEY must decode to 32 bytes (AES-256)")
        found.append(Key(secret=secret, id=key_id(secret)))
    return found


def encrypt(plaintext: bytes, *, associated_data: bytes | None = None) -> bytes:
    key = keys()[0]
    nonce = os.urandom(NONCE_BYTES)
    return VERSION + key.id + nonce + AESGCM(key.secret).encrypt(nonce, plaintext, associated_data)


def _open(secret: bytes, body: bytes, associated_data: bytes | None) -> bytes | None:
    if len(body) < NONCE_BYTES + TAG_BYTES:
        return None
    try:
        return AESGCM(secret).decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], associated_data)
    except InvalidTag:
        return None


def decrypt(blob: bytes | memoryview | bytearray, *, associated_data: bytes | None = None) -> bytes:
    data = bytes(blob)
    configured = keys()
    if data[:1] == VERSION and len(data) >= HEADER_BYTES + NONCE_BYTES + TAG_BYTES:
        named = data[len(VERSION) : HEADER_BYTES]
        for key in configured:
            if hmac.compare_digest(key.id, named):
                opened = _open(key.secret, data[HEADER_BYTES:], associated_data)
                if opened is not None:
                    return opened
    # Written before key ids (nonce || ciphertext), or a 4-byte id that two keys share: try all.
    for key in configured:
        opened = _open(key.secret, data, associated_data)
        if opened is not None:
            return opened
    if len(data) < NONCE_BYTES + TAG_BYTES:
        raise DecryptionError("ciphertext too short")
    raise DecryptionError("ciphertext failed authentication with every configured key")


def encrypted_with_first_key(blob: bytes | memoryview | bytearray) -> bool:
    """Whether ``blob`` names the key that encrypts now (nothing to re-encrypt)."""
    data = bytes(blob)
    return data[:1] == VERSION and data[len(VERSION) : HEADER_BYTES] == keys()[0].id


# --- the encrypted columns, for re-encryption under a new key --------------------------------------


@dataclass(frozen=True)
class EncryptedColumn:
    """A BinaryField holding :func:`encrypt` output, and the associated data of each row."""

    model: str  # "app_label.ModelName"
    field: str
    associated_data: Callable[[Any], bytes | None]


ENCRYPTED_COLUMNS: list[EncryptedColumn] = []


def register_column(model: str, field: str, associated_data: Callable[[Any], bytes | None]) -> None:
    """Called from an app's ``ready()`` for every column of secrets it keeps."""
    column = EncryptedColumn(model=model, field=field, associated_data=associated_data)
    if column not in ENCRYPTED_COLUMNS:
        ENCRYPTED_COLUMNS.append(column)
