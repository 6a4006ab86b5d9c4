"""django-auditlog records room, member and movie changes too, never the room password
(docs/security.md, "The audit log"); deleting a user leaves their events and the chain intact."""

from __future__ import annotations

import json

import pytest
from auditlog.models import LogEntry

from apps.accounts.models import User
from apps.accounts.tests.factories import TEST_ORIGIN, make_user
from apps.audit.chain import verify_chain
from apps.audit.models import AuditEvent
from apps.audit.tests.conftest import api_as, verify_output
from apps.permissions.flags import Perm
from apps.rooms import services
from apps.rooms.models import Movie, Room, RoomMember
from apps.rooms.tests.conftest import ROOMS

# --- django-auditlog ----------------------------------------------------------------------------------------


def _entries(instance) -> list[LogEntry]:
    return list(LogEntry.objects.get_for_object(instance).order_by("timestamp", "pk"))


@pytest.mark.django_db
def test_auditlog_records_room_member_and_movie_changes():
    _creator, creator_pair = make_user()
    member, _ = make_user()
    owner = api_as(creator_pair.access)
    r = owner.post(ROOMS, {"name": "logged", "password": "room-Secret1"}, format="json")
    room = Room.objects.get(pk=r.json()["id"])
    owner.patch(f"{ROOMS}/{room.pk}", {"name": "logged2", "password": "room-Secret2"}, format="json")
    owner.patch(f"{ROOMS}/{room.pk}", {"password": ""}, format="json")

    room_entries = _entries(room)
    assert [e.action for e in room_entries][:2] == [LogEntry.Action.CREATE, LogEntry.Action.UPDATE]
    assert room_entries[1].changes_dict["name"] == ["logged", "logged2"]
    for entry in room_entries:
        assert "password" not in entry.changes_dict
    room.refresh_from_db()
    dumped = json.dumps(
        list(
            LogEntry.objects.values(
                "changes", "changes_text", "serialized_data", "additional_data", "object_repr"
            )
        ),
        default=str,
    )
    for secret in ("room-Secret1", "room-Secret2", "argon2", "pbkdf2"):
        assert secret not in dumped

    services.member_join(user=member, room=room, origin=TEST_ORIGIN)
    target = RoomMember.objects.get(room=room, user=member)
    r = owner.patch(
        f"{ROOMS}/{room.pk}/members/{member.pk}", {"permissions_added": int(Perm.EDIT_MOVIE)}, format="json"
    )
    assert r.status_code == 200, r.content
    member_entries = _entries(target)
    assert [e.action for e in member_entries] == [LogEntry.Action.CREATE, LogEntry.Action.UPDATE]
    assert member_entries[1].changes_dict["permissions_added"] == ["0", str(int(Perm.EDIT_MOVIE))]
    r = owner.post(f"{ROOMS}/{room.pk}/members/{member.pk}/kick")
    assert r.status_code == 204
    assert LogEntry.objects.filter(
        content_type__model="roommember", object_pk=str(target.pk), action=LogEntry.Action.DELETE
    ).exists()

    r = owner.post(
        f"{ROOMS}/{room.pk}/movies",
        [{"name": "a", "url": "https://m.example/a.mp4"}, {"name": "b", "url": "https://m.example/b.mp4"}],
        format="json",
    )
    assert r.status_code == 201
    a, b = (Movie.objects.get(pk=m["id"]) for m in r.json())
    for movie in (a, b):
        created = [e for e in _entries(movie) if e.action == LogEntry.Action.CREATE]
        assert len(created) == 1, movie
        assert created[0].changes_dict["url"][1] == movie.url
    owner.patch(f"{ROOMS}/{room.pk}/movies/{a.pk}", {"name": "a2"}, format="json")
    assert _entries(a)[-1].action == LogEntry.Action.UPDATE
    assert _entries(a)[-1].changes_dict["name"] == ["a", "a2"]
    owner.delete(f"{ROOMS}/{room.pk}/movies/{b.pk}")
    assert LogEntry.objects.filter(
        content_type__model="movie", object_pk=b.pk, action=LogEntry.Action.DELETE
    ).exists()


def test_deleting_a_user_leaves_their_events_and_the_chain_intact(db):
    """A superuser may delete an account in the admin: its events keep the user id they were
    hashed with (SET_NULL used to rewrite it and break the chain at every one of them)."""
    user, _ = make_user()
    services.room_create(creator=user, name="before the deletion", origin=TEST_ORIGIN)
    theirs = set(AuditEvent.objects.filter(user_id=user.pk).values_list("pk", flat=True))
    assert len(theirs) >= 2  # registration and the room
    user_id = user.pk
    user.delete()
    assert not User.objects.filter(pk=user_id).exists()
    assert set(AuditEvent.objects.filter(user_id=user_id).values_list("pk", flat=True)) == theirs
    assert verify_chain()[1] is None
    assert "intact" in verify_output()
