"""Room chat: checking and storing a message, and the event that carries it.

Chat is not audited (it is kept for moderation instead: apps.rooms.models.ChatMessage). The
per-user chat rate limit stays with the room consumer (apps.rooms.consumers), which checks it
between :func:`chat_check` and :func:`chat_send`, as it did before these existed.
"""

from __future__ import annotations

from apps.core import events, realtime
from apps.core.context import Origin
from apps.core.errors import InvalidInput
from apps.permissions.flags import Perm
from apps.permissions.rules import RoomActor
from apps.rooms.models import ChatMessage, Room
from apps.rooms.moderation import clean_text
from apps.rooms.serializers import user_ref
from apps.rooms.services._common import require


def chat_check(*, actor: RoomActor, text: str) -> None:
    """SEND_CHAT_MESSAGE, and something to say. No query: the consumer runs it on the event loop,
    before the rate limit, so a refused message costs neither a token nor a database call."""
    require(actor, Perm.SEND_CHAT_MESSAGE)
    if not text.strip():
        raise InvalidInput("text: say something (not only spaces).")


def chat_send(
    *, actor: RoomActor, room: Room, text: str, origin: Origin, announce: bool = True
) -> ChatMessage:
    """Store a chat message (one INSERT, no transaction of its own) and, with ``announce``, tell
    the room after commit. The text is masked and escaped once, here: what is stored is exactly
    what members receive, live and in the history.

    ``announce=False`` is for the room consumer, which publishes :func:`chat_event` itself, on
    the event loop through the hub, as soon as this returns: announcing from here would publish
    from the database thread with the blocking Redis client, holding one of the few threads
    every socket's database calls share for a Redis round trip (and for Redis's timeout when it
    is down) on every chat message. ``origin``: the services' common signature (chat is not
    audited)."""
    chat_check(actor=actor, text=text)
    message = ChatMessage.objects.create(room=room, user=actor.account, text=clean_text(text))
    if announce:
        realtime.room_event(room.pk, chat_event(message))
    return message


def chat_event(message: ChatMessage, *, history: bool = False) -> events.Chat:
    """The ``chat`` frame for ``message``; ``history`` for the ones a socket gets on connect."""
    # No user: the author's account is gone (the row outlives it, user set to NULL).
    author: events.UserRef = (
        user_ref(message.user) if message.user else {"id": None, "username": "", "guest": False}
    )
    if history:
        written_at_ms = int(message.created_at.timestamp() * 1000)
        return events.chat(id=message.pk, user=author, text=message.text, written_at_ms=written_at_ms)
    return events.chat(id=message.pk, user=author, text=message.text)
