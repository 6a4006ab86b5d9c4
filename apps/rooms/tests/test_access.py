"""One access check (selectors.room_access): the room a request names and the caller's actor
there, or the API's answer. The permission matrix (test_permission_matrix.py) pins what every
endpoint answers every caller; these pin the selector itself, the order of the answers where a
body is read, and the one creator rule of room_delete and room_set_closed."""

from __future__ import annotations

import pytest

from apps.accounts.tests.factories import TEST_ORIGIN
from apps.core.errors import NotFound, NotInRoom, PermissionDenied
from apps.core.tests.helpers import assert_error
from apps.rooms import selectors, services
from apps.rooms.models import Room, RoomMember
from apps.rooms.tests.conftest import ACTOR_NAMES, room_url

# Who is in the room (an active member, or a site admin acting as one); everyone else is not.
IN_ROOM = {"guest", "member", "member_plus", "member_minus", "admin", "creator", "site_admin"}


def _auth(world, name: str):
    """The token claims the view would see: a guest token names its room."""
    if name == "guest":
        return {"token_type": "guest", "rid": world.room.pk}
    if name == "foreign_guest":
        return {"token_type": "guest", "rid": world.other_room.pk}
    return None


@pytest.mark.parametrize("name", ACTOR_NAMES)
def test_room_access_answers_each_caller(shared_room_world, name):
    world = shared_room_world
    user, auth = world.actor(name).user, _auth(world, name)
    if name in IN_ROOM:
        room, actor = selectors.room_access(user=user, room_id=world.room.pk, auth=auth)
        assert room.pk == world.room.pk and actor.is_member
    else:
        with pytest.raises(NotInRoom):
            selectors.room_access(user=user, room_id=world.room.pk, auth=auth)
    # member=False: the actor whatever it is, for a service that decides itself.
    room, actor = selectors.room_access(user=user, room_id=world.room.pk, auth=auth, member=False)
    assert room.pk == world.room.pk and actor.is_member == (name in IN_ROOM)


def test_a_guest_token_opens_only_its_own_room(shared_room_world):
    world = shared_room_world
    guest = world.actor("guest").user
    with pytest.raises(NotInRoom):  # its membership row is here, but the token names another room
        selectors.room_access(
            user=guest, room_id=world.room.pk, auth={"token_type": "guest", "rid": world.other_room.pk}
        )


@pytest.mark.parametrize("room_id", ["nosuchroom", "", "x" * 33, "a\x00b", None, 5, ["x"]])
@pytest.mark.parametrize("member", [True, False])
def test_no_such_room_is_not_found_for_everyone(shared_room_world, room_id, member):
    for name in ("anon", "outsider", "creator", "site_admin"):
        with pytest.raises(NotFound):
            selectors.room_access(user=shared_room_world.actor(name).user, room_id=room_id, member=member)


def test_a_hidden_room_is_unlisted_not_secret(shared_room_world):
    """Found by id like any other room (an invite link reaches one that way); only the public
    list leaves it out. Outsiders get not_in_room, as in any room, not not_found."""
    world = shared_room_world
    Room.objects.filter(pk=world.room.pk).update(hidden=True)
    room, actor = selectors.room_access(user=world.member.user, room_id=world.room.pk)
    assert room.hidden and actor.is_member
    with pytest.raises(NotInRoom):
        selectors.room_access(user=world.outsider.user, room_id=world.room.pk)
    assert world.outsider.client.get(world.url()).status_code == 200
    assert_error(world.outsider.client.get(world.url("playback")), 403, "not_in_room")
    assert world.member.client.get(world.url("playback")).status_code == 200


# Member-only writes that read a body: 404 no such room, then 400 a bad body, then 403.
BODY_WRITES = [
    ("patch", "members/{target}", {"role": 5}, {"role": "member"}),
    ("post", "members/{target}/ban", {"reason": 5}, {"reason": "spam"}),
    ("patch", "movies/{movie}", {"name": 5}, {"name": "Renamed"}),
]


@pytest.mark.parametrize(("method", "suffix", "bad", "good"), BODY_WRITES)
def test_the_order_of_the_answers_where_a_body_is_read(shared_room_world, method, suffix, bad, good):
    world = shared_room_world
    suffix = suffix.format(target=world.target.id, movie=world.movies[0].pk)
    outsider = world.outsider.client
    call = getattr(outsider, method)
    assert_error(call(room_url("nosuchroom", suffix), bad, format="json"), 404, "not_found")
    assert_error(call(world.url(suffix), bad, format="json"), 400, "invalid")
    assert_error(call(world.url(suffix), good, format="json"), 403, "not_in_room")


# --- the creator rule -------------------------------------------------------------------------------


def test_room_delete_and_room_set_closed_agree_on_who_the_creator_is(shared_room_world):
    """Both follow DELETE rooms/{id}'s rule, creator or site admin, with the creator by an active
    membership. Closing used to accept a creator row in any status, deleting only an active
    one; no API path leaves a creator row inactive, so only a row changed by hand differs."""
    world = shared_room_world
    creator = world.actor("creator").user
    RoomMember.objects.filter(room=world.room, user=creator).update(status="banned")
    actor = services.actor_for_user(user=creator, room=world.room)
    assert not actor.is_creator and not actor.is_site_admin
    with pytest.raises(PermissionDenied):
        services.room_set_closed(actor=actor, room=world.room, closed=True, origin=TEST_ORIGIN)
    with pytest.raises(PermissionDenied):
        services.room_delete(actor=actor, room=world.room, origin=TEST_ORIGIN)

    RoomMember.objects.filter(room=world.room, user=creator).update(status="active")
    actor = services.actor_for_user(user=creator, room=world.room)
    assert actor.is_creator
    room = services.room_set_closed(actor=actor, room=world.room, closed=True, origin=TEST_ORIGIN)
    assert room.is_closed
    services.room_delete(actor=actor, room=world.room, origin=TEST_ORIGIN)
    assert not Room.objects.filter(pk=world.room.pk).exists()


@pytest.mark.parametrize("name", ["admin", "member", "outsider", "site_admin"])
def test_only_the_creator_or_a_site_admin_closes_or_deletes(shared_room_world, name):
    world = shared_room_world
    actor = world.actor_of(name)
    if name == "site_admin":
        services.room_set_closed(actor=actor, room=world.room, closed=True, origin=TEST_ORIGIN)
        services.room_delete(actor=actor, room=world.room, origin=TEST_ORIGIN)
        return
    with pytest.raises(PermissionDenied):
        services.room_set_closed(actor=actor, room=world.room, closed=True, origin=TEST_ORIGIN)
    with pytest.raises(PermissionDenied):
        services.room_delete(actor=actor, room=world.room, origin=TEST_ORIGIN)
