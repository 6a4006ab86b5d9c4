"""Room writes, one module per concern: ``rooms`` (create, update, delete, close),
``membership`` (join, leave, guests, invites, what members do to each other), ``playlist``,
``playback`` and ``chat``; ``_common`` holds what they share (the permission check, the row lock,
the audit call).

Keyword-only, one transaction each, the audit event in that transaction. Every function that
takes ``actor`` (a :class:`~apps.permissions.rules.RoomActor`) checks the actor's right itself
through apps.permissions; nothing here trusts the caller to have checked.

Callers use the package (``from apps.rooms import services``; ``services.member_join(...)``).
A test that replaces a module attribute patches the module that reads it
(``services.membership.check_password``, ``services.playlist.MAX_MOVIES_PER_ROOM``): the names
here are the same objects, re-exported, and patching them changes nothing the functions see.
"""

from apps.rooms.services._common import require
from apps.rooms.services.chat import chat_check, chat_event, chat_send
from apps.rooms.services.membership import (
    actor_for_user,
    guest_address_keys,
    guest_join,
    invite_create,
    member_approve,
    member_ban,
    member_join,
    member_kick,
    member_leave,
    member_unban,
    member_update,
)
from apps.rooms.services.playback import playback_update
from apps.rooms.services.playlist import (
    MAX_MOVIES_PER_ROOM,
    movie_delete,
    movie_edit,
    movies_add,
    playlist_clear,
    playlist_reorder,
)
from apps.rooms.services.rooms import room_create, room_delete, room_set_closed, room_update

__all__ = [
    "MAX_MOVIES_PER_ROOM",
    "actor_for_user",
    "chat_check",
    "chat_event",
    "chat_send",
    "guest_address_keys",
    "guest_join",
    "invite_create",
    "member_approve",
    "member_ban",
    "member_join",
    "member_kick",
    "member_leave",
    "member_unban",
    "member_update",
    "movie_delete",
    "movie_edit",
    "movies_add",
    "playback_update",
    "playlist_clear",
    "playlist_reorder",
    "require",
    "room_create",
    "room_delete",
    "room_set_closed",
    "room_update",
]
