"""Bad bodies on every room endpoint that takes one (docs/security.md, "Checks on what comes
in"): a 4xx in the error format, never a 500, nothing changed.

Each case starts from a body that succeeds (``test_base_body_succeeds`` proves it), breaks one
thing (a field's type or size, NUL bytes, the JSON itself, the shape of the body) and checks
the answer and that no row moved (apps/rooms/tests/bad_input/conftest.py)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import pytest

from apps.core.tests.helpers import assert_error
from apps.permissions.flags import ALL_BITS
from apps.rooms.tests.bad_input.conftest import HUGE, World, snapshot
from apps.rooms.tests.conftest import client

pytestmark = pytest.mark.django_db

MISSING = object()
RAW = "__raw_json_token__"  # replaced, unquoted, by a bare JSON token such as NaN


NUL = "a\x00b"


# --- body endpoints ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # with {room}, {member}, {movie} placeholders
    who: str  # creator, outsider or anon
    base: Any  # a body that succeeds; strings "{movie1}" etc. are filled in
    ok: int


BODY_ENDPOINTS: dict[str, Endpoint] = {
    "room_create": Endpoint(
        "POST",
        "/api/v1/rooms",
        "creator",
        {
            "name": "New room",
            "description": "about",
            "password": "secret-pw",
            "settings": {"hidden": False, "allow_guests": True, "member_permissions": 519},
        },
        201,
    ),
    "room_update": Endpoint(
        "PATCH",
        "/api/v1/rooms/{room}",
        "creator",
        {"name": "Renamed", "description": "new", "password": "secret-pw", "settings": {"hidden": True}},
        200,
    ),
    "join": Endpoint("POST", "/api/v1/rooms/{room}/join", "outsider", {"invite": "{invite}"}, 201),
    "guest": Endpoint("POST", "/api/v1/rooms/{room}/guest", "anon", {"name": "Gus"}, 200),
    "invite": Endpoint(
        "POST", "/api/v1/rooms/{room}/invites", "creator", {"max_uses": 5, "expires_in": 3600}, 201
    ),
    "member_update": Endpoint(
        "PATCH",
        "/api/v1/rooms/{room}/members/{member}",
        "creator",
        {"role": "admin", "permissions_added": 64, "permissions_removed": 2},
        200,
    ),
    "ban": Endpoint("POST", "/api/v1/rooms/{room}/members/{member}/ban", "creator", {"reason": "spam"}, 204),
    "movie_add": Endpoint(
        "POST",
        "/api/v1/rooms/{room}/movies",
        "creator",
        {
            "name": "Three",
            "url": "https://example.com/3.m3u8",
            "type": "hls",
            "subtitles": [{"name": "English", "url": "https://example.com/en.vtt", "lang": "en"}],
            "headers": {"Referer": "https://example.com/"},
        },
        201,
    ),
    "movie_edit": Endpoint(
        "PATCH",
        "/api/v1/rooms/{room}/movies/{movie}",
        "creator",
        {"name": "One again", "url": "https://example.com/1b.mp4", "type": "file"},
        200,
    ),
    "reorder": Endpoint(
        "POST", "/api/v1/rooms/{room}/movies/reorder", "creator", {"order": ["{movie2}", "{movie1}"]}, 200
    ),
    "playback": Endpoint(
        "PUT",
        "/api/v1/rooms/{room}/playback",
        "creator",
        {"movie_id": "{movie1}", "playing": True, "position": 12.5, "rate": 1.5, "version": 0},
        200,
    ),
}

# Values wrong for any string field.
BAD_STRINGS = [123, 1.5, True, None, [], ["x"], {}, {"a": "b"}, HUGE, NUL]
BAD_MASKS = [True, "64", -1, ALL_BITS + 1, 1 << 63, 1 << 64, 1.5, None, [], {}, HUGE]
BAD_BOOLS = ["true", "yes", 1, 0, None, [], {}, HUGE]

# endpoint -> field -> bad values (MISSING: the field left out, where it is required).
FIELD_CASES: dict[str, dict[str, list]] = {
    "room_create": {
        "name": [MISSING, "", "   ", "x" * 51, *BAD_STRINGS],
        "description": ["d" * 501, *BAD_STRINGS],
        "password": ["12345", "p" * 33, *BAD_STRINGS],
        "settings": [
            "hidden",
            1,
            True,
            [],
            [{"hidden": True}],
            {"bogus": True},
            {"hidden": True, "x": 1},
            HUGE,
        ],
        "settings.hidden": BAD_BOOLS,
        "settings.member_permissions": BAD_MASKS,
    },
    "room_update": {
        "name": ["", "x" * 51, *BAD_STRINGS],
        "description": ["d" * 501, *BAD_STRINGS],
        "password": ["12345", "p" * 33, *BAD_STRINGS],
        "settings": ["hidden", 1, [], {"bogus": True}, None],
        "settings.hidden": BAD_BOOLS,
        "settings.allow_guests": BAD_BOOLS,
        "settings.join_requires_approval": BAD_BOOLS,
        "settings.member_permissions": BAD_MASKS,
        "settings.admin_permissions": BAD_MASKS,
        "settings.guest_permissions": BAD_MASKS,
        "creator": ["someone"],
        "id": ["other-id"],
    },
    "join": {
        "invite": ["nosuchinvite", "x" * 33, *BAD_STRINGS],
        "password": ["p" * 129, *BAD_STRINGS],
    },
    "guest": {"name": [MISSING, "", "x" * 33, *BAD_STRINGS]},
    "invite": {
        "max_uses": [0, -1, 100_001, 10**30, "many", 1.5, True, [], {}, HUGE],
        "expires_in": [0, 59, -60, 30 * 24 * 3600 + 1, 10**30, "soon", 1.5, True, [], {}, HUGE],
    },
    "member_update": {
        "role": ["creator", "guest", "root", "owner", "", 1, True, None, [], {}, HUGE, NUL],
        "permissions_added": BAD_MASKS,
        "permissions_removed": BAD_MASKS,
        # A misspelt field must not pass for "nothing to change" (and an audited no-op write).
        "permission_added": [64],
        "user": ["someone-else"],
    },
    "ban": {"reason": ["r" * 501, *BAD_STRINGS]},
    "movie_add": {
        "name": [MISSING, "", "n" * 201, *BAD_STRINGS],
        "url": [
            MISSING,
            "",
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "file:///etc/passwd",
            "data:text/html,<script>alert(1)</script>",
            "ftp://example.com/a.mp4",
            "//example.com/a.mp4",
            "https://",
            "https://exa mple.com/a.mp4",
            "https://example.com/a\x00.mp4",
            "https://example.com/a\r\n.mp4",
            "https://example.com:99999/a.mp4",
            "https://[::1/a.mp4",
            "https://example.com/" + "a" * 2100,
            *BAD_STRINGS,
        ],
        "type": ["bogus", "", "FILE", 1, None, [], {}, HUGE],
        "subtitles": [
            "en.vtt",
            1,
            None,
            {},
            [1],
            ["en.vtt"],
            [{"name": "en"}],
            [{"url": "https://example.com/en.vtt"}],
            [{"name": "en", "url": 5}],
            [{"name": NUL, "url": "https://example.com/en.vtt"}],
            [{"name": "en", "url": "https://example.com/en.vtt", "lang": HUGE}],
            [{"name": "en", "url": "https://example.com/en.vtt"}] * 21,
            [{"name": "en", "url": "javascript:alert(1)"}],
            [{"name": "en", "url": "file:///etc/passwd"}],
        ],
        "headers": [
            "Referer: x",
            1,
            None,
            [],
            [["Referer", "x"]],
            {"Bad Name": "v"},
            {"": "v"},
            {"X-A": "v\r\nInjected: 1"},
            {"X-A": "v\x00"},
            {"X\x00A": "v"},
            {"X-A": 1},
            {"X-A": None},
            {"X-A": {"nested": "v"}},
            {"X-A": ["v"]},
            {"X-A": "v" * 1025},
            {"H" * 65: "v"},
            {f"X-{i}": "v" for i in range(21)},
        ],
    },
    "movie_edit": {
        "name": ["", "n" * 201, *BAD_STRINGS],
        "url": ["", "javascript:alert(1)", "file:///etc/passwd", "https://", *BAD_STRINGS],
        "type": ["bogus", 1, None, [], HUGE],
        "headers": ["x", [], {"Bad Name": "v"}, {"X-A": "v\r\nx"}],
        "subtitles": ["x", [1], [{"name": "en"}]],
    },
    "reorder": {
        "order": [
            MISSING,
            None,
            "{movie1},{movie2}",
            {"a": "{movie1}"},
            [],
            ["{movie1}"],
            ["{movie1}", "{movie1}"],
            ["{movie1}", "{movie2}", "{movie2}"],
            ["{movie1}", "{movie2}", "nosuchmovie"],
            ["nosuchmovie1", "nosuchmovie2"],
            ["{movie1}", 2],
            ["{movie1}", None],
            ["{movie1}", ["{movie2}"]],
            ["{movie1}", {"id": "{movie2}"}],
            ["{movie1}", NUL],
            ["{movie1}", "x" * 33],
            ["{movie1}", HUGE],
            ["m"] * 1001,
        ],
    },
    "playback": {
        "movie_id": [123, 1.5, True, [], {}, "nosuchmovie", HUGE, NUL, "x" * 33],
        "playing": ["true", "false", 1, 0, [], {}, HUGE],
        "position": ["5", True, [], {}, HUGE, f"{RAW}NaN", f"{RAW}Infinity", f"{RAW}-Infinity"],
        "rate": [0, 0.1, 0.24, 4.01, 5, 100, -1, "1", True, [], {}, f"{RAW}NaN", f"{RAW}Infinity", 1e309],
        "version": ["0", 1.5, True, [], {}, HUGE, 99, -1],
        "unknown": [1],
        "server_time": [0],
    },
}

# Whole-body breakage: (label, raw bytes, content type).
RAW_BODIES: list[tuple[str, bytes, str]] = [
    ("truncated", b'{"name": ', "application/json"),
    ("single-quotes", b"{'name': 'x'}", "application/json"),
    ("trailing-comma", b'{"name": "x",}', "application/json"),
    ("two-objects", b'{"name": "x"}{"name": "y"}', "application/json"),
    ("bad-utf8", b'{"name": "\xff\xfe"}', "application/json"),
    ("utf16", '{"name": "x"}'.encode("utf-16"), "application/json"),
    ("list", b"[]", "application/json"),
    ("list-of-numbers", b"[1, 2, 3]", "application/json"),
    ("number", b"1", "application/json"),
    ("string", b'"name"', "application/json"),
    ("null", b"null", "application/json"),
    ("true", b"true", "application/json"),
    ("nan", b"NaN", "application/json"),
    ("infinity", b"Infinity", "application/json"),
    ("deep-list", b"[" * 100_000, "application/json"),
    ("deep-list-closed", b"[" * 50_000 + b"]" * 50_000, "application/json"),
    ("deep-object", b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "application/json"),
    ("nul-bytes", b"\x00" * 64, "application/json"),
    ("text-plain", b'{"name": "x"}', "text/plain"),
    ("form", b"name=x", "application/x-www-form-urlencoded"),
    ("multipart", b"--b\r\n\r\n--b--", "multipart/form-data; boundary=b"),
]
# Bodies some endpoints accept as "nothing to change" (PATCH, invite, playback, join take {}):
# those are only bad where a field is required.
EMPTY_IS_BAD = {"room_create", "guest", "movie_add", "reorder"}
# movie_add also takes a list of movies; these lists are bad.
MOVIE_LISTS: list[tuple[str, Any]] = [
    ("empty", []),
    ("numbers", [1, 2]),
    ("strings", ["https://example.com/a.mp4"]),
    ("nulls", [None]),
    ("nested-list", [[{"name": "a", "url": "https://example.com/a.mp4"}]]),
    ("one-bad", [{"name": "a", "url": "https://example.com/a.mp4"}, {"name": "b", "url": "javascript:x"}]),
    ("too-many", [{"name": "a", "url": "https://example.com/a.mp4"}] * 101),
]


def fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str) and value.startswith("{") and value.endswith("}") and value[1:-1] in ids:
        return ids[value[1:-1]]
    if isinstance(value, str) and "{movie1}" in value:
        return value.replace("{movie1}", ids["movie1"]).replace("{movie2}", ids["movie2"])
    if isinstance(value, list):
        return [fill(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    return value


def with_field(base: dict, dotted: str, value: Any) -> dict:
    body = json.loads(json.dumps(base))
    *parents, leaf = dotted.split(".")
    target = body
    for key in parents:
        target = target.setdefault(key, {})
    if value is MISSING:
        target.pop(leaf, None)
    else:
        target[leaf] = value
    return body


def _raw_tokens(value: Any) -> Any:
    if isinstance(value, float) and math.isinf(value):
        return f"{RAW}{'-' if value < 0 else ''}1e309"
    if isinstance(value, list):
        return [_raw_tokens(v) for v in value]
    if isinstance(value, dict):
        return {k: _raw_tokens(v) for k, v in value.items()}
    return value


def encode(body: Any) -> bytes:
    """JSON, with ``RAW``-prefixed strings written as bare tokens (NaN, Infinity) and infinite
    floats written as 1e309 (valid JSON that overflows a double)."""
    text = json.dumps(_raw_tokens(body))
    return re.sub(f'"{RAW}([^"]*)"', r"\1", text).encode()


def _label(value: Any) -> str:
    if value is MISSING:
        return "missing"
    text = repr(value)
    return text if len(text) <= 24 else f"{text[:12]}...len{len(text)}"


def _raw_cases(name: str) -> list[tuple[str, bytes, str]]:
    cases = list(RAW_BODIES)
    if name in EMPTY_IS_BAD:
        cases += [("empty-object", b"{}", "application/json"), ("empty-body", b"", "application/json")]
    cases += [
        ("nan-field", b'{"x": NaN}', "application/json"),
        ("infinity-field", b'{"x": -Infinity}', "application/json"),
    ]
    if name == "movie_add":
        cases += [
            (f"list-{label}", json.dumps(body).encode(), "application/json") for label, body in MOVIE_LISTS
        ]
    return cases


def send(world: World, name: str, raw: bytes, content_type: str = "application/json"):
    endpoint = BODY_ENDPOINTS[name]
    path = endpoint.path.format(**world.ids())
    return client(world.access_for(endpoint.who)).generic(
        endpoint.method, path, data=raw, content_type=content_type
    )


def refusal_problem(response, status: int | None = None, code: str | None = None) -> str | None:
    """Why ``response`` is not a proper refusal (None if it is)."""
    try:
        assert_error(response, status, code)
    except AssertionError as exc:
        return str(exc)[:300]
    return None


def run_refusals(world: World, name: str, cases) -> None:
    """Send every (label, raw body, content type, expected status, expected code); each must be
    refused in the error format and leave every row as it was. All failures are reported."""
    failures = []
    before = snapshot()
    for label, raw, content_type, status, code in cases:
        problem = refusal_problem(send(world, name, raw, content_type), status, code)
        after = snapshot()
        if after != before:
            problem = f"{problem or 'refused'}; and something changed"
            before = after  # report the next case against the state it really starts from
        if problem is not None:
            failures.append((label, problem))
    assert not failures, "\n".join(f"{label}: {problem}" for label, problem in failures)


@pytest.mark.parametrize("name", list(BODY_ENDPOINTS))
def test_base_body_succeeds(world, name):
    """The bodies the matrix breaks are good ones: unbroken, each one succeeds and changes
    something (so "nothing changed" below is the refusal's doing)."""
    endpoint = BODY_ENDPOINTS[name]
    before = snapshot()
    r = send(world, name, encode(fill(endpoint.base, world.ids())))
    assert r.status_code == endpoint.ok, r.content[:500]
    assert snapshot() != before


@pytest.mark.parametrize(
    ("name", "field"), [(name, field) for name, fields in FIELD_CASES.items() for field in fields]
)
def test_bad_field(world, name, field):
    """One field of a good body broken at a time: every value in the table is refused."""
    ids = world.ids()
    base = fill(BODY_ENDPOINTS[name].base, ids)
    cases = []
    for i, value in enumerate(FIELD_CASES[name][field]):
        raw = encode(with_field(base, field, fill(value, ids)))
        cases.append((f"#{i} {_label(value)}", raw, "application/json", None, None))
    run_refusals(world, name, cases)


@pytest.mark.parametrize("name", list(BODY_ENDPOINTS))
def test_bad_body(world, name):
    """The body itself broken: bad JSON, the wrong shape, absurd nesting, the wrong media type."""
    cases = [
        (
            label,
            raw,
            ctype,
            *((415, "unsupported_media_type") if ctype != "application/json" else (400, "invalid")),
        )
        for label, raw, ctype in _raw_cases(name)
    ]
    run_refusals(world, name, cases)


def test_field_errors_name_the_field(world):
    """A field error says which field: details maps it to messages."""
    r = send(world, "room_create", encode({"name": "x" * 51}))
    assert assert_error(r, 400, "invalid")["details"]["name"]
    r = send(world, "movie_add", encode({"name": "a", "url": "javascript:alert(1)"}))
    assert assert_error(r, 400, "invalid")["details"]["url"]
    r = send(world, "playback", encode({"rate": 9}))
    assert assert_error(r, 400, "invalid")["details"]["rate"]
    r = send(world, "room_update", encode({"settings": {"nope": 1}}))
    assert "nope" in assert_error(r, 400, "invalid")["details"]["settings"]


def test_stale_playback_version_is_a_conflict(world):
    before = snapshot()
    r = send(world, "playback", encode({"playing": True, "version": 41}))
    error = assert_error(r, 409, "conflict")
    assert error["details"]["current"]["version"] == 0
    assert snapshot() == before
