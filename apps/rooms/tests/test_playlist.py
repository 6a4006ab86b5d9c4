"""The playlist over REST (docs/api.md, "REST"): add one or many, edit, delete,
clear, reorder, the current movie; who may do each (docs/security.md, "What they may do"); caps
and validation ("Checks on what comes in"); every write bumps ``room.playlist_version``; no body
makes it answer 500."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from rest_framework.test import APIClient

from apps.accounts import services as account_services
from apps.accounts.models import User
from apps.accounts.tests.factories import TEST_ORIGIN, login, make_user
from apps.core.tests.helpers import assert_error, client_for
from apps.permissions.flags import Perm
from apps.rooms import services
from apps.rooms.models import Movie, PlaybackState, Room, RoomMember
from apps.rooms.serializers import MAX_BATCH

# --- helpers -------------------------------------------------------------------------------------------


@dataclass
class World:
    room: Room
    creator: User
    creator_api: APIClient
    member: User
    member_api: APIClient
    outsider_api: APIClient

    @property
    def movies_url(self) -> str:
        return f"/api/v1/rooms/{self.room.pk}/movies"

    def movie_url(self, movie_id: str) -> str:
        return f"{self.movies_url}/{movie_id}"

    @property
    def reorder_url(self) -> str:
        return f"{self.movies_url}/reorder"

    @property
    def current_url(self) -> str:
        return f"{self.movies_url}/current"

    def version(self) -> int:
        return Room.objects.values_list("playlist_version", flat=True).get(pk=self.room.pk)

    def positions(self) -> list[tuple[str, int]]:
        return list(Movie.objects.filter(room=self.room).order_by("position").values_list("id", "position"))

    def add(self, *names: str, by: User | None = None) -> list[Movie]:
        actor = services.actor_for_user(user=by or self.creator, room=self.room)
        items = [{"name": n, "url": f"https://media.example/{n}.mp4"} for n in names]
        return services.movies_add(actor=actor, room=self.room, items=items, origin=TEST_ORIGIN)

    def set_bits(self, user: User, *, added: int = 0, removed: int = 0) -> None:
        """The creator changes ``user``'s overrides through the service (its rules apply)."""
        target = RoomMember.objects.get(room=self.room, user=user)
        services.member_update(
            actor=services.actor_for_user(user=self.creator, room=self.room),
            room=self.room,
            target=target,
            permissions_added=added,
            permissions_removed=removed,
            origin=TEST_ORIGIN,
        )

    def play(self, movie: Movie) -> None:
        services.playback_update(
            actor=services.actor_for_user(user=self.creator, room=self.room),
            room=self.room,
            movie_id=movie.pk,
            playing=True,
            origin=TEST_ORIGIN,
        )


@pytest.fixture
def world(db) -> World:
    creator, creator_pair = make_user()
    member, member_pair = make_user()
    _outsider, outsider_pair = make_user()
    room = services.room_create(
        creator=creator, name="playlist", settings={"allow_guests": True}, origin=TEST_ORIGIN
    )
    services.member_join(user=member, room=room, origin=TEST_ORIGIN)
    return World(
        room=room,
        creator=creator,
        creator_api=client_for(creator_pair.access),
        member=member,
        member_api=client_for(member_pair.access),
        outsider_api=client_for(outsider_pair.access),
    )


def guest_api(world: World) -> APIClient:
    _member, token = services.guest_join(room=world.room, name="visitor", origin=TEST_ORIGIN)
    return client_for(token)


def movie_body(name: str = "Movie", **extra) -> dict:
    return {"name": name, "url": f"https://media.example/{name}.mp4", **extra}


# --- add -----------------------------------------------------------------------------------------------


def test_add_one_movie(world):
    r = world.creator_api.post(world.movies_url, movie_body("Alpha", type="hls"), format="json")
    assert r.status_code == 201, r.content
    body = r.json()
    assert set(body) >= {"id", "name", "url", "type", "position", "added_by", "created_at"}
    assert body["name"] == "Alpha" and body["type"] == "hls" and body["position"] == 0
    assert body["url"] == "https://media.example/Alpha.mp4"
    assert body["added_by"] == {"id": world.creator.pk, "username": world.creator.username, "guest": False}
    assert body["subtitles"] == [] and body["headers"] == {}
    movie = Movie.objects.get(pk=body["id"])
    assert movie.room_id == world.room.pk and movie.added_by_id == world.creator.pk

    r = world.creator_api.post(world.movies_url, movie_body("Beta"), format="json")
    assert r.status_code == 201 and r.json()["position"] == 1 and r.json()["type"] == "file"


def test_add_many_keeps_the_order_and_continues_the_positions(world):
    world.add("first")
    names = [f"m{i}" for i in range(7)]
    r = world.member_api.post(world.movies_url, [movie_body(n) for n in names], format="json")
    assert r.status_code == 201, r.content
    body = r.json()
    assert isinstance(body, list)
    assert [m["name"] for m in body] == names
    assert [m["position"] for m in body] == list(range(1, 8))
    assert all(m["added_by"]["id"] == world.member.pk for m in body)

    r = world.member_api.get(world.movies_url)
    assert r.status_code == 200
    listing = r.json()
    assert listing["count"] == 8
    assert [m["name"] for m in listing["results"]] == ["first", *names]
    assert [m["position"] for m in listing["results"]] == list(range(8))
    assert listing["playlist_version"] == world.version()


def test_add_a_list_of_one(world):
    r = world.creator_api.post(world.movies_url, [movie_body("solo")], format="json")
    assert r.status_code == 201
    assert [m["name"] for m in r.json()] == ["solo"]


def test_subtitles_and_headers_are_kept(world):
    body = movie_body(
        "subbed",
        subtitles=[{"name": "English", "url": "https://media.example/en.vtt", "lang": "en"}],
        headers={"Referer": "https://media.example/", "X-Token": "abc123"},
    )
    r = world.creator_api.post(world.movies_url, body, format="json")
    assert r.status_code == 201, r.content
    assert r.json()["subtitles"] == body["subtitles"]
    assert r.json()["headers"] == body["headers"]


def test_who_may_add(world):
    # A member holds ADD_MOVIE by default; take it away and the add is refused.
    world.set_bits(world.member, removed=Perm.ADD_MOVIE)
    assert_error(
        world.member_api.post(world.movies_url, movie_body(), format="json"), 403, "permission_denied"
    )
    assert_error(world.outsider_api.post(world.movies_url, movie_body(), format="json"), 403, "not_in_room")
    assert_error(client_for().post(world.movies_url, movie_body(), format="json"), 401, "not_authenticated")
    # Guests never hold ADD_MOVIE, whatever the room's guest mask says.
    assert_error(
        guest_api(world).post(world.movies_url, movie_body(), format="json"), 403, "permission_denied"
    )
    assert Movie.objects.filter(room=world.room).count() == 0
    assert world.version() == 0


def test_who_may_read_the_playlist(world):
    world.add("a", "b")
    assert world.member_api.get(world.movies_url).status_code == 200
    r = guest_api(world).get(world.movies_url)
    assert r.status_code == 200 and r.json()["count"] == 2
    assert_error(world.outsider_api.get(world.movies_url), 403, "not_in_room")
    assert_error(client_for().get(world.movies_url), 401, "not_authenticated")


def test_a_site_admin_acts_as_creator(world):
    admin, _ = make_user()
    account_services.user_set_role(actor=None, user=admin, role="admin", origin=TEST_ORIGIN)
    api = client_for(login(admin).access)
    r = api.post(world.movies_url, movie_body("by-admin"), format="json")
    assert r.status_code == 201, r.content
    movie_id = r.json()["id"]
    assert api.post(world.reorder_url, {"order": [movie_id]}, format="json").status_code == 200
    assert api.delete(world.movies_url).status_code == 204


# --- edit ----------------------------------------------------------------------------------------------


def test_edit_a_movie(world):
    movie = world.add("old")[0]
    before = world.version()
    r = world.creator_api.patch(
        world.movie_url(movie.pk),
        {"name": "new", "url": "http://192.168.1.20:8096/x.mp4", "type": "live"},
        format="json",
    )
    assert r.status_code == 200, r.content
    assert r.json()["name"] == "new" and r.json()["type"] == "live"
    movie.refresh_from_db()
    assert (movie.name, movie.url, movie.type, movie.position) == (
        "new",
        "http://192.168.1.20:8096/x.mp4",
        "live",
        0,
    )
    assert world.version() == before + 1


def test_a_partial_edit_leaves_the_other_fields(world):
    movie = world.add("keep")[0]
    r = world.creator_api.patch(
        world.movie_url(movie.pk), {"headers": {"Referer": "https://a.example/"}}, format="json"
    )
    assert r.status_code == 200, r.content
    movie.refresh_from_db()
    assert movie.name == "keep" and movie.type == "file" and movie.url.endswith("keep.mp4")
    assert movie.headers == {"Referer": "https://a.example/"}


def test_who_may_edit(world):
    movie = world.add("x", by=world.member)[0]
    # Adding it does not make it yours to edit: that is EDIT_MOVIE.
    assert_error(
        world.member_api.patch(world.movie_url(movie.pk), {"name": "y"}, format="json"),
        403,
        "permission_denied",
    )
    assert_error(
        world.outsider_api.patch(world.movie_url(movie.pk), {"name": "y"}, format="json"), 403, "not_in_room"
    )
    movie.refresh_from_db()
    assert movie.name == "x"
    world.set_bits(world.member, added=Perm.EDIT_MOVIE)
    assert world.member_api.patch(world.movie_url(movie.pk), {"name": "y"}, format="json").status_code == 200


def test_edit_of_another_rooms_movie_is_not_found(world):
    other_room = services.room_create(creator=world.creator, name="other", origin=TEST_ORIGIN)
    actor = services.actor_for_user(user=world.creator, room=other_room)
    foreign = services.movies_add(
        actor=actor, room=other_room, items=[movie_body("foreign")], origin=TEST_ORIGIN
    )[0]
    assert_error(
        world.creator_api.patch(world.movie_url(foreign.pk), {"name": "stolen"}, format="json"),
        404,
        "not_found",
    )
    assert_error(world.creator_api.delete(world.movie_url(foreign.pk)), 404, "not_found")
    foreign.refresh_from_db()
    assert foreign.name == "foreign"


# --- delete ---------------------------------------------------------------------------------------------


def test_delete_with_delete_movie(world):
    a, b, c = world.add("a", "b", "c")
    before = world.version()
    assert world.creator_api.delete(world.movie_url(b.pk)).status_code == 204
    assert [m for m, _ in world.positions()] == [a.pk, c.pk]
    assert world.version() == before + 1
    assert_error(world.creator_api.delete(world.movie_url(b.pk)), 404, "not_found")


def test_the_adder_may_delete_their_own_movie_only(world):
    mine = world.add("mine", by=world.member)[0]
    theirs = world.add("theirs")[0]
    assert_error(world.member_api.delete(world.movie_url(theirs.pk)), 403, "permission_denied")
    assert world.member_api.delete(world.movie_url(mine.pk)).status_code == 204
    assert list(Movie.objects.filter(room=world.room).values_list("id", flat=True)) == [theirs.pk]


def test_an_adder_who_left_cannot_delete(world):
    mine = world.add("mine", by=world.member)[0]
    services.member_leave(user=world.member, room=world.room, origin=TEST_ORIGIN)
    assert_error(world.member_api.delete(world.movie_url(mine.pk)), 403, "not_in_room")
    assert Movie.objects.filter(pk=mine.pk).exists()


def test_a_banned_adder_cannot_delete(world):
    mine = world.add("mine", by=world.member)[0]
    services.member_ban(
        actor=services.actor_for_user(user=world.creator, room=world.room),
        room=world.room,
        target=RoomMember.objects.get(room=world.room, user=world.member),
        origin=TEST_ORIGIN,
    )
    assert_error(world.member_api.delete(world.movie_url(mine.pk)), 403, "not_in_room")
    assert Movie.objects.filter(pk=mine.pk).exists()


def test_delete_movie_granted_lets_a_member_delete_others(world):
    theirs = world.add("theirs")[0]
    world.set_bits(world.member, added=Perm.DELETE_MOVIE)
    assert world.member_api.delete(world.movie_url(theirs.pk)).status_code == 204


def test_deleting_the_current_movie_clears_playback(world):
    a, b = world.add("a", "b")
    world.play(a)
    state = PlaybackState.objects.get(room=world.room)
    assert state.movie_id == a.pk and state.playing
    # Deleting another movie leaves the playback alone.
    assert world.creator_api.delete(world.movie_url(b.pk)).status_code == 204
    state.refresh_from_db()
    assert state.movie_id == a.pk and state.playing
    version = state.version

    assert world.creator_api.delete(world.movie_url(a.pk)).status_code == 204
    state.refresh_from_db()
    assert state.movie_id is None and not state.playing and state.position == 0.0
    assert state.version == version + 1  # clients holding the old version must re-read
    r = world.creator_api.get(f"/api/v1/rooms/{world.room.pk}/playback")
    assert r.json()["movie_id"] is None and r.json()["version"] == version + 1


# --- clear ----------------------------------------------------------------------------------------------


def test_clear_the_playlist(world):
    a, _b = world.add("a", "b")
    world.play(a)
    before = world.version()
    assert world.creator_api.delete(world.movies_url).status_code == 204
    assert not Movie.objects.filter(room=world.room).exists()
    assert world.version() == before + 1
    state = PlaybackState.objects.get(room=world.room)
    assert state.movie_id is None and not state.playing
    r = world.creator_api.get(world.movies_url)
    assert r.json()["count"] == 0 and r.json()["results"] == []


def test_clear_needs_delete_movie_even_for_adders(world):
    world.add("mine", by=world.member)
    world.add("other-room-safe")
    assert_error(world.member_api.delete(world.movies_url), 403, "permission_denied")
    assert_error(world.outsider_api.delete(world.movies_url), 403, "not_in_room")
    assert Movie.objects.filter(room=world.room).count() == 2


def test_clear_touches_only_this_room(world):
    other = services.room_create(creator=world.creator, name="other", origin=TEST_ORIGIN)
    actor = services.actor_for_user(user=world.creator, room=other)
    services.movies_add(actor=actor, room=other, items=[movie_body("kept")], origin=TEST_ORIGIN)
    world.add("gone")
    assert world.creator_api.delete(world.movies_url).status_code == 204
    assert Movie.objects.filter(room=other).count() == 1


# --- reorder --------------------------------------------------------------------------------------------


def test_reorder_with_the_full_order(world):
    movies = world.add("a", "b", "c", "d")
    order = [movies[2].pk, movies[0].pk, movies[3].pk, movies[1].pk]
    before = world.version()
    r = world.creator_api.post(world.reorder_url, {"order": order}, format="json")
    assert r.status_code == 200, r.content
    assert [m["id"] for m in r.json()["results"]] == order
    assert [m["position"] for m in r.json()["results"]] == [0, 1, 2, 3]
    assert world.positions() == [(mid, i) for i, mid in enumerate(order)]
    assert world.version() == before + 1
    listing = world.member_api.get(world.movies_url).json()
    assert [m["id"] for m in listing["results"]] == order


def test_reorder_of_an_empty_playlist(world):
    r = world.creator_api.post(world.reorder_url, {"order": []}, format="json")
    assert r.status_code == 200 and r.json()["results"] == []


def _bad_orders(world: World) -> dict[str, object]:
    a, b, c = (m for m, _ in world.positions())
    other = services.room_create(creator=world.creator, name="other", origin=TEST_ORIGIN)
    foreign = services.movies_add(
        actor=services.actor_for_user(user=world.creator, room=other),
        room=other,
        items=[movie_body("foreign")],
        origin=TEST_ORIGIN,
    )[0]
    return {
        "partial": [c, a],
        "duplicated": [c, a, a],
        "duplicated-and-complete": [c, a, b, a],
        "unknown id": [c, a, "nope"],
        "extra unknown id": [c, a, b, "nope"],
        "another room's movie": [c, a, foreign.pk],
        "another room's movie added": [c, a, b, foreign.pk],
        "empty": [],
        "too long an id": [c, a, "x" * 33],
        "not strings": [1, 2, 3],
        "null entries": [None, None, None],
        "objects": [{"id": c}, {"id": a}, {"id": b}],
        "nested lists": [[c], [a], [b]],
        "a string": f"{c},{a},{b}",
        "null": None,
        "an object": {c: 0, a: 1, b: 2},
        "a number": 3,
        "over the cap": [c, a, b] * 334,
    }


def test_a_wrong_order_is_refused_and_nothing_moves(world):
    world.add("a", "b", "c")
    bad = _bad_orders(world)
    before_positions, before_version = world.positions(), world.version()
    for label, order in bad.items():
        r = world.creator_api.post(world.reorder_url, {"order": order}, format="json")
        error = assert_error(r, 400, "invalid")
        assert "order" in error["details"], (label, error)
        assert world.positions() == before_positions, label
        assert world.version() == before_version, label


def test_reorder_needs_reorder_playlist(world):
    a, b = world.add("a", "b")
    order = [b.pk, a.pk]
    assert_error(
        world.member_api.post(world.reorder_url, {"order": order}, format="json"), 403, "permission_denied"
    )
    assert_error(
        world.outsider_api.post(world.reorder_url, {"order": order}, format="json"), 403, "not_in_room"
    )
    assert world.positions() == [(a.pk, 0), (b.pk, 1)]
    world.set_bits(world.member, added=Perm.REORDER_PLAYLIST)
    assert world.member_api.post(world.reorder_url, {"order": order}, format="json").status_code == 200
    assert world.positions() == [(b.pk, 0), (a.pk, 1)]


def test_add_after_reorder_appends_at_the_end(world):
    a, b = world.add("a", "b")
    assert (
        world.creator_api.post(world.reorder_url, {"order": [b.pk, a.pk]}, format="json").status_code == 200
    )
    r = world.creator_api.post(world.movies_url, movie_body("c"), format="json")
    assert r.json()["position"] == 2


# --- playlist_version -------------------------------------------------------------------------------------


def test_every_write_bumps_the_playlist_version_and_failed_ones_do_not(world):
    api = world.creator_api
    seen = [world.version()]

    def bumped(response, status):
        assert response.status_code == status, response.content
        seen.append(world.version())
        assert seen[-1] == seen[-2] + 1, seen

    def unchanged(response, status):
        assert response.status_code == status, response.content
        assert world.version() == seen[-1]

    bumped(api.post(world.movies_url, movie_body("a"), format="json"), 201)
    ids = [
        m["id"] for m in api.post(world.movies_url, [movie_body("b"), movie_body("c")], format="json").json()
    ]
    seen.append(world.version())
    assert seen[-1] == seen[-2] + 1  # one bump for the whole batch
    first = Movie.objects.get(room=world.room, name="a").pk
    bumped(api.patch(world.movie_url(first), {"name": "a2"}, format="json"), 200)
    bumped(api.post(world.reorder_url, {"order": [ids[1], ids[0], first]}, format="json"), 200)
    bumped(api.delete(world.movie_url(ids[0])), 204)
    bumped(api.delete(world.movies_url), 204)

    unchanged(api.post(world.movies_url, {"name": "bad", "url": "javascript:1"}, format="json"), 400)
    unchanged(api.patch(world.movie_url("nope"), {"name": "x"}, format="json"), 404)
    unchanged(api.post(world.reorder_url, {"order": ["nope"]}, format="json"), 400)
    unchanged(world.member_api.delete(world.movies_url), 403)
    # The listing reports the version clients compare with the WebSocket's "playlist" hint.
    assert api.get(world.movies_url).json()["playlist_version"] == seen[-1]


# --- current movie -----------------------------------------------------------------------------------------


def test_current_movie(world):
    assert world.member_api.get(world.current_url).status_code == 200
    assert world.member_api.get(world.current_url).json() is None
    a, _b = world.add("a", "b")
    world.play(a)
    r = world.member_api.get(world.current_url)
    assert r.status_code == 200 and r.json()["id"] == a.pk and r.json()["name"] == "a"
    assert guest_api(world).get(world.current_url).json()["id"] == a.pk
    assert_error(world.outsider_api.get(world.current_url), 403, "not_in_room")
    assert_error(client_for().get(world.current_url), 401, "not_authenticated")
    world.creator_api.delete(world.movie_url(a.pk))
    assert world.member_api.get(world.current_url).json() is None


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


@pytest.fixture
def no_api_limit(settings):
    """These tables send more than the 100 requests a minute one address may make."""
    settings.RATELIMITS = {**settings.RATELIMITS, "api": "100000/m"}


def _assert_clean_refusal(response, label) -> None:
    assert response.status_code in (400, 415), (label, response.status_code, response.content[:300])
    body = response.json()
    assert set(body) == {"error"}, (label, body)
    assert body["error"]["code"] in ("invalid", "unsupported_media_type"), (label, body)


def _snapshot(world: World):
    return (
        list(
            Movie.objects.filter(room=world.room)
            .order_by("pk")
            .values_list("pk", "name", "url", "type", "position")
        ),
        world.version(),
    )


def test_bad_bodies_on_add_are_refused_cleanly(world, no_api_limit):
    world.add("existing")
    before = _snapshot(world)
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
    assert _snapshot(world) == before


def test_bad_bodies_on_edit_are_refused_cleanly(world, no_api_limit):
    movie = world.add("existing")[0]
    before = _snapshot(world)
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
    assert _snapshot(world)[0] == before[0]


def test_bad_bodies_on_reorder_are_refused_cleanly(world, no_api_limit):
    world.add("a", "b")
    before = _snapshot(world)
    for body in REORDER_BAD:
        _assert_clean_refusal(world.creator_api.post(world.reorder_url, body, format="json"), body)
    for raw, content_type in RAW_BAD:
        _assert_clean_refusal(
            world.creator_api.post(world.reorder_url, raw, content_type=content_type), raw[:40]
        )
    assert _snapshot(world) == before


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
    before = _snapshot(world)
    for movie_id in ODD_MOVIE_IDS:
        for response in (
            world.creator_api.patch(world.movie_url(movie_id), {"name": "x"}, format="json"),
            world.creator_api.delete(world.movie_url(movie_id)),
        ):
            assert_error(response, 404, "not_found")
    assert _snapshot(world) == before


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


def test_a_closed_room_refuses_playlist_writes(world):
    a, b = world.add("a", "b")
    services.room_set_closed(
        actor=services.actor_for_user(user=world.creator, room=world.room),
        room=world.room,
        closed=True,
        origin=TEST_ORIGIN,
    )
    before = _snapshot(world)
    api = world.creator_api
    for response in (
        api.post(world.movies_url, movie_body(), format="json"),
        api.patch(world.movie_url(a.pk), {"name": "x"}, format="json"),
        api.delete(world.movie_url(a.pk)),
        api.delete(world.movies_url),
        api.post(world.reorder_url, {"order": [b.pk, a.pk]}, format="json"),
    ):
        assert_error(response, 403, "room_closed")
    assert _snapshot(world) == before
    assert api.get(world.movies_url).status_code == 200
