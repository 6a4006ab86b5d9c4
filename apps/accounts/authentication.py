"""DRF authentication: ``Authorization: Bearer <RS256 access token>``."""

from __future__ import annotations

from rest_framework.exceptions import APIException
from rest_framework_simplejwt.authentication import JWTAuthentication

from apps.accounts.selectors import authenticate_access_token


class BearerAuthentication(JWTAuthentication):
    """Strict on protected endpoints; on endpoints that allow anonymous access
    (views with ``anonymous_allowed = True``) a missing or bad token means anonymous,
    never an error (optional authentication; docs/security.md, "Who is asking")."""

    def authenticate(self, request):
        header = self.get_header(request)
        if header is None:
            return None
        try:
            raw = self.get_raw_token(header)  # a malformed header raises AuthenticationFailed
            return authenticate_access_token(raw) if raw is not None else None
        except APIException:
            view = (getattr(request, "parser_context", None) or {}).get("view")
            if getattr(view, "anonymous_allowed", False):
                return None
            raise
