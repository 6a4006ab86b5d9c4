"""Who is online in a room, as one ``ws`` node knows it, and the batched member events its
sockets get (docs/realtime.md, "Who is online").

Presence (apps.rooms.presence) announces each user's arrival and departure once, as
``_presence`` on the room's channel, numbered in the order Redis applied them. Each node keeps,
per room it has sockets in, a ``Roster``: the online users (read from Redis once, when the node's
first socket of the room joins) kept current by those announcements. Everything a socket needs
about who is online comes from it, without a Redis read per socket:

- the ``hello``'s list: the first page (``synctv.v2``) or everyone (``synctv.v1``);
- the next pages (the ``members`` request);
- the changes since the last batch, told at most every FLUSH_SECONDS per room: one
  ``members_changed`` frame for every ``synctv.v2`` socket, built once; the same changes as
  ``member_left`` / ``member_joined`` frames for ``synctv.v1`` sockets (the events they always
  had, now batched too).

So a join costs every node O(1) (one small message), and the frames that tell a room of N
members about J joins number N x batches, not N x J.

Invariants:
- Announcements are applied in order: one whose ``v`` is not newer than the roster's is old news
  (the snapshot already holds it). Those that arrive while the snapshot is read wait for it.
- A socket is told of the changes made after its ``hello`` was taken (``listen``); a ``synctv.v1``
  socket gets none it already holds. A ``synctv.v2`` client applies a batch as a set of upserts
  and removals, so an overlap with its ``hello`` changes nothing.
- A socket without VIEW_MEMBER_LIST is told only about itself, and no count.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import json
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from apps.core import events, realtime
from apps.rooms.presence import Presence, user_of

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 0.5  # at most two batches a second per room and node
FIRST_FLUSH_SECONDS = 0.05  # a change in a quiet room goes out this soon (a burst shares it)
PAGE_SIZE = 50  # the hello's first page, and a ``members`` request's page unless it asks
V1, V2 = "synctv.v1", "synctv.v2"

Send = Callable[[list, str], Coroutine[Any, Any, None]]  # (sockets, text) -> written to each


class BadCursor(ValueError):
    """A ``members`` request's ``after`` that this server did not write."""


def sort_key(info: dict) -> tuple[str, str]:
    return (info.get("username", ""), info["user_id"])


def encode_cursor(key: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, ensure_ascii=False).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadCursor(cursor) from None
    if not (isinstance(key, list) and len(key) == 2 and all(isinstance(k, str) for k in key)):
        raise BadCursor(cursor)
    return key[0], key[1]


class Roster:
    """One room's online users on this node (see the module docstring)."""

    def __init__(self, room_id: str, send: Send) -> None:
        self.room_id = room_id
        self._send = send
        self.version: int | None = None  # the last ``v`` applied (None: no Redis numbering)
        self.members: dict[str, dict] = {}  # user id -> presence entry
        # user id -> the entry as JSON: encoded once, spliced into every hello, page and batch
        # that lists it (realtime.encode_with); at 1,000 members encoding the lists per frame
        # was the largest cost of a join.
        self._json: dict[str, str] = {}
        self._order: list[tuple[str, str]] = []  # sort keys of members, by username
        self.seq = 0  # changes applied on this node, to tell each socket only what is new to it
        self.listeners: dict[Any, int] = {}  # socket -> the seq its hello was taken at
        self._changes: dict[str, tuple[int, bool, dict]] = {}  # user -> (seq, joined?, entry)
        self._early: list[dict] | None = None  # announcements that came while loading
        self._loading: asyncio.Future | None = None
        self.loaded = False
        self._flush: asyncio.TimerHandle | None = None
        self._last_flush = 0.0
        self._tasks: set[asyncio.Task] = set()

    # --- loading -------------------------------------------------------------------------------

    async def ensure_loaded(self, presence: Presence) -> None:
        """Read the room from presence once; every socket joining meanwhile waits for that read."""
        if self.loaded:
            return
        if self._loading is None:
            self._loading = asyncio.ensure_future(self.load(presence))
        try:
            await asyncio.shield(self._loading)
        except Exception:
            self._loading = None  # the next joiner tries again
            raise

    async def load(self, presence: Presence) -> None:
        """(Re)read who is online; announcements that arrive meanwhile are applied after it, if
        newer. On a reload (the hub is back on Redis) the differences are told like changes."""
        self._early = []
        try:
            version, infos = await presence.snapshot(self.room_id)
        except BaseException:
            self._early = None
            raise
        early, self._early = self._early, None
        now = {info["user_id"]: info for info in infos}
        for user_id in [u for u in self.members if u not in now]:
            self._leave(user_id)
        for info in infos:
            if self.members.get(info["user_id"]) != info:
                self._join(info)
        if not self.loaded:  # the first read is nobody's news: each socket's hello holds it
            self._changes.clear()
        self.version = version
        self.loaded = True
        for event in early:
            self.apply(event)
        self._schedule()

    # --- changes -------------------------------------------------------------------------------

    def apply(self, event: dict) -> None:
        """A ``_presence`` announcement from the room's channel."""
        if self._early is not None:
            self._early.append(event)
            return
        if not self.loaded:
            return  # nobody on this node asked for the room yet: the snapshot will hold it
        v = event.get("v")
        if v is not None:
            if self.version is not None and v <= self.version:
                return
            self.version = v
        for user_id in event.get("left") or ():
            self._leave(user_id)
        for info in event.get("joined") or ():
            self._join(info)
        self._schedule()

    def note(self, event: dict) -> None:
        """A public member event that changes an entry (ready, role); sockets get it as it is."""
        kind = event.get("type")
        if kind == "member_ready":
            user_id, change = (event.get("user") or {}).get("id"), {"ready": event.get("ready")}
        elif kind == "member_updated":
            member = event.get("member") or {}
            user_id, change = (member.get("user") or {}).get("id"), {"role": member.get("role")}
        else:
            return
        info = self.members.get(user_id) if isinstance(user_id, str) else None
        if info is not None:
            info = self.members[info["user_id"]] = {**info, **change}
            self._json[info["user_id"]] = realtime.encode_value(info)

    def _join(self, info: dict) -> None:
        user_id = info["user_id"]
        old = self.members.get(user_id)
        if old is not None:
            self._unorder(old)
        self.members[user_id] = info
        self._json[user_id] = realtime.encode_value(info)
        bisect.insort(self._order, sort_key(info))
        self.seq += 1
        self._changes[user_id] = (self.seq, True, info)

    def _leave(self, user_id: str) -> None:
        info = self.members.pop(user_id, None)
        if info is None:
            return
        del self._json[user_id]
        self._unorder(info)
        self.seq += 1
        self._changes[user_id] = (self.seq, False, info)

    def _unorder(self, info: dict) -> None:
        key = sort_key(info)
        i = bisect.bisect_left(self._order, key)
        if i < len(self._order) and self._order[i] == key:
            del self._order[i]

    # --- reading -------------------------------------------------------------------------------

    def everyone(self) -> list[dict]:
        return [self.members[user_id] for _name, user_id in self._order]

    def page_json(self, after: str | None = None, limit: int = PAGE_SIZE) -> tuple[list[str], str | None]:
        """Members after the cursor ``after`` (None: from the start), by username, each entry as
        JSON (for realtime.encode_with), and the cursor of the next page (None: this is the
        last). Raises BadCursor."""
        keys, after = self._page_keys(after, limit)
        return [self._json[user_id] for _name, user_id in keys], after

    def _page_keys(self, after: str | None, limit: int) -> tuple[list[tuple[str, str]], str | None]:
        start = 0 if after is None else bisect.bisect_right(self._order, decode_cursor(after))
        keys = self._order[start : start + limit]
        more = start + limit < len(self._order)
        return keys, (encode_cursor(keys[-1]) if more else None)

    # --- telling the sockets --------------------------------------------------------------------

    def greet(self, socket: Any, hello: dict, me: dict) -> str:
        """``socket``'s hello, encoded, with who is online (``me``: its own entry, in case its
        arrival has not reached this roster yet); then ``listen``. No await in between, so
        nothing is missed or told twice."""
        mine = socket.user.pk in self.members
        me_json = self._json[socket.user.pk] if mine else realtime.encode_value(me)
        if not socket.sees_members():  # the field stays, with themselves only
            online = [me_json]
        elif socket.protocol == V2:
            online, after = self.page_json()
            hello["members_count"] = len(self.members) + (0 if mine else 1)
            hello["members_next"] = after
            if not mine:  # in its place by username, if that is on this page (it may hold one more)
                keys = self._page_keys(None, PAGE_SIZE)[0]
                place = bisect.bisect_right(keys, sort_key(me))
                if place < len(keys) or after is None:
                    online.insert(place, me_json)
        else:
            online = [self._json[user_id] for _name, user_id in self._order]
            if not mine:
                online.append(me_json)
        self.listen(socket)
        return realtime.encode_with(hello, "members_online", online)

    def listen(self, socket: Any) -> None:
        """From now on ``socket`` is told of changes newer than what it was just given."""
        self.listeners[socket] = self.seq

    def forget(self, socket: Any) -> None:
        self.listeners.pop(socket, None)

    def catch_up(self, socket: Any, user_id: str, protocol: str) -> list[Mapping[str, Any]]:
        """``socket`` (of ``user_id``) may see the member list from now on: it is told the
        batches from here, and these frames tell it who is online now, as its hello would have
        (``synctv.v2``: one ``members_changed`` with everyone; v1: one ``member_joined`` each, with
        their ``ready`` state)."""
        others = [info for info in self.everyone() if info["user_id"] != user_id]
        self.listen(socket)
        if protocol == V2:
            return [events.members_changed(joined=others, left=[], count=len(self.members))]
        return [
            events.member_joined(user=user_of(info), role=info.get("role"), ready=info.get("ready", True))
            for info in others
        ]

    def _schedule(self) -> None:
        if self._flush is not None or not self._changes:
            return
        loop = asyncio.get_running_loop()
        delay = max(FIRST_FLUSH_SECONDS, self._last_flush + FLUSH_SECONDS - loop.time())
        self._flush = loop.call_later(delay, self._flush_now)

    def _flush_now(self) -> None:
        self._flush = None
        self._last_flush = asyncio.get_running_loop().time()
        changes, self._changes = self._changes, {}
        if changes and self.listeners:
            task = asyncio.ensure_future(self._tell(sorted(changes.values(), key=lambda c: c[0])))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        for task in self._tasks:
            task.cancel()

    async def _tell(self, changes: list[tuple[int, bool, dict]]) -> None:
        """One batch: a frame built once per kind of socket, written to all of that kind."""
        first = changes[0][0]
        common: dict[str, list] = {V1: [], V2: []}
        own: list[tuple[Any, list]] = []
        for socket, since in list(self.listeners.items()):
            if getattr(socket, "_closing", False):
                continue
            sees = socket.sees_members()
            protocol = V2 if socket.protocol == V2 else V1
            if sees and (protocol == V2 or since < first):
                common[protocol].append(socket)
            else:  # just joined (v1: nothing twice), or only allowed to hear about themselves
                me = socket.user.pk
                mine = [c for c in changes if c[0] > since and (sees or c[2]["user_id"] == me)]
                if mine:
                    own.append((socket, mine))
            self.listeners[socket] = max(since, changes[-1][0])
        count = len(self.members)
        try:
            if common[V2]:
                await self._send(common[V2], self._v2_frame(changes, count))
            if common[V1]:
                for text in self._v1_frames(changes):
                    await self._send(common[V1], text)
            for socket, mine in own:
                sees = socket.sees_members()
                texts = (
                    [self._v2_frame(mine, count if sees else None)]
                    if socket.protocol == V2
                    else self._v1_frames(mine)
                )
                for text in texts:
                    await self._send([socket], text)
        except Exception:  # a socket that closed meanwhile; the next batch goes on
            logger.exception("telling the room %s who came and went failed", self.room_id)

    def _v2_frame(self, changes: list[tuple[int, bool, dict]], count: int | None) -> str:
        joined = [
            self._json.get(info["user_id"]) or realtime.encode_value(info) for _s, j, info in changes if j
        ]
        left = [info["user_id"] for _seq, is_join, info in changes if not is_join]
        event = events.members_changed(joined=[], left=left, count=count)
        return realtime.encode_with(event, "joined", joined)

    @staticmethod
    def _v1_frames(changes: list[tuple[int, bool, dict]]) -> list[str]:
        frames = []
        for _seq, is_join, info in changes:
            if is_join:
                ready = None if info.get("ready", True) else False  # absent: a fresh join is ready
                joined = events.member_joined(user=user_of(info), role=info.get("role"), ready=ready)
                frames.append(realtime.encode(joined))
            else:
                frames.append(realtime.encode(events.member_left(user=user_of(info))))
        return frames


class Rosters:
    """The rosters of this node's rooms, kept while the node has sockets in the room."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.by_channel: dict[str, Roster] = {}

    def get(self, room_id: str) -> Roster:
        channel = realtime.room_channel(room_id)
        roster = self.by_channel.get(channel)
        if roster is None:
            roster = self.by_channel[channel] = Roster(room_id, self._send)
        return roster

    def on_event(self, channel: str, event: dict) -> bool:
        """A room event seen by the hub; True when it was only for the rosters."""
        roster = self.by_channel.get(channel)
        if event.get("type") == "_presence":
            if roster is not None:
                roster.apply(event)
            return True
        if roster is not None:
            roster.note(event)
        return False

    def stop_telling(self) -> None:
        """The node is stopping: its sockets were told to reconnect and get a fresh hello
        elsewhere; no batch goes after that notice."""
        for roster in self.by_channel.values():
            roster.close()
            roster.listeners.clear()

    def drop(self, channel: str) -> None:
        roster = self.by_channel.pop(channel, None)
        if roster is not None:
            roster.close()

    async def reload(self, presence: Presence) -> None:
        """After Redis came back: what this node heard meanwhile may be incomplete."""
        for roster in list(self.by_channel.values()):
            if roster.loaded:
                try:
                    await roster.load(presence)
                except Exception:
                    logger.warning("reloading the room %s's roster failed", roster.room_id, exc_info=True)
