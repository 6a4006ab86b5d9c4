"""The 64-bit room permission mask (docs/security.md, "What they may do"): names and bit positions
are a contract.

New bits, if ever needed, start at 1 << 16 and are documented in docs/api.md.
"""

from __future__ import annotations

from enum import IntFlag


class Perm(IntFlag):
    # Basic bits
    SEND_CHAT_MESSAGE = 1 << 0
    SEND_EMOJI = 1 << 1
    ADD_MOVIE = 1 << 2
    DELETE_MOVIE = 1 << 3
    EDIT_MOVIE = 1 << 4
    REORDER_PLAYLIST = 1 << 5
    PLAY_CONTROL = 1 << 6
    CHANGE_CURRENT_MOVIE = 1 << 7
    INVITE_MEMBERS = 1 << 8
    VIEW_MEMBER_LIST = 1 << 9
    # Admin bits
    KICK_MEMBERS = 1 << 10
    BAN_MEMBERS = 1 << 11
    EDIT_ROOM_INFO = 1 << 12
    EDIT_ROOM_SETTINGS = 1 << 13
    MANAGE_ADMINS = 1 << 14
    VIEW_AUDIT_LOG = 1 << 15


NONE = 0
BASIC_BITS = int(
    Perm.SEND_CHAT_MESSAGE
    | Perm.SEND_EMOJI
    | Perm.ADD_MOVIE
    | Perm.DELETE_MOVIE
    | Perm.EDIT_MOVIE
    | Perm.REORDER_PLAYLIST
    | Perm.PLAY_CONTROL
    | Perm.CHANGE_CURRENT_MOVIE
    | Perm.INVITE_MEMBERS
    | Perm.VIEW_MEMBER_LIST
)
ADMIN_BITS = int(
    Perm.KICK_MEMBERS
    | Perm.BAN_MEMBERS
    | Perm.EDIT_ROOM_INFO
    | Perm.EDIT_ROOM_SETTINGS
    | Perm.MANAGE_ADMINS
    | Perm.VIEW_AUDIT_LOG
)
ALL_BITS = BASIC_BITS | ADMIN_BITS

DEFAULT_MEMBER = int(Perm.SEND_CHAT_MESSAGE | Perm.SEND_EMOJI | Perm.ADD_MOVIE | Perm.VIEW_MEMBER_LIST)
DEFAULT_ADMIN = BASIC_BITS | int(
    Perm.KICK_MEMBERS | Perm.BAN_MEMBERS | Perm.EDIT_ROOM_INFO | Perm.EDIT_ROOM_SETTINGS | Perm.VIEW_AUDIT_LOG
)
DEFAULT_GUEST = int(Perm.SEND_CHAT_MESSAGE | Perm.SEND_EMOJI | Perm.VIEW_MEMBER_LIST)
# A guest can never hold more than this, whatever the room's guest mask says.
GUEST_CAP = DEFAULT_GUEST


def names(mask: int) -> list[str]:
    """The names of the bits set in ``mask`` (unknown bits are ignored)."""
    return [p.name for p in Perm if mask & p and p.name]


def is_valid_mask(mask: object) -> bool:
    return isinstance(mask, int) and not isinstance(mask, bool) and 0 <= mask <= ALL_BITS
