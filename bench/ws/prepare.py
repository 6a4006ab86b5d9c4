"""Seed the WebSocket benchmark database: users, login sessions (real access tokens), rooms and
memberships, through the project's own services; writes the token layout as JSON.

Run by bench/ws/run with the same environment as the ``ws`` nodes (SYNCTV_ENV=production, the
same DATABASE_URL and SYNCTV_ENCRYPTION_KEY), after ``migrate`` and ``generate_jwt_keys``, so the
tokens minted here verify on the nodes.

Layout (user indices into ``users``):
  fanout: one room, creator u0 (holds PLAY_CONTROL), members u0..u{fanout-1}
  chat:   ``chat_rooms`` rooms of ``chat_size`` members, users after the fan-out ones
  mem:    ``mem_rooms`` rooms of ``mem_size`` members, users u0..u{mem_rooms*mem_size-1}

Users get an unusable password (no Argon2 hash: 5,000 hashes would cost ~2 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "synctv.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth.hashers import make_password  # noqa: E402
from django.db import transaction  # noqa: E402

from apps.accounts.models import User  # noqa: E402
from apps.accounts.services import _session_open  # noqa: E402
from apps.core.context import Origin  # noqa: E402
from apps.rooms import services as room_services  # noqa: E402
from apps.rooms.models import MemberStatus, RoomMember, RoomRole  # noqa: E402

ORIGIN = Origin(ip="127.0.0.1", user_agent="synctv-wsbench")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fanout", type=int, default=1000)
    ap.add_argument("--chat-rooms", type=int, default=50)
    ap.add_argument("--chat-size", type=int, default=20)
    ap.add_argument("--mem-rooms", type=int, default=50)
    ap.add_argument("--mem-size", type=int, default=100)
    ap.add_argument(
        "--via-service",
        action="store_true",
        help="join every member through services.member_join (audited; ~6 ms each, ~40 s for 7,000)",
    )
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    n_users = max(args.fanout + args.chat_rooms * args.chat_size, args.mem_rooms * args.mem_size)
    t0 = time.monotonic()
    unusable = make_password(None)  # "!" + random: never matches, costs nothing to make
    User.objects.bulk_create(
        [User(username=f"wsb{i:05d}", password=unusable) for i in range(n_users)], batch_size=1000
    )
    users = list(User.objects.filter(username__startswith="wsb").order_by("username"))
    assert len(users) == n_users, len(users)
    t_users = time.monotonic()

    tokens: list[str] = []
    with transaction.atomic():
        for user in users:
            tokens.append(_session_open(user=user, origin=ORIGIN).access)
    t_tokens = time.monotonic()

    def make_room(name: str, member_idx: list[int]) -> dict:
        creator = users[member_idx[0]]
        with transaction.atomic():
            room = room_services.room_create(creator=creator, name=name, origin=ORIGIN)
            if args.via_service:
                for i in member_idx[1:]:
                    member, created = room_services.member_join(user=users[i], room=room, origin=ORIGIN)
                    assert created and member.status == "active", (i, member.status)
            else:
                # The row member_join writes for an open room (active member), without its audit
                # event: the WebSocket path reads only this row.
                RoomMember.objects.bulk_create(
                    [
                        RoomMember(room=room, user=users[i], role=RoomRole.MEMBER, status=MemberStatus.ACTIVE)
                        for i in member_idx[1:]
                    ]
                )
        return {"id": room.pk, "members": member_idx}

    layout = {"users": [{"id": u.pk, "token": t} for u, t in zip(users, tokens, strict=True)]}
    layout["fanout"] = make_room("wsbench fan-out", list(range(args.fanout)))
    base = args.fanout
    layout["chat"] = [
        make_room(
            f"wsbench chat {r}", list(range(base + r * args.chat_size, base + (r + 1) * args.chat_size))
        )
        for r in range(args.chat_rooms)
    ]
    layout["mem"] = [
        make_room(f"wsbench idle {r}", list(range(r * args.mem_size, (r + 1) * args.mem_size)))
        for r in range(args.mem_rooms)
    ]
    t_rooms = time.monotonic()
    Path(args.out).write_text(json.dumps(layout))
    n_members = args.fanout + args.chat_rooms * args.chat_size + args.mem_rooms * args.mem_size
    print(
        f"prepare: {n_users} users {t_users - t0:.1f}s, {n_users} sessions+tokens {t_tokens - t_users:.1f}s, "
        f"{1 + args.chat_rooms + args.mem_rooms} rooms / {n_members} memberships {t_rooms - t_tokens:.1f}s",
        flush=True,
    )


if __name__ == "__main__":
    main()
