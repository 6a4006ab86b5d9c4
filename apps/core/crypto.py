"""AES-256-GCM for secrets at rest (docs/security.md: private signing keys).

Stored form: 12-byte random nonce || ciphertext+tag. The key comes from configuration
(SYNCTV_ENCRYPTION_KEY, 32 bytes base64), never from public data.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

NONCE_BYTES = 12
TAG_BYTES = 16


class DecryptionError(Exception):
    """The data is too short, was tampered with, or was encrypted with another key."""


def _key() -> bytes:
    try:
        key = base64.b64decode(settings.ENCRYPTION_KEY, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImproperlyConfigured("SYNCTV_ENCRYPTION_KEY must be base64") from exc
    if len(key) != 32:
        raise ImproperlyConfigured("SYNCTV_ENCRYPTION_KEY must decode to 32 bytes (AES-256)")
    return key


def encrypt(plaintext: bytes, *, associated_data: bytes | None = None) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(_key()).encrypt(nonce, plaintext, associated_data)


def decrypt(blob: bytes, *, associated_data: bytes | None = None) -> bytes:
    blob = bytes(blob)
    if len(blob) < NONCE_BYTES + TAG_BYTES:
        raise DecryptionError("ciphertext too short")
    try:
        return AESGCM(_key()).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], associated_data)
    except InvalidTag as exc:
        raise DecryptionError("ciphertext failed authentication") from exc
