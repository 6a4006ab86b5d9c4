"""Opaque identifiers: random, URL-safe, not sequential (docs/api.md: ids are opaque strings)."""

import secrets

ID_LENGTH = 16  # 12 random bytes -> 16 base64url characters, 96 bits


def new_id() -> str:
    return secrets.token_urlsafe(12)
