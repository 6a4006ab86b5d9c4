"""Opaque identifiers: random, URL-safe, not sequential (docs/api.md: ids are opaque strings)."""

import secrets

ID_LENGTH = 16  # 12 random bytes -> 16 base64url characters, 96 bits


def new_id() -> str:
    # Never a leading "-": an id is also a command-line argument (`manage.py ban_user <id>`), and
    # argparse reads "-abc…" as an option. One id in 64 started so, and the command refused it.
    while True:
        value = secrets.token_urlsafe(12)
        if not value.startswith("-"):
            return value
