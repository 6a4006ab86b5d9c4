"""Experiments, not production: the `ws` node with proposed changes applied as monkeypatches, so
their effect can be measured with bench/ws/load.js before anyone edits the app.

    VARIANTS=db_threads,lean_connect .venv/bin/python bench/ws/variant_node.py \
        synctv.asgi:application --port 8101 ...        # then uvicorn's own options

bench/ws/run (with VARIANTS=...) starts it with the Procfile `ws` line, `uvicorn` replaced by this
script, so the options and environment are the Procfile's. Each variant mirrors one proposal in
bench/ws/README.md ("What limits it"):

  no_health_check  CONN_HEALTH_CHECKS off: channels' database_sync_to_async calls
                   close_old_connections() around every call, which with health checks on costs a
                   `SELECT 1` before the first query of every call (only with persistent
                   connections, i.e. without DB_POOL_MAX_SIZE; the Procfile now sets a pool).
  db_threads       consumer DB calls on a small thread pool (thread_sensitive=False) instead of
                   the one thread every consumer of the process shares.
  lean_connect     connect with 5 queries instead of 8: the member row brings its user and room
                   (already loaded), and the room is loaded once, with its member count.
  frame_once       the hub frames an event once (header + UTF-8 payload) and writes the same bytes
                   to every local socket's transport (uvicorn websockets-sansio, no per-message
                   deflate), instead of one ASGI send + one websockets frame build per socket.
  baseline         nothing patched (the same launcher, for a like-for-like comparison)
  no_close_hop     skip channels' aclose_old_connections() thread hop on every received frame
                   (database_sync_to_async already does it around each DB call).
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "synctv.settings")

import django

django.setup()

VARIANTS = {v.strip() for v in os.environ.get("VARIANTS", "").split(",") if v.strip()}


def no_health_check() -> None:
    from django.db import connections

    connections["default"].settings_dict["CONN_HEALTH_CHECKS"] = False


def db_threads() -> None:
    from channels.db import DatabaseSyncToAsync

    from apps.rooms import consumers

    consumers.database_sync_to_async = functools.partial(DatabaseSyncToAsync, thread_sensitive=False)


def lean_connect() -> None:
    from apps.rooms import consumers, selectors
    from apps.rooms.consumers import RoomConsumer

    def _load_room_and_actor(self):
        room = selectors.room_get(self.room_id, with_counts=True)
        actor = selectors.room_actor(user=self.user, room=room, auth=self.claims)
        if actor.member is not None:
            actor.member.user = self.user  # the serializers follow these foreign keys
            actor.member.room = room
        return room, actor

    def _hello_and_history(self):
        # RoomConsumer._hello_and_history, with the room it already has (loaded with its count).
        state = selectors.playback_get(room=self.room)
        member = self.actor.member
        hello = {
            "type": "hello",
            "member": consumers._member_payload(member)
            if member is not None
            else {
                "user": self._user_ref(),
                "role": "site_admin",
                "status": "active",
                "effective_permissions": self.actor.permissions,
            },
            "room": consumers._room_payload(self.room),
            "playback": consumers._playback_payload(state),
        }
        rows = list(
            consumers.ChatMessage.objects.filter(room=self.room)
            .select_related("user")
            .order_by("-id")[: consumers.CHAT_HISTORY]
        )
        history = [
            {
                "type": "chat",
                "id": row.pk,
                "user": {"id": row.user_id, "username": row.user.public_name if row.user else ""},
                "text": row.text,
                "history": True,
                "server_time": int(row.created_at.timestamp() * 1000),
            }
            for row in reversed(rows)
        ]
        return hello, history

    RoomConsumer._load_room_and_actor = _load_room_and_actor
    RoomConsumer._hello_and_history = _hello_and_history


def frame_once() -> None:
    from websockets.frames import Frame, Opcode
    from websockets.protocol import OPEN

    from apps.rooms.hub import RoomHub

    original = RoomHub.send_many

    async def send_many(self, subscribers, message):
        text = message.get("text")
        if text is None or len(subscribers) < 2:
            return await original(self, subscribers, message)
        frame = Frame(Opcode.TEXT, text.encode()).serialize(mask=False, extensions=[])
        slow = []
        for sub in subscribers:
            proto = getattr(sub.base_send, "__self__", None)
            conn = getattr(proto, "conn", None)
            if (
                conn is None
                or conn.extensions
                or conn.state is not OPEN
                or proto.close_sent
                or not proto.writable.is_set()
            ):
                slow.append(sub)  # deflate, closing, or paused: the ordinary path
                continue
            proto.transport.write(frame)
            self.stats["delivered"] += 1
        if slow:
            await original(self, slow, message)

    RoomHub.send_many = send_many


def no_close_hop() -> None:
    from channels import consumer

    async def _noop():
        return None

    consumer.aclose_old_connections = _noop


KNOWN = {
    "no_health_check": no_health_check,
    "db_threads": db_threads,
    "lean_connect": lean_connect,
    "frame_once": frame_once,
    "no_close_hop": no_close_hop,
}
for name in sorted(VARIANTS - {"baseline"}):  # "baseline": the same launcher, nothing patched
    KNOWN[name]()
    print(f"variant applied: {name}", file=sys.stderr, flush=True)

if __name__ == "__main__":
    # The rest of the command line is uvicorn's (bench/ws/run passes the Procfile `ws` line with
    # `uvicorn` replaced by this script), so a variant runs with exactly the Procfile's options.
    import uvicorn.main

    sys.argv = ["uvicorn", *sys.argv[1:]]
    uvicorn.main.main()
