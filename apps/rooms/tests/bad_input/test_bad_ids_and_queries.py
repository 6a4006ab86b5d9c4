"""Bad ids in the path of every room endpoint (unknown, too long, odd characters): 404
``not_found`` in the error format and nothing changed (``test_base_path_succeeds`` proves the
good ids work); bad queries on the room list and the member list."""

from __future__ import annotations

import json
from typing import Any

import pytest

from apps.accounts.tests.factories import login
from apps.core.tests.helpers import assert_error
from apps.rooms.tests.bad_input.conftest import HUGE, World, snapshot
from apps.rooms.tests.conftest import client

pytestmark = pytest.mark.django_db

# --- ids in the path -------------------------------------------------------------------------------------

PATH_ENDPOINTS: list[tuple[str, str, str, int]] = [
    # (method, path, who, status with good ids)
    ("GET", "/api/v1/rooms/{room}", "anon", 200),
    ("PATCH", "/api/v1/rooms/{room}", "creator", 200),
    ("DELETE", "/api/v1/rooms/{room}", "creator", 204),
    ("POST", "/api/v1/rooms/{room}/join", "outsider", 201),
    ("POST", "/api/v1/rooms/{room}/leave", "member", 204),
    ("POST", "/api/v1/rooms/{room}/guest", "anon", 200),
    ("POST", "/api/v1/rooms/{room}/invites", "creator", 201),
    ("GET", "/api/v1/rooms/{room}/members", "creator", 200),
    ("GET", "/api/v1/rooms/{room}/members/me", "creator", 200),
    ("PATCH", "/api/v1/rooms/{room}/members/{member}", "creator", 200),
    ("POST", "/api/v1/rooms/{room}/members/{member}/kick", "creator", 204),
    ("POST", "/api/v1/rooms/{room}/members/{member}/ban", "creator", 204),
    ("POST", "/api/v1/rooms/{room}/members/{member}/unban", "creator", 400),  # not banned: still a 4xx
    ("POST", "/api/v1/rooms/{room}/members/{member}/approve", "creator", 400),  # not pending
    ("GET", "/api/v1/rooms/{room}/audit-log", "creator", 200),
    ("GET", "/api/v1/rooms/{room}/movies", "creator", 200),
    ("POST", "/api/v1/rooms/{room}/movies", "creator", 201),
    ("DELETE", "/api/v1/rooms/{room}/movies", "creator", 204),
    ("POST", "/api/v1/rooms/{room}/movies/reorder", "creator", 200),
    ("GET", "/api/v1/rooms/{room}/movies/current", "creator", 200),
    ("PATCH", "/api/v1/rooms/{room}/movies/{movie}", "creator", 200),
    ("DELETE", "/api/v1/rooms/{room}/movies/{movie}", "creator", 204),
    ("GET", "/api/v1/rooms/{room}/playback", "creator", 200),
    ("PUT", "/api/v1/rooms/{room}/playback", "creator", 200),
]

# Already percent-encoded, as they would appear in a URL.
BAD_IDS = [
    "nosuchid0000000",
    "x" * 33,
    "x" * 5000,
    "%00",
    "a%00b",
    "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    "%27%20OR%20%271%27%3D%271",
    "%22%3B%20DROP%20TABLE%20rooms_room%3B--",
    "%25",
    "%2E%2E",
    "%20",
    "%C3%A9t%C3%A9",
    "%F0%9F%8E%AC",
    "%ff%fe",
    "%E2%80%AE",
    "%0A%0D",
    "a%2Fb",
    "a%5Cb",
    "*",
    "__proto__",
]


def _good_body(path: str, method: str, ids: dict[str, str]) -> Any:
    if method in ("GET", "DELETE") or path.endswith(("/leave", "/kick", "/unban", "/approve")):
        return None
    if path.endswith("/guest"):
        return {"name": "Gus"}
    if path.endswith("/join"):
        return {}
    if path.endswith("/invites"):
        return {}
    if path.endswith("/ban"):
        return {"reason": "r"}
    if path.endswith("/reorder"):
        return {"order": [ids["movie2"], ids["movie1"]]}
    if path.endswith("/movies") and method == "POST":
        return {"name": "n", "url": "https://example.com/n.mp4"}
    if path.endswith("/playback"):
        return {"playing": True}
    if "/members/" in path:
        return {"permissions_added": 64}
    return {"name": "renamed"}  # room or movie PATCH


def request(world: World, method: str, path: str, access: str | None, ids: dict[str, str]):
    body = _good_body(path, method, world.ids())
    url = path.format(**ids)
    c = client(access)
    if body is None:
        return c.generic(method, url)
    return c.generic(method, url, data=json.dumps(body).encode(), content_type="application/json")


def access_of(world: World, who: str) -> str | None:
    """Before the snapshot: logging the member in writes an audit row."""
    return login(world.member).access if who == "member" else world.access_for(who)


def _path_cases():
    for method, path, who, _ok in PATH_ENDPOINTS:
        for slot in ("room", "member", "movie"):
            if "{" + slot + "}" in path:
                yield pytest.param(
                    method, path, who, slot, id=f"{method}-{path.split('{room}')[-1] or '/'}-{slot}"
                )


@pytest.mark.parametrize(("method", "path", "who", "ok"), PATH_ENDPOINTS)
def test_base_path_succeeds(world, method, path, who, ok):
    r = request(world, method, path, access_of(world, who), world.ids())
    assert r.status_code == ok, r.content[:500]


@pytest.mark.parametrize(("method", "path", "who", "slot"), list(_path_cases()))
def test_bad_id_in_path(world, method, path, who, slot):
    access = access_of(world, who)
    before = snapshot()
    for bad in BAD_IDS:
        ids = {**world.ids(), slot: bad}
        r = request(world, method, path, access, ids)
        assert r.status_code == 404, (bad, r.status_code, r.content[:300])
        assert_error(r, 404, "not_found")
        assert snapshot() == before, bad


@pytest.mark.parametrize(
    "params",
    [
        {"search": "\x00"},
        {"search": "a\x00b"},
        {"search": HUGE},
        {"search": "%"},
        {"search": "' OR 1=1 --"},
        {"page": "0"},
        {"page": "-1"},
        {"page": "x"},
        {"page": "\x00"},
        {"page": "9" * 40},
    ],
    ids=[
        "nul",
        "nul-inside",
        "huge",
        "percent",
        "sql",
        "page0",
        "page-neg",
        "page-x",
        "page-nul",
        "page-huge",
    ],
)
def test_bad_query_on_the_room_list(world, params):
    r = client(None).get("/api/v1/rooms", params)
    if r.status_code == 200:
        assert set(r.json()) == {"count", "next", "previous", "results"}
        if params.get("search", "").strip("\x00"):
            assert r.json()["results"] == []
    else:
        assert_error(r, 404, "not_found")


@pytest.mark.parametrize("status", ["\x00", "ACTIVE", "everyone", HUGE, ""])
def test_bad_member_status_filter(world, status):
    r = client(world.creator_access).get(f"/api/v1/rooms/{world.room.pk}/members", {"status": status})
    assert_error(r, 400, "invalid")
