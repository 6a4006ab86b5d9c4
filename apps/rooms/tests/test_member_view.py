"""``member_view`` renders a membership as the declared ``MemberSerializer`` fields would: the
REST answers, the OpenAPI schema and the socket's hello describe the same object."""

import datetime

import pytest
from rest_framework import serializers

from apps.permissions.flags import Perm
from apps.rooms.models import RoomMember
from apps.rooms.serializers import MemberSerializer, member_view
from apps.rooms.tests.conftest import grant, join, make_room, person

pytestmark = pytest.mark.django_db


def declared_rendering(member: RoomMember) -> dict:
    """What DRF makes of MemberSerializer's declared fields, without its override."""
    return dict(serializers.ModelSerializer.to_representation(MemberSerializer(), member))


def test_every_kind_of_member_renders_as_the_declared_fields(alice, bob):
    room = make_room(alice)
    join(bob, room)
    grant(room, bob, added=int(Perm.PLAY_CONTROL), removed=int(Perm.SEND_CHAT_MESSAGE), role="admin")
    guest = person()
    join(guest, room)
    guest.user.is_guest = True  # the row is what is rendered; guests' own way in is tested elsewhere
    guest.user.save(update_fields=["is_guest"])
    members = list(RoomMember.objects.select_related("user", "room").filter(room=room))
    assert len(members) == 3
    for member in members:
        assert member_view(member) == declared_rendering(member)
    by_user = {m.user_id: member_view(m) for m in members}
    assert by_user[bob.user.pk]["role"] == "admin"
    assert by_user[bob.user.pk]["permissions_removed"] == int(Perm.SEND_CHAT_MESSAGE)
    assert by_user[guest.user.pk]["user"]["guest"] is True


def test_the_time_and_the_enum_values_are_plain_json(alice):
    member = RoomMember.objects.select_related("user", "room").get(room=make_room(alice), user=alice.user)
    member.joined_at = datetime.datetime(2026, 12, 5, 1, 2, 3, 456789, tzinfo=datetime.UTC)
    view = member_view(member)
    assert view["joined_at"] == declared_rendering(member)["joined_at"] == "2026-12-05T01:02:03.456789Z"
    assert type(view["role"]) is str and type(view["status"]) is str


def test_the_serializer_answers_with_member_view(alice):
    member = RoomMember.objects.select_related("user", "room").get(room=make_room(alice), user=alice.user)
    assert dict(MemberSerializer(member).data) == member_view(member)
