"""Invite codes never reach the room's audit log (issue 10, finding 4).

A member with VIEW_AUDIT_LOG but not INVITE_MEMBERS reads the log; an invite code there would
let anyone into a password-protected hidden room. The log carries a keyed, non-reversible
reference instead (the same one for the invite's creation and every join by it), and rows
written before that change are shown with the reference too, without rewriting the
hash-chained rows.
"""

from __future__ import annotations

import json

import pytest
from auditlog.models import LogEntry

from apps.accounts.tests.factories import TEST_ORIGIN
from apps.audit.actions import AuditAction
from apps.audit.chain import verify_chain
from apps.audit.models import AuditEvent
from apps.audit.services import audit_record
from apps.permissions.flags import Perm
from apps.rooms.models import Invite, invite_ref
from apps.rooms.tests.conftest import ROOM_PASSWORD, client, grant, join, make_room, person, room_url

pytestmark = pytest.mark.django_db


@pytest.fixture
def hidden_locked():
    owner = person()
    room = make_room(owner, name="Secret", password=ROOM_PASSWORD, settings={"hidden": True})
    return owner, room


def _auditor(room):
    """A member who reads the audit log but may not invite."""
    reader = person()
    join(reader, room, password=ROOM_PASSWORD)
    grant(room, reader, added=int(Perm.VIEW_AUDIT_LOG), removed=int(Perm.INVITE_MEMBERS))
    me = reader.client.get(room_url(room, "members/me")).json()
    assert me["effective_permissions"] & Perm.VIEW_AUDIT_LOG
    assert not me["effective_permissions"] & Perm.INVITE_MEMBERS
    return reader


def test_invite_code_is_not_in_the_audit_log(hidden_locked):
    owner, room = hidden_locked
    reader = _auditor(room)
    r = owner.client.post(room_url(room, "invites"), {"max_uses": 5}, format="json")
    assert r.status_code == 201, r.content
    code = r.json()["code"]
    newcomer = person()
    r = newcomer.client.post(room_url(room, "join"), {"invite": code}, format="json")
    assert r.status_code == 201, r.content

    r = reader.client.get(room_url(room, "audit-log"))
    assert r.status_code == 200, r.content
    assert code not in r.content.decode()
    events = r.json()["results"]
    created = next(e for e in events if e["action"] == "invite.create")
    joined = next(e for e in events if e["action"] == "member.join" and e["user"]["id"] == newcomer.user.pk)
    # One reference for the invite: who joined by which invite still reads from the log.
    assert created["resource_id"] == joined["details"]["invite"] == invite_ref(code)
    assert created["resource_id"].startswith("inv:")

    # Not stored anywhere a log reader could reach either: the audit rows, the model history.
    for event in AuditEvent.objects.all():
        stored = json.dumps([event.resource_id, event.details], default=str)
        assert code not in stored, (event.action, stored)
    for entry in LogEntry.objects.all():
        assert code not in json.dumps([entry.object_repr, entry.changes], default=str), entry

    # The invite itself still works and is still shown to the one who made it.
    assert Invite.objects.get(pk=code).uses == 1


def test_invite_reference_is_keyed_not_a_plain_digest(settings):
    import hashlib

    code = "AbCdEfGhIjKl"
    ref = invite_ref(code)
    for digest in (hashlib.sha256, hashlib.sha1, hashlib.md5):
        assert digest(code.encode()).hexdigest()[:16] not in ref
    settings.SECRET_KEY = "another-secret-" * 4
    assert invite_ref(code) != ref


def test_old_rows_holding_a_code_are_shown_with_the_reference(hidden_locked):
    """Rows written before the fix keep their stored content (the chain hashes it); the API's
    reader shows the reference in place of the code."""
    owner, room = hidden_locked
    reader = _auditor(room)
    invite = Invite.objects.create(room=room, created_by=owner.user)
    code = invite.code
    # What the old code wrote: the code as the invite's resource id and in the join's details.
    audit_record(
        action=AuditAction.INVITE_CREATE,
        origin=TEST_ORIGIN,
        user=owner.user,
        resource_type="invite",
        resource_id=code,
        room_id=room.pk,
        details={"max_uses": None, "expires_in": None},
    )
    audit_record(
        action=AuditAction.MEMBER_JOIN,
        origin=TEST_ORIGIN,
        user=reader.user,
        resource_type="member",
        resource_id=reader.user.pk,
        room_id=room.pk,
        details={"invite": code},
    )
    r = reader.client.get(room_url(room, "audit-log"))
    assert r.status_code == 200
    assert code not in r.content.decode()
    events = r.json()["results"]
    ref = invite_ref(code)
    assert events[0]["action"] == "member.join" and events[0]["details"]["invite"] == ref
    assert events[1]["action"] == "invite.create" and events[1]["resource_id"] == ref
    # A join without an invite keeps its null; the stored rows are untouched and the chain holds.
    assert AuditEvent.objects.get(action="member.join", user_id=reader.user.pk, details__invite=code)
    checked, broken = verify_chain()
    assert broken is None and checked == AuditEvent.objects.count()


def test_join_without_invite_has_no_reference(hidden_locked):
    _owner, room = hidden_locked
    reader = _auditor(room)
    events = reader.client.get(room_url(room, "audit-log")).json()["results"]
    joined = next(e for e in events if e["action"] == "member.join" and e["user"]["id"] == reader.user.pk)
    assert joined["details"]["invite"] is None
    assert client().get(room_url(room, "audit-log")).status_code == 401
