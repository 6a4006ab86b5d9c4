"""Test data built through the services, so tests exercise the real rules."""

from __future__ import annotations

import itertools

from apps.accounts import services
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
