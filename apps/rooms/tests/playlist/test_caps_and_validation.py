"""The playlist's caps and validation (docs/security.md, "Checks on what comes in"): batch and
playlist size, subtitles and headers, and the limits themselves accepted."""

from __future__ import annotations

from apps.core.tests.helpers import assert_error
from apps.rooms import services
from apps.rooms.models import Movie
from apps.rooms.serializers import MAX_BATCH
from apps.rooms.tests.playlist.conftest import movie_body

# --- caps and validation -------------------------------------------------------------------------------------


def test_a_batch_over_the_cap_is_refused(world):
    r = world.creator_api.post(
        world.movies_url, [movie_body(f"m{i}") for i in range(MAX_BATCH + 1)], format="json"
    )
    assert_error(r, 400, "invalid")
    assert not Movie.objects.filter(room=world.room).exists()
    r = world.creator_api.post(
        world.movies_url, [movie_body(f"m{i}") for i in range(MAX_BATCH)], format="json"
    )
    assert r.status_code == 201 and len(r.json()) == MAX_BATCH
    assert [m["position"] for m in r.json()] == list(range(MAX_BATCH))


def test_the_playlist_size_cap(world, monkeypatch):
    monkeypatch.setattr(services.playlist, "MAX_MOVIES_PER_ROOM", 3)
    world.add("a", "b")
    r = world.creator_api.post(world.movies_url, [movie_body("c"), movie_body("d")], format="json")
    assert_error(r, 400, "invalid")
    assert Movie.objects.filter(room=world.room).count() == 2
    assert world.creator_api.post(world.movies_url, movie_body("c"), format="json").status_code == 201
    assert_error(world.creator_api.post(world.movies_url, movie_body("d"), format="json"), 400, "invalid")


BAD_EXTRAS = {
    "21 subtitles": {
        "subtitles": [{"name": f"s{i}", "url": f"https://s.example/{i}.vtt"} for i in range(21)]
    },
    "subtitle without url": {"subtitles": [{"name": "en"}]},
    "subtitle without name": {"subtitles": [{"url": "https://s.example/en.vtt"}]},
    "subtitle javascript url": {"subtitles": [{"name": "en", "url": "javascript:alert(1)"}]},
    "subtitle data url": {"subtitles": [{"name": "en", "url": "data:text/vtt,WEBVTT"}]},
    "subtitle file url": {"subtitles": [{"name": "en", "url": "file:///etc/passwd"}]},
    "subtitle long lang": {"subtitles": [{"name": "en", "url": "https://s.example/a.vtt", "lang": "x" * 17}]},
    "subtitle long name": {"subtitles": [{"name": "x" * 101, "url": "https://s.example/a.vtt"}]},
    "subtitles not a list": {"subtitles": {"name": "en", "url": "https://s.example/a.vtt"}},
    "subtitle not an object": {"subtitles": ["https://s.example/a.vtt"]},
    "headers a list": {"headers": [["Referer", "x"]]},
    "headers a string": {"headers": "Referer: x"},
    "headers null": {"headers": None},
    "header value a number": {"headers": {"X-A": 1}},
    "header value null": {"headers": {"X-A": None}},
    "header value an object": {"headers": {"X-A": {"b": "c"}}},
    "header value a list": {"headers": {"X-A": ["b"]}},
    "header CRLF injection": {"headers": {"X-A": "v\r\nSet-Cookie: a=b"}},
    "header LF": {"headers": {"X-A": "v\nb"}},
    "header NUL": {"headers": {"X-A": "v\x00"}},
    "header other control char": {"headers": {"X-A": "v\x01b"}},
    "header DEL": {"headers": {"X-A": "v\x7f"}},
    "header name with space": {"headers": {"Bad Name": "v"}},
    "header name with colon": {"headers": {"X-A:": "v"}},
    "header name with CRLF": {"headers": {"X-A\r\nX-B": "v"}},
    "header name empty": {"headers": {"": "v"}},
    "header name only dashes": {"headers": {"--": "v"}},
    "header name not ASCII": {"headers": {"X-Ä": "v"}},
    "header name too long": {"headers": {"X" * 65: "v"}},
    "header value too long": {"headers": {"X-A": "v" * 1025}},
    "21 headers": {"headers": {f"X-H{i}": "v" for i in range(21)}},
}


def test_subtitles_and_headers_are_validated(world, no_api_limit):
    movie = world.add("existing")[0]
    for label, extra in BAD_EXTRAS.items():
        field = next(iter(extra))
        r = world.creator_api.post(world.movies_url, movie_body("m", **extra), format="json")
        error = assert_error(r, 400, "invalid")
        assert field in error["details"], (label, error)
        r = world.creator_api.patch(world.movie_url(movie.pk), extra, format="json")
        error = assert_error(r, 400, "invalid")
        assert field in error["details"], (label, error)
        movie.refresh_from_db()
        assert movie.subtitles == [] and movie.headers == {}, label
        assert Movie.objects.filter(room=world.room).count() == 1, label


def test_limits_themselves_are_accepted(world):
    body = movie_body(
        "n" * 200,
        subtitles=[
            {"name": "x" * 100, "url": f"https://s.example/{i}.vtt", "lang": "x" * 16} for i in range(20)
        ],
        headers={**{f"X-H{i}": "v" * 1024 for i in range(19)}, "X" * 64: "ok"},
    )
    r = world.creator_api.post(world.movies_url, body, format="json")
    assert r.status_code == 201, r.content
