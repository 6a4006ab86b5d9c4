"""No body or id makes the playlist endpoints answer 500 (docs/security.md, "Checks on what
comes in"): every bad body is refused cleanly and nothing changes; odd movie and room ids
are not found."""

from __future__ import annotations

from apps.core.tests.helpers import assert_error
from apps.rooms.tests.playlist.conftest import movie_body, snapshot

# --- bad input never answers 500 ----------------------------------------------------------------------------

DEEP = "[" * 50000 + "]" * 50000
RAW_BAD = [
    ("null", "application/json"),  # (APIClient sends Python None as an empty body)
    ("NaN", "application/json"),
    ('{"name": NaN, "url": "https://a.example/"}', "application/json"),
    ('{"name": "x", "url": "https://a.example/", "type": Infinity}', "application/json"),
    ('{"order": [-Infinity]}', "application/json"),
    (DEEP, "application/json"),
    ('{"name": "x"', "application/json"),
    ("", "application/json"),
    ('{"name": "\\ud800", "url": "https://a.example/"}', "application/json"),
    (b"\xff\xfe{\x00", "application/json"),
]

POST_BAD = [
    123,
    1.5,
    True,
    "a string",
    [],
    [None],
    [1],
    [[]],
    [[movie_body()]],
    ["https://a.example/x.mp4"],
    [movie_body(), None],
    [{"name": "no url"}],
    {},
    {"name": "no url"},
    {"url": "https://a.example/no-name.mp4"},
    {"name": 1, "url": "https://a.example/"},
    {"name": "", "url": "https://a.example/"},
    {"name": "x" * 201, "url": "https://a.example/"},
    {"name": "x" * 200_000, "url": "https://a.example/"},
    {"name": None, "url": "https://a.example/"},
    {"name": ["a"], "url": "https://a.example/"},
    {"name": {"a": 1}, "url": "https://a.example/"},
    {"name": "x", "url": None},
    {"name": "x", "url": 5},
    {"name": "x", "url": ["https://a.example/"]},
    {"name": "x", "url": {"href": "https://a.example/"}},
    {"name": "x", "url": "https://a.example/" + "a" * 200_000},
    {"name": "x", "url": "https://a.example/", "type": "bogus"},
    {"name": "x", "url": "https://a.example/", "type": None},
    {"name": "x", "url": "https://a.example/", "type": 1},
    {"name": "x", "url": "https://a.example/", "type": ["file"]},
    {"name": "x", "url": "https://a.example/", "subtitles": "x"},
    {"name": "x", "url": "https://a.example/", "subtitles": [None]},
    {"name": "x", "url": "https://a.example/", "subtitles": [{"name": {}, "url": []}]},
    {"name": "x", "url": "https://a.example/", "subtitles": [[[[[["deep"]]]]]]},
    {"name": "x", "url": "https://a.example/", "headers": {"a": {"b": {"c": {"d": "e"}}}}},
    {"name": "x", "url": "https://a.example/", "headers": {"X-A": 1e308}},
    {"name": {"name": {"name": {"name": "x"}}}, "url": {"url": {"url": "x"}}},
]

PATCH_BAD = [
    [],
    [{"name": "x"}],
    1,
    "x",
    True,
    {"name": 1},
    {"name": ""},
    {"name": None},
    {"name": "x" * 200_000},
    {"name": ["x"]},
    {"url": None},
    {"url": "javascript:alert(1)"},
    {"url": 1e308},
    {"url": {"nested": ["junk"]}},
    {"type": "movie"},
    {"type": None},
    {"subtitles": "x"},
    {"subtitles": None},
    {"headers": []},
    {"headers": {"X-A": ["v"]}},
]

REORDER_BAD = [
    [],
    ["x"],
    "order",
    1,
    {},
    {"order": None},
    {"order": "abc"},
    {"order": 1},
    {"order": 1.5},
    {"order": True},
    {"order": {"a": 1}},
    {"order": [1, 2]},
    {"order": [None]},
    {"order": [True]},
    {"order": [{"id": "x"}]},
    {"order": [["a"]]},
    {"order": ["x" * 33]},
    {"order": ["x" * 200_000]},
    {"order": ["x"] * 1001},
    {"ordering": []},
]


def _assert_clean_refusal(response, label) -> None:
    assert response.status_code in (400, 415), (label, response.status_code, response.content[:300])
    body = response.json()
    assert set(body) == {"error"}, (label, body)
    assert body["error"]["code"] in ("invalid", "unsupported_media_type"), (label, body)


def test_bad_bodies_on_add_are_refused_cleanly(world, no_api_limit):
    world.add("existing")
    before = snapshot(world)
    for body in POST_BAD:
        _assert_clean_refusal(world.creator_api.post(world.movies_url, body, format="json"), body)
    for raw, content_type in RAW_BAD:
        _assert_clean_refusal(
            world.creator_api.post(world.movies_url, raw, content_type=content_type), raw[:40]
        )
    _assert_clean_refusal(
        world.creator_api.post(world.movies_url, "name=x&url=https://a.example/", content_type="text/plain"),
        "text/plain",
    )
    assert snapshot(world) == before


def test_bad_bodies_on_edit_are_refused_cleanly(world, no_api_limit):
    movie = world.add("existing")[0]
    before = snapshot(world)
    for body in PATCH_BAD:
        _assert_clean_refusal(world.creator_api.patch(world.movie_url(movie.pk), body, format="json"), body)
    for raw, content_type in RAW_BAD:
        response = world.creator_api.patch(world.movie_url(movie.pk), raw, content_type=content_type)
        if raw == "":  # an empty PATCH is an empty change
            assert response.status_code == 200, response.content
            continue
        _assert_clean_refusal(response, raw[:40])
    movie.refresh_from_db()
    assert movie.name == "existing"
    assert snapshot(world)[0] == before[0]


def test_bad_bodies_on_reorder_are_refused_cleanly(world, no_api_limit):
    world.add("a", "b")
    before = snapshot(world)
    for body in REORDER_BAD:
        _assert_clean_refusal(world.creator_api.post(world.reorder_url, body, format="json"), body)
    for raw, content_type in RAW_BAD:
        _assert_clean_refusal(
            world.creator_api.post(world.reorder_url, raw, content_type=content_type), raw[:40]
        )
    assert snapshot(world) == before


ODD_MOVIE_IDS = [
    "x" * 33,
    "x" * 5000,
    "%00",
    "..",
    "%2e%2e",
    "é",
    "' OR 1=1 --",
    "1;DROP TABLE rooms_movie",
    "null",
    "%F0%9F%92%A9",
]


def test_odd_movie_ids_are_not_found(world):
    world.add("a")
    before = snapshot(world)
    for movie_id in ODD_MOVIE_IDS:
        for response in (
            world.creator_api.patch(world.movie_url(movie_id), {"name": "x"}, format="json"),
            world.creator_api.delete(world.movie_url(movie_id)),
        ):
            assert_error(response, 404, "not_found")
    assert snapshot(world) == before


def test_odd_room_ids_are_not_found(world):
    api = world.creator_api
    for room_id in ("x" * 33, "nope", "' OR 1=1 --", "%00"):
        base = f"/api/v1/rooms/{room_id}/movies"
        for response in (
            api.get(base),
            api.post(base, movie_body(), format="json"),
            api.delete(base),
            api.post(f"{base}/reorder", {"order": []}, format="json"),
            api.get(f"{base}/current"),
            api.patch(f"{base}/abc", {"name": "x"}, format="json"),
            api.delete(f"{base}/abc"),
        ):
            assert_error(response, 404, "not_found")
