"""Reordering the playlist (only with the full order, and REORDER_PLAYLIST) and
``room.playlist_version``: every write bumps it, a failed one does not (docs/api.md, "REST")."""

from __future__ import annotations

from apps.accounts.tests.factories import TEST_ORIGIN
from apps.core.tests.helpers import assert_error
from apps.permissions.flags import Perm
from apps.rooms import services
from apps.rooms.models import Movie
from apps.rooms.tests.playlist.conftest import World, movie_body

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
