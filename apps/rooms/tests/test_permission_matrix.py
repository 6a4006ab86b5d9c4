"""The permission matrix: every rooms endpoint (every method) x every kind of caller.

One table, one row per endpoint, one column per caller (apps.rooms.tests.conftest.ACTOR_NAMES).
Each row is one test. The world is built once for the module (``shared_room_world``); every
cell runs inside a savepoint that is rolled back afterwards, so a destructive cell (delete the
room, kick the target, clear the playlist) never leaks into the next one, and each row checks
that the database is back at the world's state at its start and its end.

For every cell:
- the status (and, for refusals, the error code and the error body shape) is the table's;
- a refusal changed nothing: no row of any room table, account, session or audit event;
- a read changed nothing either; an allowed write changed something and left an audit event.

Cell values: a 2xx status, or NA (401 not_authenticated), UB (403 user_banned), NIR (403
not_in_room), PD (403 permission_denied).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.urls import URLPattern

from apps.core.tests.helpers import client_for, error_code
from apps.permissions.flags import Perm
from apps.rooms import urls as room_urls
from apps.rooms.models import RoomMember
from apps.rooms.tests.conftest import (
    ACTOR_NAMES,
    ROOMS,
    RoomWorld,
    db_state,
    rolled_back,
)


@dataclass(frozen=True)
class Refused:
    status: int
    code: str

    def __repr__(self) -> str:
        return f"{self.status} {self.code}"


NA = Refused(401, "not_authenticated")
UB = Refused(403, "user_banned")
NIR = Refused(403, "not_in_room")
PD = Refused(403, "permission_denied")
CELL_VALUES = {"NA": NA, "UB": UB, "NIR": NIR, "PD": PD}

COLUMNS = "anon banned outsider guest fguest rbanned pending member m+ m- admin creator site"
COLUMN_ACTORS = dict(zip(COLUMNS.split(), ACTOR_NAMES, strict=True))

# fguest: a guest token of another room. rbanned: banned from this room. pending: waiting for
# approval. m+: PLAY_CONTROL added. m-: ADD_MOVIE removed. site: a site admin, not a member.
TABLE = """
endpoint                                      anon banned outsider guest fguest rbanned pending member m+  m-  admin creator site
GET    rooms                                  200  200    200      200   200    200     200     200    200 200 200   200     200
POST   rooms                                  NA   UB     201      PD    PD     201     201     201    201 201 201   201     201
GET    rooms/{room}                           200  200    200      200   200    200     200     200    200 200 200   200     200
PATCH  rooms/{room}                           NA   UB     NIR      PD    NIR    NIR     NIR     PD     PD  PD  200   200     200
PATCH  rooms/{room} (settings)                NA   UB     NIR      PD    NIR    NIR     NIR     PD     PD  PD  200   200     200
DELETE rooms/{room}                           NA   UB     PD       PD    PD     PD      PD      PD     PD  PD  PD    204     204
POST   rooms/{room}/join                      NA   UB     201      PD    PD     PD      202     200    200 200 200   200     201
POST   rooms/{room}/leave                     NA   UB     NIR      204   NIR    NIR     204     204    204 204 204   PD      NIR
POST   rooms/{room}/guest                     200  200    200      200   200    200     200     200    200 200 200   200     200
POST   rooms/{room}/invites                   NA   UB     NIR      PD    PD     NIR     NIR     PD     PD  PD  201   201     201
GET    rooms/{room}/members                   NA   UB     NIR      200   NIR    NIR     NIR     200    200 200 200   200     200
GET    rooms/{room}/members/me                NA   UB     NIR      200   NIR    NIR     200     200    200 200 200   200     NIR
PATCH  rooms/{room}/members/{target}          NA   UB     NIR      PD    PD     NIR     NIR     PD     PD  PD  200   200     200
POST   rooms/{room}/members/{target}/kick     NA   UB     NIR      PD    PD     NIR     NIR     PD     PD  PD  204   204     204
POST   rooms/{room}/members/{target}/ban      NA   UB     NIR      PD    PD     NIR     NIR     PD     PD  PD  204   204     204
POST   rooms/{room}/members/{rbanned}/unban   NA   UB     NIR      PD    PD     NIR     NIR     PD     PD  PD  204   204     204
POST   rooms/{room}/members/{pending}/approve NA   UB     NIR      PD    PD     NIR     NIR     PD     PD  PD  200   200     200
GET    rooms/{room}/audit-log                 NA   UB     NIR      PD    PD     NIR     NIR     PD     PD  PD  200   200     200
GET    rooms/{room}/movies                    NA   UB     NIR      200   NIR    NIR     NIR     200    200 200 200   200     200
POST   rooms/{room}/movies                    NA   UB     NIR      PD    NIR    NIR     NIR     201    201 PD  201   201     201
DELETE rooms/{room}/movies                    NA   UB     NIR      PD    NIR    NIR     NIR     PD     PD  PD  204   204     204
PATCH  rooms/{room}/movies/{movie}            NA   UB     NIR      PD    PD     NIR     NIR     PD     PD  PD  200   200     200
DELETE rooms/{room}/movies/{movie}            NA   UB     NIR      PD    PD     NIR     NIR     PD     PD  PD  204   204     204
POST   rooms/{room}/movies/reorder            NA   UB     NIR      PD    PD     NIR     NIR     PD     PD  PD  200   200     200
GET    rooms/{room}/movies/current            NA   UB     NIR      200   NIR    NIR     NIR     200    200 200 200   200     200
GET    rooms/{room}/playback                  NA   UB     NIR      200   NIR    NIR     NIR     200    200 200 200   200     200
PUT    rooms/{room}/playback                  NA   UB     NIR      PD    NIR    NIR     NIR     PD     200 PD  200   200     200
PUT    rooms/{room}/playback (movie)          NA   UB     NIR      PD    NIR    NIR     NIR     PD     PD  PD  200   200     200
"""

MOVIE = {"name": "Added", "url": "https://media.example.com/added.mp4"}

# The body of each row's request (rows not listed send none).
BODIES: dict[str, dict | Callable[[RoomWorld], dict]] = {
    "POST rooms": {"name": "Another room"},
    "PATCH rooms/{room}": {"name": "Renamed"},
    "PATCH rooms/{room} (settings)": {"settings": {"hidden": True}},
    "POST rooms/{room}/join": {},
    "POST rooms/{room}/guest": {"name": "Visitor"},
    "POST rooms/{room}/invites": {"max_uses": 3},
    "PATCH rooms/{room}/members/{target}": {"permissions_added": int(Perm.PLAY_CONTROL)},
    "POST rooms/{room}/members/{target}/ban": {"reason": "spam"},
    "POST rooms/{room}/movies": MOVIE,
    "PATCH rooms/{room}/movies/{movie}": {"name": "Renamed movie"},
    "POST rooms/{room}/movies/reorder": lambda w: {"order": [w.movies[1].pk, w.movies[0].pk]},
    "PUT rooms/{room}/playback": {"playing": True},
    "PUT rooms/{room}/playback (movie)": lambda w: {"movie_id": w.movies[1].pk},
}
# 2xx answers of a writing endpoint that legitimately change nothing.
NOOP = {("POST rooms/{room}/join", 200), ("POST rooms/{room}/join", 202)}


@dataclass(frozen=True)
class Row:
    label: str  # "METHOD path[ (variant)]", also the test id
    method: str
    path: str
    cells: dict[str, int | Refused]  # actor name -> expectation


def _parse(table: str) -> list[Row]:
    lines = [line for line in table.strip().splitlines() if line.strip()]
    header = lines[0].split()
    assert header[0] == "endpoint" and " ".join(header[1:]) == COLUMNS, header
    rows = []
    for line in lines[1:]:
        match = re.match(r"^(GET|POST|PUT|PATCH|DELETE)\s+(\S+)(\s+\([a-z]+\))?\s+(.*)$", line)
        assert match, line
        method, path, variant, rest = match.groups()
        values = rest.split()
        assert len(values) == len(COLUMN_ACTORS), line
        cells = {
            actor: (CELL_VALUES[value] if value in CELL_VALUES else int(value))
            for actor, value in zip(COLUMN_ACTORS.values(), values, strict=True)
        }
        label = f"{method} {path}{variant.rstrip() if variant else ''}"
        label = re.sub(r"\s+", " ", label)
        rows.append(Row(label=label, method=method, path=path, cells=cells))
    return rows


ROWS = _parse(TABLE)


def _url(world: RoomWorld, path: str) -> str:
    ids = {
        "room": world.room.pk,
        "target": world.target.id,
        "rbanned": world.actors["room_banned"].id,
        "pending": world.actors["pending"].id,
        "movie": world.movies[0].pk,
    }
    return f"/api/v1/{path.format(**ids)}"


def _body(world: RoomWorld, label: str) -> Any:
    body = BODIES.get(label)
    return body(world) if callable(body) else body


def _call(client, method: str, url: str, body: Any):
    kwargs = {"format": "json"} if body is not None else {}
    if body is not None:
        kwargs["data"] = body
    return getattr(client, method.lower())(url, **kwargs)


def _check_cell(world: RoomWorld, row: Row, actor_name: str, before: dict) -> str | None:
    """Run one cell (the caller rolls it back) from the state ``before``. Returns a failure
    description or None."""
    expected = row.cells[actor_name]
    url = _url(world, row.path)
    client = world.client(actor_name)
    response = _call(client, row.method, url, _body(world, row.label))
    after = db_state()
    got = f"{response.status_code} {error_code(response) or ''}".strip()
    if isinstance(expected, Refused):
        if response.status_code != expected.status or error_code(response) != expected.code:
            return f"{actor_name}: expected {expected!r}, got {got}: {response.content[:300]!r}"
        body = response.json()
        if set(body) != {"error"} or set(body["error"]) != {"code", "message", "details"}:
            return f"{actor_name}: refusal without the error body: {body}"
        if after != before:
            changed = sorted(k for k in before if before[k] != after[k])
            return f"{actor_name}: refused ({got}) but the database changed: {changed}"
        return None
    if response.status_code != expected:
        return f"{actor_name}: expected {expected}, got {got}: {response.content[:300]!r}"
    if row.method == "GET" or (row.label, expected) in NOOP:
        if after != before:
            changed = sorted(k for k in before if before[k] != after[k])
            return f"{actor_name}: {row.label} answered {got} and must change nothing, but changed {changed}"
    else:
        if after == before:
            return f"{actor_name}: {row.label} answered {got} but changed nothing"
        if len(after["audit"]) <= len(before["audit"]):
            return f"{actor_name}: {row.label} answered {got} without an audit event"
    return None


@pytest.mark.parametrize("row", ROWS, ids=[row.label for row in ROWS])
def test_permission_matrix(row: Row, world: RoomWorld):
    baseline = world.snapshot  # checked by the shared_room_world fixture
    failures = []
    for actor_name in ACTOR_NAMES:
        with rolled_back():
            failure = _check_cell(world, row, actor_name, baseline)
        if failure:
            failures.append(failure)
    assert db_state() == baseline, f"a cell of {row.label} leaked past its rollback"
    assert not failures, "\n".join([f"{row.label}:", *failures])


# --- the table itself -----------------------------------------------------------------------------


def _route_key(method: str, route: str) -> tuple[str, str]:
    return method, re.sub(r"<[^>]+>|\{[^}]+\}", "*", route)


def test_table_covers_every_endpoint_and_method():
    """Every URL pattern of apps/rooms/urls.py with every method its view implements has a row
    (and the table has no row for something that does not exist)."""
    routed = set()
    for pattern in room_urls.urlpatterns:
        assert isinstance(pattern, URLPattern)
        view = pattern.callback.view_class
        for method in ("get", "post", "put", "patch", "delete"):
            if hasattr(view, method):
                routed.add(_route_key(method.upper(), str(pattern.pattern)))
    in_table = {_route_key(row.method, row.path) for row in ROWS}
    assert routed - in_table == set(), "endpoints missing from the matrix"
    assert in_table - routed == set(), "matrix rows for endpoints that do not exist"
    assert set(BODIES) <= {row.label for row in ROWS}
    # Every writing row has a body unless it needs none.
    bodyless_writes = {
        row.label for row in ROWS if row.method in ("POST", "PUT", "PATCH") and row.label not in BODIES
    }
    assert bodyless_writes == {
        "POST rooms/{room}/leave",
        "POST rooms/{room}/members/{target}/kick",
        "POST rooms/{room}/members/{rbanned}/unban",
        "POST rooms/{room}/members/{pending}/approve",
    }


def test_table_refuses_what_the_rules_say():
    """Sanity of the expectations themselves: anonymous and site-banned callers are refused
    everywhere a token is needed; nobody who is not an active member (or a site admin) gets in
    where membership is needed; a guest token of another room is refused wherever an outsider
    is, and never gets more than an outsider."""
    open_rows = {"GET rooms", "GET rooms/{room}", "POST rooms/{room}/guest"}
    for row in ROWS:
        allowed = {a for a, v in row.cells.items() if not isinstance(v, Refused)}
        if row.label in open_rows:
            assert allowed == set(ACTOR_NAMES), row.label
            continue
        assert row.cells["anon"] == NA and row.cells["banned"] == UB, row.label
        assert "foreign_guest" not in allowed, f"{row.label}: a guest of another room is allowed"
        if isinstance(row.cells["outsider"], Refused):
            assert {"room_banned", "foreign_guest"} & allowed == set(), row.label
        if not isinstance(row.cells["guest"], Refused) and isinstance(row.cells["outsider"], Refused):
            # What a guest may do in its own room, a guest of another room meets as an outsider.
            assert row.cells["foreign_guest"] == row.cells["outsider"], row.label


# --- guest tokens are bound to their room -----------------------------------------------------------


GUEST_READS = ("members", "members/me", "movies", "movies/current", "playback")


def test_guest_token_of_room_a_is_an_outsider_in_room_b(world: RoomWorld):
    """The guest of the world's room, in the other room: refused exactly like an outsider on
    what guests may read, and on every write."""
    guest = world.actors["guest"]
    outsider = world.actors["outsider"]
    other = world.other_room
    for suffix in GUEST_READS:
        url = f"{ROOMS}/{other.pk}/{suffix}"
        own = guest.client.get(f"{ROOMS}/{world.room.pk}/{suffix}")
        assert own.status_code == 200, (suffix, own.content)
        as_guest = guest.client.get(url)
        as_outsider = outsider.client.get(url)
        assert (as_guest.status_code, error_code(as_guest)) == (403, "not_in_room"), suffix
        assert (as_outsider.status_code, error_code(as_outsider)) == (403, "not_in_room"), suffix
    before = db_state()
    writes = [
        ("post", "movies", MOVIE),
        ("put", "playback", {"playing": True}),
        ("delete", "movies", None),
        ("patch", "", {"name": "Taken"}),
        ("post", "invites", {}),
    ]
    for method, suffix, body in writes:
        url = f"{ROOMS}/{other.pk}" + (f"/{suffix}" if suffix else "")
        response = _call(guest.client, method, url, body)
        assert response.status_code == 403, (method, suffix, response.content)
    assert db_state() == before


def test_guest_token_is_bound_to_its_room_even_with_a_membership_elsewhere(world: RoomWorld):
    """Defence in depth: even if a guest account somehow held a membership in another room
    (nothing in the API makes one), its token still opens only the room named in it (claim
    ``rid``). Without the rid check this guest would read and control the other room."""
    guest = world.actors["guest"]
    other = world.other_room
    RoomMember.objects.create(room=other, user=guest.user, role="guest")
    for suffix in GUEST_READS:
        response = guest.client.get(f"{ROOMS}/{other.pk}/{suffix}")
        assert (response.status_code, error_code(response)) == (403, "not_in_room"), suffix
    # The same account with its own room's token is fine (the row above is not the reason).
    assert guest.client.get(f"{ROOMS}/{world.room.pk}/members").status_code == 200


def test_a_guest_of_another_room_cannot_reuse_the_token_after_its_room_is_gone(world: RoomWorld):
    """Deleting the guest's room leaves its token useless everywhere."""
    foreign = world.actors["foreign_guest"]
    creator = world.actors["creator"]
    assert foreign.client.get(f"{ROOMS}/{world.other_room.pk}/playback").status_code == 200
    assert creator.client.delete(f"{ROOMS}/{world.other_room.pk}").status_code == 204
    response = foreign.client.get(f"{ROOMS}/{world.room.pk}/playback")
    assert response.status_code in (401, 403), response.content


# --- the world is what the table assumes -------------------------------------------------------------


def test_world_actors_hold_what_their_column_says(world: RoomWorld):
    """members/me of each member kind, as the API reports it (the table's premises)."""
    expected = {
        "member": int(Perm.SEND_CHAT_MESSAGE | Perm.SEND_EMOJI | Perm.ADD_MOVIE | Perm.VIEW_MEMBER_LIST),
        "guest": int(Perm.SEND_CHAT_MESSAGE | Perm.SEND_EMOJI | Perm.VIEW_MEMBER_LIST),
    }
    expected["member_plus"] = expected["member"] | int(Perm.PLAY_CONTROL)
    expected["member_minus"] = expected["member"] & ~int(Perm.ADD_MOVIE)
    for name, mask in expected.items():
        body = world.client(name).get(world.url("members/me")).json()
        assert body["effective_permissions"] == mask, (name, body)
    admin = world.client("admin").get(world.url("members/me")).json()
    assert admin["role"] == "admin"
    assert admin["effective_permissions"] & int(Perm.MANAGE_ADMINS) == 0
    assert admin["effective_permissions"] & int(Perm.KICK_MEMBERS | Perm.PLAY_CONTROL)
    creator = world.client("creator").get(world.url("members/me")).json()
    assert creator["role"] == "creator" and creator["effective_permissions"] == (1 << 16) - 1
    pending = world.client("pending").get(world.url("members/me")).json()
    assert pending["status"] == "pending" and pending["effective_permissions"] == 0
    assert client_for(None).get(world.url("members/me")).status_code == 401


# --- room defaults are read at check time ------------------------------------------------------------


def _set_room_settings(world: RoomWorld, **settings):
    response = world.client("creator").patch(world.url(), {"settings": settings}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["settings"]


def test_changing_the_member_default_reaches_existing_members(world: RoomWorld):
    w = world
    add = int(Perm.ADD_MOVIE)
    play = int(Perm.PLAY_CONTROL)
    default = w.room.member_permissions
    assert default & add and not default & play
    assert w.client("member").post(w.url("movies"), MOVIE, format="json").status_code == 201
    assert w.client("member").put(w.url("playback"), {"playing": True}, format="json").status_code == 403

    # Take ADD_MOVIE out of the default, put PLAY_CONTROL in.
    new_default = (default & ~add) | play
    assert _set_room_settings(w, member_permissions=new_default)["member_permissions"] == new_default

    assert w.effective_permissions("member") == new_default
    response = w.client("member").post(w.url("movies"), MOVIE, format="json")
    assert (response.status_code, error_code(response)) == (403, "permission_denied")
    assert w.client("member").put(w.url("playback"), {"playing": True}, format="json").status_code == 200
    # The per-member overrides still apply on top of the new default.
    # member_plus's added PLAY_CONTROL is now in the default anyway
    assert w.effective_permissions("member_plus") == new_default
    assert w.effective_permissions("member_minus") == new_default & ~add
    # Admins and the creator do not follow the member default.
    assert w.client("admin").post(w.url("movies"), MOVIE, format="json").status_code == 201

    # And back: the same members regain ADD_MOVIE and lose PLAY_CONTROL at once.
    _set_room_settings(w, member_permissions=default)
    assert w.effective_permissions("member") == default
    assert w.client("member").post(w.url("movies"), MOVIE, format="json").status_code == 201
    response = w.client("member").put(w.url("playback"), {"playing": False}, format="json")
    assert (response.status_code, error_code(response)) == (403, "permission_denied")


def test_an_added_bit_survives_the_default_losing_it_and_a_removed_bit_beats_the_default(
    world: RoomWorld,
):
    w = world
    play = int(Perm.PLAY_CONTROL)
    # member_plus holds PLAY_CONTROL by override; member_minus lost ADD_MOVIE by override.
    _set_room_settings(w, member_permissions=w.room.member_permissions | play)
    assert w.client("member_plus").put(w.url("playback"), {"playing": True}, format="json").status_code == 200
    _set_room_settings(w, member_permissions=w.room.member_permissions & ~play)
    assert (
        w.client("member_plus").put(w.url("playback"), {"playing": False}, format="json").status_code == 200
    )
    assert w.client("member").put(w.url("playback"), {"playing": True}, format="json").status_code == 403
    # ADD_MOVIE is in the default, but removed from member_minus: removal wins.
    assert w.client("member_minus").post(w.url("movies"), MOVIE, format="json").status_code == 403
    # A bit both added and removed is not held.
    response = w.client("creator").patch(
        w.url(f"members/{w.actors['member_plus'].id}"), {"permissions_removed": play}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["permissions_added"] == play
    assert w.client("member_plus").put(w.url("playback"), {"playing": True}, format="json").status_code == 403


def test_changing_the_admin_default_reaches_existing_admins(world: RoomWorld):
    w = world
    assert w.client("admin").get(w.url("audit-log")).status_code == 200
    _set_room_settings(w, admin_permissions=w.room.admin_permissions & ~int(Perm.VIEW_AUDIT_LOG))
    response = w.client("admin").get(w.url("audit-log"))
    assert (response.status_code, error_code(response)) == (403, "permission_denied")


def test_the_guest_default_can_never_lift_guests_past_the_cap(world: RoomWorld):
    """Even a creator's guest mask with every bit leaves a guest with chat, emoji and the member
    list; lowering it reaches existing guests at once."""
    w = world
    cap = int(Perm.SEND_CHAT_MESSAGE | Perm.SEND_EMOJI | Perm.VIEW_MEMBER_LIST)
    _set_room_settings(w, guest_permissions=(1 << 16) - 1)
    assert w.effective_permissions("guest") == cap
    for method, suffix, body in (
        ("post", "movies", MOVIE),
        ("put", "playback", {"playing": True}),
        ("delete", "movies", None),
    ):
        response = _call(w.client("guest"), method, w.url(suffix), body)
        assert (response.status_code, error_code(response)) == (403, "permission_denied"), suffix
    _set_room_settings(w, guest_permissions=int(Perm.SEND_CHAT_MESSAGE))
    assert w.effective_permissions("guest") == int(Perm.SEND_CHAT_MESSAGE)
    response = w.client("guest").get(w.url("members"))
    assert (response.status_code, error_code(response)) == (403, "permission_denied")
