"""Every action the audit log records (docs/security.md § The audit log).

The values are the strings stored in ``AuditEvent.action`` and hashed into the chain
(apps.audit.chain.event_digest): never change one, since old rows keep theirs and readers filter
on them. A new action is a new member here; ``audit_record`` refuses anything else, and
apps/audit/tests/test_actions.py checks that every member is written somewhere and that no call
passes a bare string.
"""

from __future__ import annotations

from enum import StrEnum


class AuditAction(StrEnum):
    # --- accounts: sign-up, login, sessions and tokens (apps.accounts.services) ---
    USER_REGISTER = "user.register"
    AUTH_LOGIN = "auth.login"
    AUTH_LOGIN_FAILED = "auth.login_failed"
    AUTH_LOGIN_REFUSED = "auth.login_refused"
    AUTH_LOGOUT = "auth.logout"
    AUTH_PASSWORD_CHANGE = "auth.password_change"
    AUTH_PASSWORD_CHANGE_FAILED = "auth.password_change_failed"
    AUTH_PASSWORD_RESET_REQUEST = "auth.password_reset_request"
    AUTH_PASSWORD_RESET = "auth.password_reset"
    EMAIL_VERIFIED = "email.verified"
    TOKEN_REFRESH = "token.refresh"
    TOKEN_REUSE_DETECTED = "token.reuse_detected"
    TOKEN_REVOKE = "token.revoke"
    TOKENS_REVOKE_ALL = "tokens.revoke_all"
    # --- accounts: OAuth2 sign-in (apps.accounts.oauth.services) ---
    OAUTH_LOGIN = "oauth.login"
    OAUTH_LINK = "oauth.link"
    OAUTH_UNLINK = "oauth.unlink"
    # --- accounts: profiles, site roles and bans ---
    USER_UPDATE = "user.update"
    USER_UPDATE_REFUSED = "user.update_refused"
    USER_ROLE_CHANGE = "user.role_change"
    USER_BAN = "user.ban"
    USER_UNBAN = "user.unban"
    USER_CREATE_ROOT = "user.create_root"
    # --- rooms (apps.rooms.services) ---
    ROOM_CREATE = "room.create"
    ROOM_UPDATE = "room.update"
    ROOM_SETTINGS_CHANGE = "room.settings_change"
    ROOM_DELETE = "room.delete"
    ROOM_CLOSE = "room.close"
    ROOM_REOPEN = "room.reopen"
    # --- membership and invites ---
    MEMBER_JOIN = "member.join"
    MEMBER_JOIN_PASSWORD_WRONG = "member.join_password_wrong"
    MEMBER_REQUEST = "member.request"
    MEMBER_GUEST_JOIN = "member.guest_join"
    MEMBER_LEAVE = "member.leave"
    MEMBER_APPROVE = "member.approve"
    MEMBER_ROLE_CHANGE = "member.role_change"
    MEMBER_PERMISSIONS_CHANGE = "member.permissions_change"
    MEMBER_KICK = "member.kick"
    MEMBER_BAN = "member.ban"
    MEMBER_UNBAN = "member.unban"
    INVITE_CREATE = "invite.create"
    # --- playlist and playback ---
    PLAYLIST_ADD = "playlist.add"
    PLAYLIST_EDIT = "playlist.edit"
    PLAYLIST_DELETE = "playlist.delete"
    PLAYLIST_CLEAR = "playlist.clear"
    PLAYLIST_REORDER = "playlist.reorder"
    PLAYBACK_UPDATE = "playback.update"
    # --- live streams (apps.streaming.services) ---
    STREAM_CREATE = "stream.create"
    STREAM_KEY_ROTATE = "stream.key_rotate"
    STREAM_DELETE = "stream.delete"
    STREAM_CUT = "stream.cut"
    STREAM_PUBLISH_START = "stream.publish_start"
    STREAM_PUBLISH_STOP = "stream.publish_stop"
    STREAM_PUBLISH_REFUSED = "stream.publish_refused"
    STREAM_FAILOVER = "stream.failover"  # apps.streaming.failover: a silent publisher replaced
    # --- the log itself (apps.audit.services) ---
    AUDIT_PURGED = "audit.purged"  # manage.py purge_audit_log: events before a date removed
