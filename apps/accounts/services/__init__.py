"""Account writes, one module per concern: ``sessions`` (login, the API's and the admin's,
refresh-token rotation and reuse detection, logout, revocation, the purge of old sessions),
``users`` (registration, the password change, profile edits), ``email`` (address
verification, the password reset) and ``moderation`` (roles, bans,
unbans, root accounts); ``_common`` holds what they share (the token pair, the field checks).

Keyword-only, one transaction each, the audit event in that transaction. Every function that
takes ``actor`` checks the actor's right itself.

Callers use the package (``from apps.accounts import services``; ``services.user_login(...)``).
A test that replaces a module attribute patches the module that reads it
(``services.moderation.audit_record``): the names here are the same objects, re-exported, and
patching them changes nothing the functions see.
"""

from apps.accounts.services._common import TokenPair
from apps.accounts.services.email import (
    email_verification_resend,
    email_verification_resend_to,
    email_verified,
    email_verify,
    password_reset_confirm,
    password_reset_request,
)
from apps.accounts.services.moderation import user_ban, user_create_root, user_set_role, user_unban
from apps.accounts.services.sessions import (
    _session_open,
    session_logout,
    session_refresh,
    sessions_purge_expired,
    token_revoke_jti,
    tokens_revoke_all,
    user_admin_login,
    user_login,
    user_logout_all,
)
from apps.accounts.services.users import (
    UNCHANGED,
    email_as_answered,
    user_password_change,
    user_register,
    user_update_profile,
)

__all__ = [
    "UNCHANGED",
    "TokenPair",
    "_session_open",
    "email_as_answered",
    "email_verification_resend",
    "email_verification_resend_to",
    "email_verified",
    "email_verify",
    "password_reset_confirm",
    "password_reset_request",
    "session_logout",
    "session_refresh",
    "sessions_purge_expired",
    "token_revoke_jti",
    "tokens_revoke_all",
    "user_admin_login",
    "user_ban",
    "user_create_root",
    "user_login",
    "user_logout_all",
    "user_password_change",
    "user_register",
    "user_set_role",
    "user_unban",
    "user_update_profile",
]
