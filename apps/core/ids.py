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


def plausible_id(value: object) -> bool:
    """Could ``value`` be one of our ids? Short, non-empty strings without a NUL byte (PostgreSQL
    refuses a NUL in a query with an error, which would be a 500). Selectors answer NotFound for
    anything else before asking the database. Up to 32 characters: rows created with longer ids
    than ``new_id`` makes (fixtures, imports) still resolve."""
    return isinstance(value, str) and 0 < len(value) <= 32 and "\x00" not in value
