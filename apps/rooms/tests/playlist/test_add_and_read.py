"""Adding movies (one or many) and reading the playlist and the current movie over REST
(docs/api.md, "REST"), and who may do each (docs/security.md, "What they may do")."""

from __future__ import annotations

from rest_framework.test import APIClient

from apps.accounts import services as account_services
from apps.accounts.tests.factories import TEST_ORIGIN, login, make_user
from apps.core.tests.helpers import assert_error, client_for
from apps.permissions.flags import Perm
from apps.rooms import services
from apps.rooms.models import Movie
from apps.rooms.tests.playlist.conftest import World, movie_body


def guest_api(world: World) -> APIClient:
    _member, token = services.guest_join(room=world.room, name="visitor", origin=TEST_ORIGIN)
    return client_for(token)


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
