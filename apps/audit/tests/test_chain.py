"""The audit log (docs/security.md): room, member, playlist and playback changes leave an event
with who, what, on what, details, IP, user agent and room; members with VIEW_AUDIT_LOG read
their room's part (never IPs); the hash chain shows any edit or deletion (``audit_verify``),
also after concurrent writers; django-auditlog records model changes too (never the room
password)."""

from __future__ import annotations

import io
import itertools
import json
import threading
from dataclasses import dataclass

import pytest
from auditlog.models import LogEntry
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Max
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts import services as account_services
from apps.accounts.models import User
from apps.accounts.tests.factories import TEST_ORIGIN, login, make_user
from apps.audit.actions import AuditAction
from apps.audit.chain import GENESIS, verify_chain
from apps.audit.models import AuditChainHead, AuditEvent
from apps.audit.services import audit_record
from apps.core.context import Origin
from apps.core.tests.helpers import admin_url, retry_if_sqlite_locked
from apps.permissions import flags
from apps.permissions.flags import Perm
from apps.rooms import services
from apps.rooms.models import Movie, Room, RoomMember, invite_ref

ROOMS = "/api/v1/rooms"
CREATOR_IP, CREATOR_UA = "203.0.113.7", "chain-test/1.0 (creator)"
MEMBER_IP, MEMBER_UA = "2001:db8::5", "chain-test/1.0 (member)"


# --- helpers -------------------------------------------------------------------------------------------


def api_as(token: str | None, *, ip: str = CREATOR_IP, ua: str = CREATOR_UA) -> APIClient:
    client = APIClient(REMOTE_ADDR=ip, HTTP_USER_AGENT=ua)
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def last_seq() -> int:
    return AuditEvent.objects.aggregate(m=Max("seq"))["m"] or 0


def events_since(seq: int) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(seq__gt=seq).order_by("seq"))


def verify_output() -> str:
    out = io.StringIO()
    call_command("audit_verify", stdout=out)
    return out.getvalue()


def assert_verify_names(seq: int) -> str:
    with pytest.raises(CommandError) as caught:
        call_command("audit_verify", stdout=io.StringIO())
    message = str(caught.value)
    assert f"at seq {seq} " in message, message
    return message


@dataclass
class Step:
    """One API call and the single audit event it must leave."""

    label: str
    call: object  # () -> response
    status: int
    action: str
    actor: User
    resource_type: str
    resource_id: object  # str, or a callable (response) -> str
    details: object = None  # callable (details, response) -> None
    ip: str = CREATOR_IP
    ua: str = CREATOR_UA
    room_id: object = None  # str, or callable (response) -> str; default: the room


def run_step(step: Step, room_id: str | None) -> tuple[object, AuditEvent]:
    before = last_seq()
    started = timezone.now()
    response = step.call()
    assert response.status_code == step.status, (step.label, response.content)
    new = events_since(before)
    assert [e.action for e in new] == [step.action], step.label
    event = new[0]
    expected_room = step.room_id(response) if callable(step.room_id) else (step.room_id or room_id)
    expected_resource = step.resource_id(response) if callable(step.resource_id) else step.resource_id
    assert event.user_id == step.actor.pk, step.label
    assert event.resource_type == step.resource_type, step.label
    assert event.resource_id == str(expected_resource), step.label
    assert event.room_id == expected_room, step.label
    assert event.ip == step.ip, step.label
    assert event.user_agent == step.ua, step.label
    assert started <= event.created_at <= timezone.now(), step.label
    assert isinstance(event.details, dict), step.label
    if step.details is not None:
        step.details(event.details, response)
    return response, event


# --- every change writes an event ------------------------------------------------------------------------


@pytest.mark.django_db
def test_room_member_playlist_and_playback_changes_are_audited():
    creator, creator_pair = make_user()
    member, member_pair = make_user()
    kicked, kicked_pair = make_user()
    banned, banned_pair = make_user()
    owner = api_as(creator_pair.access)
    mem = api_as(member_pair.access, ip=MEMBER_IP, ua=MEMBER_UA)

    # Create the room: the id is only known from the answer.
    _r, event = run_step(
        Step(
            "create",
            lambda: owner.post(ROOMS, {"name": "Audited", "password": "first-Secret"}, format="json"),
            201,
            "room.create",
            creator,
            "room",
            lambda r: r.json()["id"],
            details=lambda d, r: d == {"name": "Audited", "has_password": True} or pytest.fail(str(d)),
            room_id=lambda r: r.json()["id"],
        ),
        None,
    )
    room_id = event.room_id
    room = Room.objects.get(pk=room_id)
    base = f"{ROOMS}/{room_id}"

    def join(api, password):
        return api.post(f"{base}/join", {"password": password}, format="json")

    steps = [
        Step(
            "wrong room password",
            lambda: join(mem, "not-the-one"),
            403,
            "member.join_password_wrong",
            member,
            "room",
            room_id,
            ip=MEMBER_IP,
            ua=MEMBER_UA,
        ),
        Step(
            "join",
            lambda: join(mem, "first-Secret"),
            201,
            "member.join",
            member,
            "member",
            member.pk,
            ip=MEMBER_IP,
            ua=MEMBER_UA,
        ),
        Step(
            "settings",
            lambda: owner.patch(
                base,
                {"settings": {"member_permissions": flags.DEFAULT_MEMBER | Perm.PLAY_CONTROL}},
                format="json",
            ),
            200,
            "room.settings_change",
            creator,
            "room",
            room_id,
            details=lambda d, r: (
                d["changes"]["member_permissions"]
                == [flags.DEFAULT_MEMBER, flags.DEFAULT_MEMBER | Perm.PLAY_CONTROL]
                or pytest.fail(str(d))
            ),
        ),
        Step(
            "rename and new password",
            lambda: owner.patch(base, {"name": "Renamed", "password": "second-Secret"}, format="json"),
            200,
            "room.update",
            creator,
            "room",
            room_id,
            details=lambda d, r: (
                (d["changes"]["name"] == ["Audited", "Renamed"] and d["changes"]["password"] == "set")
                or pytest.fail(str(d))
            ),
        ),
        Step(
            "invite",
            lambda: owner.post(f"{base}/invites", {"max_uses": 3}, format="json"),
            201,
            "invite.create",
            creator,
            "invite",
            lambda r: invite_ref(r.json()["code"]),  # the invite's reference, never its code
            details=lambda d, r: d["max_uses"] == 3 or pytest.fail(str(d)),
        ),
        Step(
            "grant",
            lambda: owner.patch(
                f"{base}/members/{member.pk}", {"permissions_added": int(Perm.EDIT_MOVIE)}, format="json"
            ),
            200,
            "member.permissions_change",
            creator,
            "member",
            member.pk,
            details=lambda d, r: (
                (d["before"]["added"] == 0 and d["after"]["added"] == Perm.EDIT_MOVIE) or pytest.fail(str(d))
            ),
        ),
        Step(
            "promote",
            lambda: owner.patch(f"{base}/members/{member.pk}", {"role": "admin"}, format="json"),
            200,
            "member.role_change",
            creator,
            "member",
            member.pk,
            details=lambda d, r: (
                (d["before"]["role"], d["after"]["role"]) == ("member", "admin") or pytest.fail(str(d))
            ),
        ),
        Step(
            "add movies",
            lambda: mem.post(
                f"{base}/movies",
                [
                    {"name": "one", "url": "https://m.example/1.mp4"},
                    {"name": "two", "url": "https://m.example/2.mp4"},
                ],
                format="json",
            ),
            201,
            "playlist.add",
            member,
            "movie",
            "",
            details=lambda d, r: d["movies"] == [m["id"] for m in r.json()] or pytest.fail(str(d)),
            ip=MEMBER_IP,
            ua=MEMBER_UA,
        ),
    ]
    for step in steps:
        run_step(step, room_id)

    one, two = Movie.objects.filter(room=room).order_by("position")
    steps = [
        Step(
            "add one movie",
            lambda: mem.post(
                f"{base}/movies", {"name": "three", "url": "https://m.example/3.mp4"}, format="json"
            ),
            201,
            "playlist.add",
            member,
            "movie",
            lambda r: r.json()["id"],
            ip=MEMBER_IP,
            ua=MEMBER_UA,
        ),
        Step(
            "edit movie",
            lambda: mem.patch(f"{base}/movies/{one.pk}", {"name": "uno"}, format="json"),
            200,
            "playlist.edit",
            member,
            "movie",
            one.pk,
            details=lambda d, r: d["fields"] == ["name"] or pytest.fail(str(d)),
            ip=MEMBER_IP,
            ua=MEMBER_UA,
        ),
    ]
    for step in steps:
        run_step(step, room_id)
    three = Movie.objects.get(room=room, name="three")
    order = [three.pk, two.pk, one.pk]
    steps = [
        Step(
            "reorder",
            lambda: owner.post(f"{base}/movies/reorder", {"order": order}, format="json"),
            200,
            "playlist.reorder",
            creator,
            "room",
            room_id,
            details=lambda d, r: d["order"] == order or pytest.fail(str(d)),
        ),
        Step(
            "playback",
            lambda: owner.put(
                f"{base}/playback", {"movie_id": two.pk, "playing": True, "position": 4}, format="json"
            ),
            200,
            "playback.update",
            creator,
            "playback",
            room_id,
            details=lambda d, r: (
                (d["movie_id"], d["playing"], d["version"]) == (two.pk, True, 1) or pytest.fail(str(d))
            ),
        ),
        Step(
            "delete movie",
            lambda: mem.delete(f"{base}/movies/{two.pk}"),
            204,
            "playlist.delete",
            member,
            "movie",
            two.pk,
            details=lambda d, r: d["name"] == "two" or pytest.fail(str(d)),
            ip=MEMBER_IP,
            ua=MEMBER_UA,
        ),
        Step(
            "clear",
            lambda: owner.delete(f"{base}/movies"),
            204,
            "playlist.clear",
            creator,
            "room",
            room_id,
            details=lambda d, r: d["removed"] == 2 or pytest.fail(str(d)),
        ),
        Step(
            "kicked joins",
            lambda: join(api_as(kicked_pair.access), "second-Secret"),
            201,
            "member.join",
            kicked,
            "member",
            kicked.pk,
        ),
        Step(
            "kick",
            lambda: owner.post(f"{base}/members/{kicked.pk}/kick", format="json"),
            204,
            "member.kick",
            creator,
            "member",
            kicked.pk,
        ),
        Step(
            "banned joins",
            lambda: join(api_as(banned_pair.access), "second-Secret"),
            201,
            "member.join",
            banned,
            "member",
            banned.pk,
        ),
        Step(
            "ban",
            lambda: mem.post(f"{base}/members/{banned.pk}/ban", {"reason": "spam"}, format="json"),
            204,
            "member.ban",
            member,
            "member",
            banned.pk,
            details=lambda d, r: d["reason"] == "spam" or pytest.fail(str(d)),
            ip=MEMBER_IP,
            ua=MEMBER_UA,
        ),
        Step(
            "unban",
            lambda: owner.post(f"{base}/members/{banned.pk}/unban", format="json"),
            204,
            "member.unban",
            creator,
            "member",
            banned.pk,
        ),
        Step(
            "leave",
            lambda: mem.post(f"{base}/leave", format="json"),
            204,
            "member.leave",
            member,
            "member",
            member.pk,
            ip=MEMBER_IP,
            ua=MEMBER_UA,
        ),
        Step(
            "delete room",
            lambda: owner.delete(base),
            204,
            "room.delete",
            creator,
            "room",
            room_id,
            details=lambda d, r: d["name"] == "Renamed" or pytest.fail(str(d)),
        ),
    ]
    for step in steps:
        run_step(step, room_id)

    # No room password, tried or set, is in any event.
    everything = json.dumps(list(AuditEvent.objects.values("details", "resource_id", "user_agent")))
    for secret in ("first-Secret", "second-Secret", "not-the-one"):
        assert secret not in everything
    # The room is gone; its events stay, chained.
    assert AuditEvent.objects.filter(room_id=room_id).count() >= 20
    assert "intact" in verify_output()


@pytest.mark.django_db
def test_guest_join_is_audited_with_the_guest_as_actor():
    creator, _ = make_user()
    room = services.room_create(
        creator=creator, name="guests", settings={"allow_guests": True}, origin=TEST_ORIGIN
    )
    before = last_seq()
    r = api_as(None, ip="198.51.100.9", ua="guest-browser").post(
        f"{ROOMS}/{room.pk}/guest", {"name": "Visitor"}, format="json"
    )
    assert r.status_code == 200, r.content
    [event] = events_since(before)
    guest_id = r.json()["member"]["user"]["id"]
    assert (event.action, event.user_id, event.resource_type, event.resource_id) == (
        "member.guest_join",
        guest_id,
        "member",
        guest_id,
    )
    assert (event.ip, event.user_agent, event.room_id) == ("198.51.100.9", "guest-browser", room.pk)
    assert event.details == {"name": "Visitor"}


@pytest.mark.django_db
def test_refused_changes_leave_no_event():
    creator, _ = make_user()
    member, member_pair = make_user()
    room = services.room_create(creator=creator, name="r", origin=TEST_ORIGIN)
    services.member_join(user=member, room=room, origin=TEST_ORIGIN)
    mem = api_as(member_pair.access)
    before = last_seq()
    base = f"{ROOMS}/{room.pk}"
    assert mem.delete(f"{base}/movies").status_code == 403
    assert mem.put(f"{base}/playback", {"playing": True}, format="json").status_code == 403
    assert mem.patch(base, {"name": "x"}, format="json").status_code == 403
    assert mem.post(f"{base}/movies", {"name": "x", "url": "javascript:1"}, format="json").status_code == 400
    assert events_since(before) == []


# --- the room's audit log over the API ----------------------------------------------------------------------


@pytest.fixture
def audited_rooms(db):
    creator, creator_pair = make_user()
    member, member_pair = make_user()
    room = services.room_create(creator=creator, name="mine", origin=TEST_ORIGIN)
    other = services.room_create(creator=creator, name="theirs", origin=TEST_ORIGIN)
    services.member_join(user=member, room=room, origin=Origin(ip="192.0.2.44", user_agent="secret-agent"))
    actor = services.actor_for_user(user=creator, room=room)
    other_actor = services.actor_for_user(user=creator, room=other)
    for i in range(3):
        services.playback_update(actor=actor, room=room, position=float(i), origin=Origin(ip="192.0.2.44"))
        services.playback_update(actor=other_actor, room=other, position=float(i), origin=TEST_ORIGIN)
    return room, other, creator, creator_pair, member, member_pair


def test_audit_log_lists_only_this_rooms_events_without_ips(audited_rooms):
    room, other, _creator, creator_pair, member, _member_pair = audited_rooms
    r = api_as(creator_pair.access).get(f"{ROOMS}/{room.pk}/audit-log")
    assert r.status_code == 200, r.content
    body = r.json()
    assert set(body) >= {"count", "next", "previous", "results"}
    expected = list(AuditEvent.objects.filter(room_id=room.pk).order_by("-seq").values_list("seq", flat=True))
    assert body["count"] == len(expected) == 5  # create, join, 3 playback
    assert [e["seq"] for e in body["results"]] == expected  # newest first
    other_seqs = set(AuditEvent.objects.filter(room_id=other.pk).values_list("seq", flat=True))
    assert other_seqs and not other_seqs & {e["seq"] for e in body["results"]}
    for event in body["results"]:
        assert set(event) == {
            "seq",
            "created_at",
            "user",
            "action",
            "resource_type",
            "resource_id",
            "details",
        }
    join = next(e for e in body["results"] if e["action"] == "member.join")
    assert join["user"] == {"id": member.pk, "username": member.username, "guest": False}
    # Where members connect from is not the room admins' business.
    assert "192.0.2.44" not in r.content.decode() and "secret-agent" not in r.content.decode()
    assert "127.0.0.1" not in r.content.decode()


def test_audit_log_is_paginated(audited_rooms):
    room, _other, creator, creator_pair, *_ = audited_rooms
    actor = services.actor_for_user(user=creator, room=room)
    for i in range(55):
        services.playback_update(actor=actor, room=room, position=10.0 + i, origin=TEST_ORIGIN)
    api = api_as(creator_pair.access)
    first = api.get(f"{ROOMS}/{room.pk}/audit-log").json()
    assert first["count"] == 60 and len(first["results"]) == 50
    assert first["previous"] is None and first["next"]
    second = api.get(f"{ROOMS}/{room.pk}/audit-log", {"page": 2}).json()
    assert len(second["results"]) == 10 and second["next"] is None
    seqs = [e["seq"] for e in first["results"] + second["results"]]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == 60
    assert api.get(f"{ROOMS}/{room.pk}/audit-log", {"page": 9}).status_code == 404
    assert api.get(f"{ROOMS}/{room.pk}/audit-log", {"page": "x' OR 1=1"}).status_code == 404


def test_audit_log_needs_view_audit_log(audited_rooms):
    room, _other, creator, _creator_pair, member, member_pair = audited_rooms
    url = f"{ROOMS}/{room.pk}/audit-log"
    mem = api_as(member_pair.access)
    r = mem.get(url)
    assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied"
    _outsider, outsider_pair = make_user()
    r = api_as(outsider_pair.access).get(url)
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_in_room"
    r = api_as(None).get(url)
    assert r.status_code == 401 and r.json()["error"]["code"] == "not_authenticated"

    owner_actor = services.actor_for_user(user=creator, room=room)
    target = RoomMember.objects.get(room=room, user=member)
    services.member_update(
        actor=owner_actor,
        room=room,
        target=target,
        permissions_added=int(Perm.VIEW_AUDIT_LOG),
        origin=TEST_ORIGIN,
    )
    assert mem.get(url).status_code == 200
    # Taking the bit back (from an admin's default set) closes it again.
    target.refresh_from_db()
    services.member_update(
        actor=owner_actor, room=room, target=target, role="admin", permissions_added=0, origin=TEST_ORIGIN
    )
    assert mem.get(url).status_code == 200  # admins hold it by default
    target.refresh_from_db()
    services.member_update(
        actor=owner_actor,
        room=room,
        target=target,
        permissions_removed=int(Perm.VIEW_AUDIT_LOG),
        origin=TEST_ORIGIN,
    )
    assert mem.get(url).status_code == 403


def test_audit_log_for_site_admins_and_not_for_guests(audited_rooms):
    room, *_ = audited_rooms
    url = f"{ROOMS}/{room.pk}/audit-log"
    admin, _ = make_user()
    account_services.user_set_role(actor=None, user=admin, role="admin", origin=TEST_ORIGIN)
    assert api_as(login(admin).access).get(url).status_code == 200
    Room.objects.filter(pk=room.pk).update(allow_guests=True)
    room.refresh_from_db()
    _member, guest_token = services.guest_join(room=room, name="g", origin=TEST_ORIGIN)
    r = api_as(guest_token).get(url)
    assert r.status_code == 403, r.content


# --- tamper evidence -------------------------------------------------------------------------------------


@pytest.fixture
def chain(db) -> list[AuditEvent]:
    """Six events, from several actors, rooms and origins."""
    creator, _ = make_user()
    room = services.room_create(
        creator=creator, name="chained", origin=Origin(ip="198.51.100.1", user_agent="ua")
    )
    actor = services.actor_for_user(user=creator, room=room)
    services.movies_add(
        actor=actor, room=room, items=[{"name": "m", "url": "https://m.example/m.mp4"}], origin=TEST_ORIGIN
    )
    services.playback_update(actor=actor, room=room, playing=True, origin=TEST_ORIGIN)
    services.playback_update(actor=actor, room=room, rate=2.0, origin=Origin(ip="2001:db8::9"))
    audit_record(
        action=AuditAction.USER_CREATE_ROOT,  # an operator's action: no room
        origin=Origin(ip="192.0.2.1", user_agent="ops"),
        user=creator,
        details={"n": 1},
    )
    events = list(AuditEvent.objects.order_by("seq"))
    assert [e.seq for e in events] == list(range(1, len(events) + 1)) and len(events) >= 6
    return events


def test_an_untouched_chain_verifies(chain):
    out = verify_output()
    assert f"intact: {len(chain)} event(s)" in out
    assert verify_chain() == (len(chain), None)
    assert chain[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(chain))
    head = AuditChainHead.objects.get(pk=1)
    assert (head.seq, head.hash) == (chain[-1].seq, chain[-1].hash)


def test_an_empty_chain_verifies(db):
    assert "intact: 0 event(s)" in verify_output()


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"details": {"forged": True}}, id="details"),
        pytest.param({"action": "room.nothing_happened"}, id="action"),
        pytest.param({"ip": "10.9.8.7"}, id="ip"),
        pytest.param({"ip": None}, id="ip-removed"),
        pytest.param({"user_agent": "someone else"}, id="user_agent"),
        pytest.param({"user_id": None}, id="user"),
        pytest.param({"room_id": "elsewhere"}, id="room_id"),
        pytest.param({"resource_id": "other"}, id="resource_id"),
        pytest.param({"resource_type": "other"}, id="resource_type"),
        pytest.param({"created_at": timezone.now()}, id="created_at"),
        pytest.param({"hash": "f" * 64}, id="hash"),
        pytest.param({"prev_hash": "0" * 64}, id="prev_hash"),
    ],
)
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_editing_a_row_breaks_the_chain_at_that_row(chain, change, where):
    target = {"first": chain[0], "middle": chain[len(chain) // 2], "last": chain[-1]}[where]
    if where == "first" and "prev_hash" in change:
        change = {"prev_hash": "1" * 64}
    assert AuditEvent.objects.filter(pk=target.pk).update(**change) == 1
    message = assert_verify_names(target.seq)
    assert f"event id {target.pk}" in message


def test_editing_a_row_and_its_hash_breaks_the_chain_at_the_next_row(chain):
    """Recomputing the edited row's own hash does not help: the next row still points at the
    old one."""
    from apps.audit.chain import event_digest

    target = chain[2]
    target.details = {"forged": True}
    target.hash = event_digest(target, target.prev_hash)
    AuditEvent.objects.filter(pk=target.pk).update(details=target.details, hash=target.hash)
    assert_verify_names(target.seq + 1)


def test_deleting_a_middle_row_breaks_the_chain_at_its_seq(chain):
    target = chain[3]
    AuditEvent.objects.filter(pk=target.pk).delete()
    message = assert_verify_names(target.seq)
    assert "missing" in message


def test_deleting_the_first_row_is_seen(chain):
    AuditEvent.objects.filter(pk=chain[0].pk).delete()
    assert_verify_names(1)


def test_deleting_the_last_row_is_seen_through_the_head(chain):
    AuditEvent.objects.filter(pk=chain[-1].pk).delete()
    message = assert_verify_names(chain[-1].seq)
    assert "missing" in message


def test_deleting_the_last_rows_and_the_head_is_seen(chain):
    """An attacker who also rewinds the head must rewind it consistently, which the head's
    hash prevents unless they also know the previous row's hash; here they rewind only seq."""
    AuditEvent.objects.filter(seq__gte=chain[-2].seq).delete()
    AuditChainHead.objects.filter(pk=1).update(seq=chain[-3].seq)
    assert_verify_names(chain[-3].seq)


def test_editing_the_chain_head_is_seen(chain):
    AuditChainHead.objects.filter(pk=1).update(hash="e" * 64)
    message = assert_verify_names(chain[-1].seq)
    assert "head" in message


def test_moving_the_chain_head_forward_is_seen(chain):
    AuditChainHead.objects.filter(pk=1).update(seq=chain[-1].seq + 1)
    with pytest.raises(CommandError):
        call_command("audit_verify", stdout=io.StringIO())


def test_the_admin_cannot_change_audit_events(chain, client):
    root = account_services.user_create_root(
        username="rootadmin", password="Corr3ct-horse", email=None, origin=TEST_ORIGIN
    )
    client.force_login(root)
    url = admin_url(chain[1])
    assert client.get(url).status_code == 200  # readable
    client.post(url, {"action": "forged"})
    client.post(admin_url(chain[1], "delete"), {"post": "yes"})
    assert client.get("/admin/audit/auditevent/add/").status_code == 403
    assert AuditEvent.objects.get(pk=chain[1].pk).action == chain[1].action
    assert "intact" in verify_output()


# --- concurrent writers ------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_form_one_gap_free_chain():
    """Writers start together on an empty log (no head row yet), so the first appends also
    race to create the head."""
    assert not AuditChainHead.objects.exists() and not AuditEvent.objects.exists()
    writers, per_writer = 6, 8
    barrier = threading.Barrier(writers)
    errors: list = []

    def writer(w: int) -> None:
        try:
            barrier.wait(timeout=10)
            for i in range(per_writer):
                retry_if_sqlite_locked(
                    lambda i=i: audit_record(
                        action=AuditAction.TOKEN_REVOKE,
                        origin=Origin(ip=f"198.51.100.{w + 1}", user_agent=f"writer-{w}"),
                        details={"writer": w, "i": i},
                    ),
                    seconds=2.0,
                    pause=0.002,
                )
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []

    total = writers * per_writer
    events = list(AuditEvent.objects.order_by("seq"))
    assert [e.seq for e in events] == list(range(1, total + 1))
    assert sorted((e.details["writer"], e.details["i"]) for e in events) == sorted(
        (w, i) for w in range(writers) for i in range(per_writer)
    )
    assert verify_chain() == (total, None)
    assert AuditChainHead.objects.get(pk=1).seq == total


@pytest.mark.django_db(transaction=True)
def test_concurrent_room_changes_keep_the_chain_valid():
    """Real services in several rooms at once: each change and its event commit together."""
    creator, _ = make_user()
    rooms = [services.room_create(creator=creator, name=f"r{i}", origin=TEST_ORIGIN) for i in range(4)]
    barrier = threading.Barrier(len(rooms))
    errors: list = []

    def worker(room) -> None:
        try:
            actor = services.actor_for_user(user=creator, room=room)
            barrier.wait(timeout=10)
            for i in range(5):
                retry_if_sqlite_locked(
                    lambda i=i: services.playback_update(
                        actor=actor, room=room, position=float(i), origin=TEST_ORIGIN
                    ),
                    seconds=2.0,
                    pause=0.002,
                )
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(room,)) for room in rooms]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    for room in rooms:
        assert AuditEvent.objects.filter(room_id=room.pk, action="playback.update").count() == 5
    checked, broken = verify_chain()
    assert broken is None and checked == AuditEvent.objects.count()


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
