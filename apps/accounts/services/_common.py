"""What the account services share: the token pair they hand out and the input checks that
answer in the error format of a field (``InvalidInput`` with ``details`` per field)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError as DjangoValidationError

from apps.accounts.models import User
from apps.core.errors import InvalidInput


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str


def _epoch_to_datetime(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


def _field_errors(field: str, messages: Iterable[str]) -> InvalidInput:
    listed = list(messages)
    return InvalidInput(f"{field}: {listed[0]}", details={field: listed})


def _check_password_rule(password: str, user: User | None, field: str) -> None:
    try:
        password_validation.validate_password(password, user)
    except DjangoValidationError as exc:
        raise _field_errors(field, exc.messages) from exc


def _check_unique(
    *, username: str | None = None, email: str | None = None, exclude_pk: str | None = None
) -> None:
    qs = User.objects.with_ci()
    if exclude_pk is not None:
        qs = qs.exclude(pk=exclude_pk)
    if username is not None and qs.filter(username_ci=username.lower()).exists():
        raise _field_errors("username", ["This username is taken."])
    if email and qs.filter(email_ci=email.lower()).exists():
        raise _field_errors("email", ["This email address is already registered."])
