"""Editing, deleting and clearing movies over REST (docs/api.md, "REST"), who may do each
(docs/security.md, "What they may do"), and a closed room refusing every playlist write."""

from __future__ import annotations

from apps.accounts.tests.factories import TEST_ORIGIN
from apps.core.tests.helpers import assert_error
from apps.permissions.flags import Perm
from apps.rooms import services
from apps.rooms.models import Movie, PlaybackState, RoomMember
from apps.rooms.tests.playlist.conftest import movie_body, snapshot

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


def test_a_closed_room_refuses_playlist_writes(world):
    a, b = world.add("a", "b")
    services.room_set_closed(
        actor=services.actor_for_user(user=world.creator, room=world.room),
        room=world.room,
        closed=True,
        origin=TEST_ORIGIN,
    )
    before = snapshot(world)
    api = world.creator_api
    for response in (
        api.post(world.movies_url, movie_body(), format="json"),
        api.patch(world.movie_url(a.pk), {"name": "x"}, format="json"),
        api.delete(world.movie_url(a.pk)),
        api.delete(world.movies_url),
        api.post(world.reorder_url, {"order": [b.pk, a.pk]}, format="json"),
    ):
        assert_error(response, 403, "room_closed")
    assert snapshot(world) == before
    assert api.get(world.movies_url).status_code == 200
