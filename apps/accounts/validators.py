"""The password rule (docs/security.md, "Who is asking"), as a Django password validator."""

from __future__ import annotations

from django.core.exceptions import ValidationError

MIN_LENGTH = 8
MAX_LENGTH = 128
MIN_CLASSES = 3

_CLASSES = (
    ("an uppercase letter", str.isupper),
    ("a lowercase letter", str.islower),
    ("a digit", str.isdigit),
    ("a special character", lambda c: not c.isalnum()),
)


class PasswordPolicyValidator:
    """8 to 128 characters, with at least 3 of: uppercase, lowercase, digit, special."""

    def validate(self, password: str, user=None) -> None:
        errors = []
        if len(password) < MIN_LENGTH:
            errors.append(
                ValidationError(
                    f"Password is too short: it must be at least {MIN_LENGTH} characters.",
                    code="password_too_short",
                )
            )
        if len(password) > MAX_LENGTH:
            errors.append(
                ValidationError(
                    f"Password is too long: it must be at most {MAX_LENGTH} characters.",
                    code="password_too_long",
                )
            )
        missing = [name for name, test in _CLASSES if not any(test(c) for c in password)]
        if len(_CLASSES) - len(missing) < MIN_CLASSES:
            errors.append(
                ValidationError(
                    "Password must contain at least 3 of: an uppercase letter, a lowercase "
                    f"letter, a digit, a special character; it lacks {' and '.join(missing)}.",
                    code="password_too_simple",
                )
            )
        if errors:
            raise ValidationError(errors)

    def get_help_text(self) -> str:
        return (
            f"{MIN_LENGTH} to {MAX_LENGTH} characters, with at least {MIN_CLASSES} of: uppercase "
            "letter, lowercase letter, digit, special character."
        )
