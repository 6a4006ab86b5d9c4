"""What a socket is told when it joins a room: the ``hello`` and the chat history.

Read on the consumer's database thread, 2 queries (the room and the membership are the ones the
connect already loaded); the hello's ``members_online`` comes from presence afterwards
(docs/realtime.md, "Joining a room").
"""

from __future__ import annotations

from typing import Any

from apps.accounts.models import User
from apps.core import events
from apps.permissions.rules import RoomActor
from apps.rooms import selectors, services
from apps.rooms.models import Room
from apps.rooms.serializers import MemberSerializer, RoomSerializer, user_ref

CHAT_HISTORY = 50  # lines of chat a joining socket gets


def actor_role(actor: RoomActor) -> str:
    """The role members see for this actor: a site admin who is not a member shows as such."""
    return actor.member.role if actor.member is not None else "site_admin"


def member_payload(actor: RoomActor, user: User) -> dict[str, Any]:
    """The hello's ``member``: the membership row, or what stands for it for a site admin."""
    if actor.member is not None:
        return dict(MemberSerializer(actor.member).data)
    return {
        "user": user_ref(user),
        "role": "site_admin",
        "status": "active",
        "effective_permissions": actor.permissions,
    }


def hello_and_history(*, room: Room, actor: RoomActor, user: User) -> tuple[events.Hello, list[events.Chat]]:
    """The hello (``members_online`` empty, for the caller to fill) and the last chat lines."""
    state = selectors.playback_get(room=room)
    rows = selectors.chat_history(room=room, limit=CHAT_HISTORY)
    history = [services.chat_event(row, history=True) for row in rows]
    hello = events.hello(
        member=member_payload(actor, user),
        room=dict(RoomSerializer(room).data),
        playback=events.playback_state(selectors.playback_view(state)),
        members_online=[],
    )
    return hello, history
