"""Django's ``authenticate()`` (the admin's login form) through the accounts login service.

The admin used to check passwords with Django's ModelBackend: no rate limit and no audit event,
so it was the way around the API login's limits. Now both logins are one service call
(``services.user_admin_login`` / ``user_login``) with one budget per IP and per account.
"""

from __future__ import annotations

from django.contrib.auth.backends import ModelBackend

from apps.accounts import services
from apps.core.context import SYSTEM, Origin
from apps.core.errors import AccountPending, InvalidCredentials, UserBanned


class StaffLoginBackend(ModelBackend):
    """Password logins for staff (the admin). ``RateLimited`` is not caught: the login form turns
    it into its own error (apps/accounts/admin.py); any other refusal is Django's "no user".
    Sessions are loaded by ModelBackend's ``get_user`` as before."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None or password is None:
            return None
        origin = Origin.of(request) if request is not None else SYSTEM
        try:
            return services.user_admin_login(identifier=username, password=password, origin=origin)
        except (InvalidCredentials, UserBanned, AccountPending):
            return None
