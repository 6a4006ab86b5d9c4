"""Test data built through the services, so tests exercise the real rules."""

from __future__ import annotations

import functools
import itertools

from django.contrib.auth.hashers import make_password
from django.db import transaction

from apps.accounts import services
from apps.accounts.models import Role, User
from apps.core.context import Origin

PASSWORD = "Corr3ct-horse"
TEST_ORIGIN = Origin(ip="127.0.0.1", user_agent="pytest")
_counter = itertools.count()


def make_user(username: str | None = None, *, password: str = PASSWORD, email: str | None = None):
    """Register a user; returns (user, TokenPair)."""
    username = username or f"user{next(_counter)}"
    return services.user_register(username=username, password=password, email=email, origin=TEST_ORIGIN)


def login(user, *, password: str = PASSWORD):
    return services.user_login(identifier=user.username, password=password, origin=TEST_ORIGIN)[1]


@functools.cache
def password_hash() -> str:
    """The hash of ``PASSWORD``, computed once (Argon2id costs ~25 ms a hash)."""
    return make_password(PASSWORD)


def create_user(username: str, role: str = Role.USER, email: str | None = None) -> User:
    """A user row written directly (no registration, no session), with ``PASSWORD``."""
    return User.objects.create(username=username, role=role, email=email, password=password_hash())


def open_session(user: User):
    """A login session for ``user`` opened through the services; returns its TokenPair."""
    with transaction.atomic():
        return services._session_open(user=user, origin=Origin(ip="127.0.0.1", user_agent="setup"))
