"""Room membership over REST (docs/api.md, "REST"; docs/security.md, "What they may do" and
"Limits"): joining (passwords, their rate limits, invites, approval), leaving, kick, ban/unban,
guest tokens and members/me."""

from __future__ import annotations

import types
from datetime import timedelta

import jwt
import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone
from django_ratelimit import core as ratelimit_core

from apps.accounts.models import User
from apps.accounts.tests.factories import PASSWORD, TEST_ORIGIN
from apps.audit.models import AuditEvent
from apps.core.tests.helpers import assert_error
from apps.permissions.flags import Perm
from apps.rooms import services
from apps.rooms.models import Invite, Room, RoomMember, invite_ref
from apps.rooms.tests.conftest import Person, client, grant, join, make_room, person

pytestmark = pytest.mark.django_db

ROOMS = "/api/v1/rooms"
ROOM_PASSWORD = "open-sesame"


# --- helpers -------------------------------------------------------------------------------------


def member_row(room: Room, p: Person) -> RoomMember | None:
    return RoomMember.objects.filter(room=room, user=p.user).first()


def url(room: Room, suffix: str = "") -> str:
    return f"{ROOMS}/{room.pk}{suffix}"


@pytest.fixture
def alice() -> Person:
    return person()


@pytest.fixture
def bob() -> Person:
    return person()


@pytest.fixture
def room(alice) -> Room:
    return make_room(alice)


@pytest.fixture
def locked(alice) -> Room:
    return make_room(alice, name="Locked", password=ROOM_PASSWORD)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    """django-ratelimit's fixed windows on a frozen clock: no test straddles a window edge."""
    c = Clock(1_800_000_000.0)
    monkeypatch.setattr(ratelimit_core, "time", types.SimpleNamespace(time=c.time))
    return c


def limits(**overrides) -> dict:
    return {**settings.RATELIMITS, **overrides}


# --- join ----------------------------------------------------------------------------------------------


def test_join_201_first_time_then_200(room, bob):
    r = bob.client.post(url(room, "/join"), {}, format="json")
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["user"]["id"] == bob.user.pk
    assert (body["role"], body["status"]) == ("member", "active")
    assert body["effective_permissions"] == 519
    r = bob.client.post(url(room, "/join"), {}, format="json")
    assert r.status_code == 200 and r.json()["status"] == "active"
    assert RoomMember.objects.filter(room=room, user=bob.user).count() == 1
    assert AuditEvent.objects.filter(action="member.join", room_id=room.pk).count() == 1
    assert client().get(url(room)).json()["member_count"] == 2


def test_join_needs_an_account(room):
    assert_error(client().post(url(room, "/join"), {}, format="json"), 401, "not_authenticated")


def test_join_unknown_room(bob):
    assert_error(bob.client.post(f"{ROOMS}/nosuchroom/join", {}, format="json"), 404, "not_found")


def test_password_room(locked, bob):
    join_url = url(locked, "/join")
    assert_error(bob.client.post(join_url, {}, format="json"), 403, "room_password_required")
    assert_error(bob.client.post(join_url, {"password": ""}, format="json"), 400, "invalid")
    assert_error(
        bob.client.post(join_url, {"password": "wrong-one"}, format="json"), 403, "room_password_wrong"
    )
    # Close is not enough: case and whitespace matter.
    assert_error(
        bob.client.post(join_url, {"password": ROOM_PASSWORD.upper()}, format="json"),
        403,
        "room_password_wrong",
    )
    assert_error(
        bob.client.post(join_url, {"password": f" {ROOM_PASSWORD}"}, format="json"),
        403,
        "room_password_wrong",
    )
    assert member_row(locked, bob) is None
    assert AuditEvent.objects.filter(action="member.join_password_wrong", user_id=bob.user.pk).count() == 3

    r = bob.client.post(join_url, {"password": ROOM_PASSWORD}, format="json")
    assert r.status_code == 201, r.content
    assert member_row(locked, bob).status == "active"
    # A member need not give it again.
    assert bob.client.post(join_url, {}, format="json").status_code == 200


def test_room_password_wrong_attempts_limited_per_user_and_room(alice, locked, bob, clock):
    other_room = make_room(alice, name="Other", password=ROOM_PASSWORD)
    carol = person()
    with override_settings(RATELIMITS=limits(room_password_user="3/m", room_password_ip="1000/m")):
        for _ in range(3):
            assert_error(
                bob.client.post(url(locked, "/join"), {"password": "nope-nope"}, format="json"),
                403,
                "room_password_wrong",
            )
        # Over the limit: refused before the password is even checked, the right one included.
        r = bob.client.post(url(locked, "/join"), {"password": ROOM_PASSWORD}, format="json")
        error = assert_error(r, 429, "rate_limited")
        retry = int(r["Retry-After"])
        assert 1 <= retry <= 61 and error["details"]["retry_after"] == retry
        assert member_row(locked, bob) is None
        assert (
            AuditEvent.objects.filter(action="member.join_password_wrong", user_id=bob.user.pk).count() == 3
        )

        # Per user *and* room: bob elsewhere and carol here are unaffected.
        assert (
            bob.client.post(url(other_room, "/join"), {"password": ROOM_PASSWORD}, format="json").status_code
            == 201
        )
        assert (
            carol.client.post(url(locked, "/join"), {"password": ROOM_PASSWORD}, format="json").status_code
            == 201
        )

        # Next window: bob may try again.
        clock.now += 61
        r = bob.client.post(url(locked, "/join"), {"password": ROOM_PASSWORD}, format="json")
        assert r.status_code == 201, r.content


def test_right_passwords_do_not_use_up_the_per_user_limit(alice, bob, clock):
    with override_settings(RATELIMITS=limits(room_password_user="2/m", room_password_ip="1000/m")):
        for i in range(4):
            room = make_room(alice, name=f"r{i}", password=ROOM_PASSWORD)
            r = bob.client.post(url(room, "/join"), {"password": ROOM_PASSWORD}, format="json")
            assert r.status_code == 201, r.content


def test_room_password_attempts_limited_per_ip(locked, clock):
    users = [person() for _ in range(4)]
    with override_settings(RATELIMITS=limits(room_password_ip="2/m", room_password_user="1000/m")):
        for p in users[:2]:
            r = client(p.access, REMOTE_ADDR="203.0.113.7").post(
                url(locked, "/join"), {"password": "guess-guess"}, format="json"
            )
            assert_error(r, 403, "room_password_wrong")
        # A third account from the same address is refused, right password or not.
        r = client(users[2].access, REMOTE_ADDR="203.0.113.7").post(
            url(locked, "/join"), {"password": ROOM_PASSWORD}, format="json"
        )
        assert_error(r, 429, "rate_limited")
        assert int(r["Retry-After"]) >= 1
        assert member_row(locked, users[2]) is None
        # Another address is not.
        r = client(users[3].access, REMOTE_ADDR="198.51.100.9").post(
            url(locked, "/join"), {"password": ROOM_PASSWORD}, format="json"
        )
        assert r.status_code == 201, r.content


# --- invites ------------------------------------------------------------------------------------------


def create_invite(p: Person, room: Room, **body):
    return p.client.post(url(room, "/invites"), body, format="json")


def test_invite_creation_needs_invite_members(room, bob):
    join(bob, room)
    assert_error(create_invite(bob, room), 403, "permission_denied")
    assert_error(create_invite(person(), room), 403, "not_in_room")
    assert_error(client().post(url(room, "/invites"), {}, format="json"), 401, "not_authenticated")
    assert not Invite.objects.exists()

    grant(room, bob, added=int(Perm.INVITE_MEMBERS))
    r = create_invite(bob, room, max_uses=3, expires_in=3600)
    assert r.status_code == 201, r.content
    body = r.json()
    invite = Invite.objects.get(code=body["code"])
    assert invite.room_id == room.pk and invite.created_by_id == bob.user.pk and invite.max_uses == 3
    assert room.pk in body["url"] and body["code"] in body["url"]
    assert body["expires_at"]
    assert abs((invite.expires_at - timezone.now()) - timedelta(hours=1)) < timedelta(seconds=30)
    assert AuditEvent.objects.filter(action="invite.create", user_id=bob.user.pk).count() == 1


def test_invite_joins_a_password_room_without_the_password(alice, locked, bob):
    code = create_invite(alice, locked).json()["code"]
    r = bob.client.post(url(locked, "/join"), {"invite": code}, format="json")
    assert r.status_code == 201, r.content
    assert r.json()["status"] == "active"
    assert Invite.objects.get(code=code).uses == 1
    # The log names the invite by its reference, never by the code (test_invite_audit.py).
    assert AuditEvent.objects.get(action="member.join", user_id=bob.user.pk).details["invite"] == invite_ref(
        code
    )


def test_invite_skips_approval(alice, bob):
    room = make_room(alice, settings={"join_requires_approval": True})
    code = create_invite(alice, room).json()["code"]
    r = bob.client.post(url(room, "/join"), {"invite": code}, format="json")
    assert r.status_code == 201 and r.json()["status"] == "active"


def test_expired_invite_is_refused(alice, locked, bob):
    body = create_invite(alice, locked, expires_in=60).json()
    Invite.objects.filter(code=body["code"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    r = bob.client.post(url(locked, "/join"), {"invite": body["code"]}, format="json")
    assert_error(r, 403, "permission_denied")
    assert member_row(locked, bob) is None
    assert Invite.objects.get(code=body["code"]).uses == 0


def test_invite_expires_with_time(alice, locked, bob, monkeypatch):
    code = create_invite(alice, locked, expires_in=60).json()["code"]
    later = timezone.now() + timedelta(seconds=61)
    monkeypatch.setattr(timezone, "now", lambda: later)
    assert_error(
        bob.client.post(url(locked, "/join"), {"invite": code}, format="json"), 403, "permission_denied"
    )
    assert member_row(locked, bob) is None


def test_invite_max_uses(alice, locked):
    code = create_invite(alice, locked, max_uses=2).json()["code"]
    first, second, third = person(), person(), person()
    for p in (first, second):
        assert p.client.post(url(locked, "/join"), {"invite": code}, format="json").status_code == 201
    # A member rejoining does not spend a use.
    assert first.client.post(url(locked, "/join"), {"invite": code}, format="json").status_code == 200
    assert_error(
        third.client.post(url(locked, "/join"), {"invite": code}, format="json"), 403, "permission_denied"
    )
    assert member_row(locked, third) is None
    assert Invite.objects.get(code=code).uses == 2


def test_invite_for_another_room_is_refused(alice, room, locked, bob):
    code = create_invite(alice, room).json()["code"]
    assert_error(
        bob.client.post(url(locked, "/join"), {"invite": code}, format="json"), 403, "permission_denied"
    )
    assert_error(
        bob.client.post(url(locked, "/join"), {"invite": "made-up-code"}, format="json"),
        403,
        "permission_denied",
    )
    assert member_row(locked, bob) is None
    assert Invite.objects.get(code=code).uses == 0


def test_banned_member_cannot_rejoin_nor_use_an_invite(alice, locked, bob):
    join(bob, locked, password=ROOM_PASSWORD)
    assert alice.client.post(url(locked, f"/members/{bob.user.pk}/ban"), {}, format="json").status_code == 204
    code = create_invite(alice, locked).json()["code"]
    for body in ({"password": ROOM_PASSWORD}, {"invite": code}, {}):
        r = bob.client.post(url(locked, "/join"), body, format="json")
        assert_error(r, 403, "permission_denied")
    assert member_row(locked, bob).status == "banned"
    assert Invite.objects.get(code=code).uses == 0


# --- approval ---------------------------------------------------------------------------------------


@pytest.fixture
def approval_room(alice) -> Room:
    return make_room(alice, name="Club", settings={"join_requires_approval": True})


def test_approval_queue(alice, approval_room, bob):
    room = approval_room
    r = bob.client.post(url(room, "/join"), {}, format="json")
    assert r.status_code == 202, r.content
    assert r.json()["status"] == "pending" and r.json()["effective_permissions"] == 0
    assert bob.client.post(url(room, "/join"), {}, format="json").status_code == 202
    assert AuditEvent.objects.filter(action="member.request", user_id=bob.user.pk).count() == 1

    # Pending is not in.
    for path in ("/playback", "/movies", "/members"):
        assert_error(bob.client.get(url(room, path)), 403, "not_in_room")
    assert_error(bob.client.put(url(room, "/playback"), {"playing": True}, format="json"), 403, "not_in_room")
    assert client().get(url(room)).json()["member_count"] == 1

    # A plain member cannot approve.
    carol = person()
    services.member_join(user=carol.user, room=room, origin=TEST_ORIGIN)
    services.member_approve(
        actor=services.actor_for_user(user=alice.user, room=room),
        room=room,
        target=member_row(room, carol),
        origin=TEST_ORIGIN,
    )
    assert_error(carol.client.post(url(room, f"/members/{bob.user.pk}/approve")), 403, "permission_denied")
    assert member_row(room, bob).status == "pending"

    # KICK_MEMBERS is enough.
    grant(room, carol, added=int(Perm.KICK_MEMBERS))
    r = carol.client.post(url(room, f"/members/{bob.user.pk}/approve"))
    assert r.status_code == 200, r.content
    assert r.json()["status"] == "active"
    assert member_row(room, bob).status == "active"
    event = AuditEvent.objects.get(action="member.approve", user_id=carol.user.pk)
    assert event.resource_id == bob.user.pk
    assert bob.client.get(url(room, "/playback")).status_code == 200
    # Approving someone who is not waiting is a 400.
    assert_error(carol.client.post(url(room, f"/members/{bob.user.pk}/approve")), 400, "invalid")


def test_ban_members_holder_approves_too(alice, approval_room, bob):
    room = approval_room
    dave = person()
    join(dave, room)
    services.member_approve(
        actor=services.actor_for_user(user=alice.user, room=room),
        room=room,
        target=member_row(room, dave),
        origin=TEST_ORIGIN,
    )
    grant(room, dave, added=int(Perm.BAN_MEMBERS))
    join(bob, room)
    r = dave.client.post(url(room, f"/members/{bob.user.pk}/approve"))
    assert r.status_code == 200, r.content
    assert member_row(room, bob).status == "active"


def test_pending_and_banned_lists_need_kick_or_ban(alice, approval_room, bob):
    room = approval_room
    carol = person()
    join(carol, room)
    services.member_approve(
        actor=services.actor_for_user(user=alice.user, room=room),
        room=room,
        target=member_row(room, carol),
        origin=TEST_ORIGIN,
    )
    join(bob, room)  # pending

    # Active list: VIEW_MEMBER_LIST, which members hold by default.
    r = carol.client.get(url(room, "/members"))
    assert r.status_code == 200
    assert set(r.json()) == {"count", "next", "previous", "results"}
    assert {m["user"]["id"] for m in r.json()["results"]} == {alice.user.pk, carol.user.pk}
    for wanted in ("pending", "banned"):
        assert_error(carol.client.get(url(room, "/members"), {"status": wanted}), 403, "permission_denied")
    assert_error(carol.client.get(url(room, "/members"), {"status": "everyone"}), 400, "invalid")

    for bit in (Perm.KICK_MEMBERS, Perm.BAN_MEMBERS):
        grant(room, carol, added=int(bit))
        r = carol.client.get(url(room, "/members"), {"status": "pending"})
        assert r.status_code == 200, r.content
        assert [m["user"]["id"] for m in r.json()["results"]] == [bob.user.pk]
        assert r.json()["results"][0]["status"] == "pending"
    r = alice.client.get(url(room, "/members"), {"status": "pending"})
    assert [m["user"]["id"] for m in r.json()["results"]] == [bob.user.pk]

    # Without VIEW_MEMBER_LIST, not even the active list.
    grant(room, carol, removed=int(Perm.VIEW_MEMBER_LIST))
    assert_error(carol.client.get(url(room, "/members")), 403, "permission_denied")
    assert_error(person().client.get(url(room, "/members")), 403, "not_in_room")


# --- leave ---------------------------------------------------------------------------------------------


def test_leave(alice, room, bob):
    join(bob, room)
    assert bob.client.post(url(room, "/leave")).status_code == 204
    assert member_row(room, bob) is None
    assert AuditEvent.objects.filter(action="member.leave", user_id=bob.user.pk).count() == 1
    assert_error(bob.client.post(url(room, "/leave")), 403, "not_in_room")
    # The creator cannot leave.
    assert_error(alice.client.post(url(room, "/leave")), 403, "permission_denied")
    assert member_row(room, alice).role == "creator"
    # Leaving does not undo a ban.
    join(bob, room)
    alice.client.post(url(room, f"/members/{bob.user.pk}/ban"), {}, format="json")
    assert_error(bob.client.post(url(room, "/leave")), 403, "not_in_room")
    assert member_row(room, bob).status == "banned"


# --- kick ------------------------------------------------------------------------------------------------


def test_kick(alice, room, bob):
    join(bob, room)
    carol = person()
    join(carol, room)
    # Without KICK_MEMBERS.
    assert_error(carol.client.post(url(room, f"/members/{bob.user.pk}/kick")), 403, "permission_denied")
    assert member_row(room, bob) is not None

    r = alice.client.post(url(room, f"/members/{bob.user.pk}/kick"))
    assert r.status_code == 204, r.content
    assert member_row(room, bob) is None
    event = AuditEvent.objects.get(action="member.kick")
    assert event.user_id == alice.user.pk and event.resource_id == bob.user.pk and event.room_id == room.pk
    # Kicked is not banned: rejoin works.
    assert bob.client.post(url(room, "/join"), {}, format="json").status_code == 201
    assert_error(alice.client.post(url(room, "/members/nosuchuser/kick")), 404, "not_found")


def test_kick_rules(alice, room, bob):
    join(bob, room)
    grant(room, bob, added=int(Perm.KICK_MEMBERS))
    carol = person()
    join(carol, room)
    grant(room, carol, added=int(Perm.KICK_MEMBERS))
    # Nobody kicks the creator, nor themselves, nor an equal.
    assert_error(bob.client.post(url(room, f"/members/{alice.user.pk}/kick")), 403, "permission_denied")
    assert_error(bob.client.post(url(room, f"/members/{bob.user.pk}/kick")), 403, "permission_denied")
    assert_error(bob.client.post(url(room, f"/members/{carol.user.pk}/kick")), 403, "permission_denied")
    assert RoomMember.objects.filter(room=room).count() == 3
    assert not AuditEvent.objects.filter(action="member.kick").exists()


# --- ban / unban ---------------------------------------------------------------------------------------


def test_ban_and_unban(alice, room, bob):
    join(bob, room)
    carol = person()
    join(carol, room)
    assert_error(
        carol.client.post(url(room, f"/members/{bob.user.pk}/ban"), {}, format="json"),
        403,
        "permission_denied",
    )
    r = alice.client.post(url(room, f"/members/{bob.user.pk}/ban"), {"reason": "spoilers"}, format="json")
    assert r.status_code == 204, r.content
    row = member_row(room, bob)
    assert (row.status, row.ban_reason) == ("banned", "spoilers")
    event = AuditEvent.objects.get(action="member.ban")
    assert event.user_id == alice.user.pk and event.resource_id == bob.user.pk
    assert event.details["reason"] == "spoilers"

    # Banned: no reading, no joining, not counted, not on the active list.
    assert_error(bob.client.get(url(room, "/playback")), 403, "not_in_room")
    assert_error(bob.client.get(url(room, "/members/me")), 403, "not_in_room")
    assert_error(bob.client.post(url(room, "/join"), {}, format="json"), 403, "permission_denied")
    assert client().get(url(room)).json()["member_count"] == 2
    banned = alice.client.get(url(room, "/members"), {"status": "banned"}).json()["results"]
    assert [m["user"]["id"] for m in banned] == [bob.user.pk]

    # Unban needs BAN_MEMBERS too.
    assert_error(carol.client.post(url(room, f"/members/{bob.user.pk}/unban")), 403, "permission_denied")
    assert member_row(room, bob).status == "banned"
    assert alice.client.post(url(room, f"/members/{bob.user.pk}/unban")).status_code == 204
    assert member_row(room, bob) is None
    assert AuditEvent.objects.get(action="member.unban").resource_id == bob.user.pk
    r = bob.client.post(url(room, "/join"), {}, format="json")
    assert r.status_code == 201 and r.json()["status"] == "active"
    # Unbanning someone not banned is a 400; banning a non-member a 404.
    assert_error(alice.client.post(url(room, f"/members/{bob.user.pk}/unban")), 400, "invalid")
    assert_error(
        alice.client.post(url(room, f"/members/{person().user.pk}/ban"), {}, format="json"), 404, "not_found"
    )


def test_ban_reason_is_limited(alice, room, bob):
    join(bob, room)
    r = alice.client.post(url(room, f"/members/{bob.user.pk}/ban"), {"reason": "x" * 501}, format="json")
    assert_error(r, 400, "invalid")
    assert member_row(room, bob).status == "active"


def test_site_admin_moderates_without_being_a_member(room, bob):
    join(bob, room)
    mod = person()
    User.objects.filter(pk=mod.user.pk).update(role="admin")
    assert (
        mod.client.post(url(room, f"/members/{bob.user.pk}/ban"), {"reason": "x"}, format="json").status_code
        == 204
    )
    assert AuditEvent.objects.get(action="member.ban").user_id == mod.user.pk


# --- guests -------------------------------------------------------------------------------------------------


@pytest.fixture
def guest_room(alice) -> Room:
    return make_room(alice, name="Open house", settings={"allow_guests": True})


def become_guest(room: Room, name: str = "Gus"):
    r = client().post(url(room, "/guest"), {"name": name}, format="json")
    assert r.status_code == 200, r.content
    return r.json()


def test_guest_token_bound_to_one_room_for_four_hours(guest_room):
    body = become_guest(guest_room)
    assert set(body) == {"access", "member"}
    assert body["member"]["role"] == "guest" and body["member"]["status"] == "active"
    assert body["member"]["user"]["username"] == "Gus"
    claims = jwt.decode(body["access"], options={"verify_signature": False})
    assert claims["rid"] == guest_room.pk
    assert claims["role"] == "guest"
    assert claims["exp"] - claims["iat"] == 14400
    guest = User.objects.get(pk=claims["sub"])
    assert guest.is_guest and not guest.has_usable_password()
    assert AuditEvent.objects.filter(action="member.guest_join", room_id=guest_room.pk).count() == 1

    g = client(body["access"])
    assert g.get(url(guest_room, "/playback")).status_code == 200
    assert g.get(url(guest_room, "/movies")).status_code == 200
    me = g.get(url(guest_room, "/members/me")).json()
    assert me["role"] == "guest" and me["effective_permissions"] == 515
    assert client().get(url(guest_room)).json()["member_count"] == 2


def test_guest_cannot_leave_its_room(alice, guest_room):
    """A guest token opens its own room and nothing else."""
    other = make_room(alice, name="Other open house", settings={"allow_guests": True})
    g = client(become_guest(guest_room)["access"])
    assert_error(g.get(url(other, "/playback")), 403, "not_in_room")
    assert_error(g.get(url(other, "/members/me")), 403, "not_in_room")
    assert_error(g.get(url(other, "/movies")), 403, "not_in_room")
    r = g.post(url(other, "/join"), {}, format="json")
    assert r.status_code == 403
    assert not RoomMember.objects.filter(room=other, role="guest").exists()


def test_guest_is_not_an_account(guest_room):
    body = become_guest(guest_room)
    g = client(body["access"])
    guest = User.objects.get(pk=body["member"]["user"]["id"])
    before = Room.objects.count()
    assert_error(g.post(ROOMS, {"name": "guest room"}, format="json"), 403, "permission_denied")
    assert Room.objects.count() == before
    r = g.patch("/api/v1/users/me", {"email": "g@example.com", "username": "promoted"}, format="json")
    assert_error(r, 403, "permission_denied")
    r = g.post("/api/v1/auth/password/change", {"old_password": "x", "new_password": PASSWORD}, format="json")
    assert_error(r, 403, "permission_denied")
    fresh = User.objects.get(pk=guest.pk)
    assert (fresh.username, fresh.email, fresh.password) == (guest.username, guest.email, guest.password)
    assert not fresh.has_usable_password()
    assert_error(g.post(url(guest_room, "/invites"), {}, format="json"), 403, "permission_denied")
    assert g.get(ROOMS).status_code == 200  # public reads stay public


def test_guest_permissions_are_capped(alice, guest_room):
    creator = services.actor_for_user(user=alice.user, room=guest_room)
    services.room_update(
        actor=creator, room=guest_room, changes={"settings": {"guest_permissions": 65535}}, origin=TEST_ORIGIN
    )
    g = client(become_guest(guest_room)["access"])
    assert g.get(url(guest_room, "/members/me")).json()["effective_permissions"] == 515
    r = g.post(url(guest_room, "/movies"), {"name": "m", "url": "https://example.com/m.mp4"}, format="json")
    assert_error(r, 403, "permission_denied")
    assert_error(
        g.put(url(guest_room, "/playback"), {"playing": True}, format="json"), 403, "permission_denied"
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"settings": {}},
        {"settings": {"allow_guests": True}, "password": ROOM_PASSWORD},
        {"settings": {"allow_guests": True, "join_requires_approval": True}},
    ],
    ids=["no-guests", "password", "approval"],
)
def test_guest_refused(alice, kwargs):
    room = make_room(alice, name="r", **kwargs)
    users = User.objects.count()
    r = client().post(url(room, "/guest"), {"name": "Gus"}, format="json")
    assert_error(r, 403, "permission_denied")
    assert User.objects.count() == users
    assert RoomMember.objects.filter(room=room).count() == 1


# --- members/me -------------------------------------------------------------------------------------


def test_members_me_shows_effective_permissions(alice, room, bob):
    join(bob, room)
    r = bob.client.get(url(room, "/members/me"))
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {
        "user",
        "role",
        "status",
        "permissions_added",
        "permissions_removed",
        "effective_permissions",
        "joined_at",
    }
    assert body["effective_permissions"] == 519

    grant(room, bob, added=int(Perm.PLAY_CONTROL), removed=int(Perm.SEND_EMOJI))
    body = bob.client.get(url(room, "/members/me")).json()
    assert (body["permissions_added"], body["permissions_removed"]) == (64, 2)
    assert body["effective_permissions"] == (519 | 64) & ~2

    # Room defaults are read at check time.
    services.room_update(
        actor=services.actor_for_user(user=alice.user, room=room),
        room=room,
        changes={"settings": {"member_permissions": 1}},
        origin=TEST_ORIGIN,
    )
    assert bob.client.get(url(room, "/members/me")).json()["effective_permissions"] == 1 | 64

    assert_error(person().client.get(url(room, "/members/me")), 403, "not_in_room")
    assert client().get(url(room, "/members/me")).status_code == 401


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_parallel_room_password_guesses_beyond_the_limit_are_refused_before_hashing(monkeypatch):
    """Six wrong guesses at once against a per-user limit of 3: only 3 passwords are hashed, the
    others are refused with rate_limited first (checking before and counting after the hash let
    all six through)."""
    import threading
    import time as time_module

    from django.db import connection

    from apps.rooms import services as room_services

    owner, guesser = person(), person()
    room = make_room(owner, password=ROOM_PASSWORD)
    hashed: list = []
    real_check = room_services.membership.check_password

    def slow_check(raw, encoded):
        hashed.append(raw)
        time_module.sleep(0.3)  # so the attempts overlap, as parallel requests against Argon2 do
        return real_check(raw, encoded)

    monkeypatch.setattr(room_services.membership, "check_password", slow_check)
    contenders = 6
    barrier = threading.Barrier(contenders)
    statuses: list = [None] * contenders

    def attempt(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            r = guesser.client.post(url(room, "/join"), {"password": "nope-nope"}, format="json")
            statuses[i] = r.status_code
        finally:
            connection.close()

    with override_settings(RATELIMITS=limits(room_password_user="3/m", room_password_ip="1000/m")):
        threads = [threading.Thread(target=attempt, args=(i,)) for i in range(contenders)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert len(hashed) == 3, f"{len(hashed)} passwords hashed for a limit of 3"
    assert sorted(statuses) == [403, 403, 403, 429, 429, 429], statuses
