"""Who may read and change playback (docs/security.md, "What they may do"): PLAY_CONTROL even to
pause, CHANGE_CURRENT_MOVIE to change the movie, guests only in their own room, site admins
in any."""

from __future__ import annotations

from apps.accounts.tests.factories import TEST_ORIGIN, make_user
from apps.core.tests.helpers import assert_error, client_for
from apps.permissions.flags import Perm
from apps.rooms import services
from apps.rooms.tests.playback.conftest import make_world, put

# --- who may ----------------------------------------------------------------------------------------------------


def test_play_control_is_needed_even_to_pause(world):
    assert_error(put(world.member_api, world, {"playing": False}), 403, "permission_denied")
    assert_error(put(world.member_api, world, {"movie_id": world.movies[0].pk}), 403, "permission_denied")
    assert world.state().version == 0


def test_changing_the_movie_needs_change_current_movie(world):
    a, b = world.movies
    put(world.creator_api, world, {"movie_id": a.pk})
    world.grant(world.member, Perm.PLAY_CONTROL)
    version = world.state().version

    # Play control alone: pause, seek, rate: yes.
    r = put(world.member_api, world, {"playing": True, "position": 3, "rate": 2})
    assert r.status_code == 200, r.content
    version += 1
    # Naming the movie that is already current is not a change.
    assert put(world.member_api, world, {"movie_id": a.pk, "playing": False}).status_code == 200
    version += 1
    # Another movie, or none: no, and nothing of the request is applied.
    for target in (b.pk, None):
        error = assert_error(
            put(world.member_api, world, {"movie_id": target, "playing": True}), 403, "permission_denied"
        )
        assert "CHANGE_CURRENT_MOVIE" in error["message"]
        state = world.state()
        assert (state.movie_id, state.playing, state.version) == (a.pk, False, version)

    world.grant(world.member, Perm.CHANGE_CURRENT_MOVIE)
    r = put(world.member_api, world, {"movie_id": b.pk})
    assert r.status_code == 200 and r.json()["movie_id"] == b.pk


def test_change_current_movie_without_play_control_is_not_enough(world):
    world.grant(world.member, Perm.CHANGE_CURRENT_MOVIE)
    assert_error(put(world.member_api, world, {"movie_id": world.movies[0].pk}), 403, "permission_denied")


def test_who_may_read_and_write(world):
    _member, guest_token = services.guest_join(room=world.room, name="visitor", origin=TEST_ORIGIN)
    guest = client_for(guest_token)
    assert guest.get(world.url).status_code == 200
    assert_error(put(guest, world, {"playing": True}), 403, "permission_denied")
    assert_error(world.outsider_api.get(world.url), 403, "not_in_room")
    assert_error(put(world.outsider_api, world, {"playing": True}), 403, "not_in_room")
    assert_error(client_for().get(world.url), 401, "not_authenticated")
    assert_error(put(client_for(), world, {"playing": True}), 401, "not_authenticated")
    # A guest token opens its own room only.
    other = make_world()
    assert_error(guest.get(other.url), 403, "not_in_room")
    assert_error(put(guest, other, {"playing": True}), 403, "not_in_room")
    assert world.state().version == 0 and other.state().version == 0


def test_a_site_admin_controls_any_room(world):
    from apps.accounts import services as account_services
    from apps.accounts.tests.factories import login

    admin, _ = make_user()
    account_services.user_set_role(actor=None, user=admin, role="admin", origin=TEST_ORIGIN)
    api = client_for(login(admin).access)
    r = put(api, world, {"movie_id": world.movies[1].pk, "playing": True})
    assert r.status_code == 200, r.content
    assert world.state().movie_id == world.movies[1].pk
