"""Guests cannot pass for registered users, and a room ban reaches them (issue 10, finding 16).

A guest picks any name: every user object in REST and WebSocket payloads says ``guest`` (true
or false), a guest may not take a registered user's username, and a room ban on a guest also
bans the address the guest came from (for the ban's life), so joining again as a new guest
does not evade it.
"""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from auditlog.models import LogEntry
from django.test import override_settings

from apps.accounts.models import User
from apps.accounts.tests.factories import TEST_ORIGIN, make_user
from apps.audit.models import AuditEvent
from apps.core.tests.helpers import assert_error
from apps.rooms import services
from apps.rooms.models import RoomMember
from apps.rooms.tests.conftest import client, join, make_room, person, room_url
from apps.rooms.tests.inprocess_ws import ws_scope

GUEST_IP, OTHER_IP = "203.0.113.7", "198.51.100.9"


@pytest.fixture
def owner():
    return person()


@pytest.fixture
def open_room(owner):
    return make_room(owner, name="Open house", settings={"allow_guests": True})


def guest(room, name="Gus", ip=GUEST_IP, **extra):
    return client(REMOTE_ADDR=ip, **extra).post(room_url(room, "guest"), {"name": name}, format="json")


def guest_ok(room, name="Gus", ip=GUEST_IP, **extra) -> dict:
    r = guest(room, name, ip, **extra)
    assert r.status_code == 200, r.content
    return r.json()


# --- the marker -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_guests_are_marked_in_rest_payloads(owner, open_room):
    body = guest_ok(open_room, "alice")
    assert body["member"]["user"] == {"id": body["member"]["user"]["id"], "username": "alice", "guest": True}
    me = client(body["access"]).get(room_url(open_room, "members/me")).json()
    assert me["user"]["guest"] is True and me["role"] == "guest"
    listed = {
        m["user"]["username"]: m["user"]["guest"]
        for m in owner.client.get(room_url(open_room, "members")).json()["results"]
    }
    assert listed == {owner.user.username: False, "alice": True}
    room = client().get(room_url(open_room)).json()
    assert room["creator"]["guest"] is False


@pytest.mark.django_db
def test_guest_may_not_take_a_registered_username(open_room):
    make_user("Alice")
    users = User.objects.count()
    fullwidth = "".join(chr(ord(c) + 0xFEE0) for c in "alice")  # NFKC folds it to "alice"
    invisible = ("al\u200bice", "\u200dalice", "ali\u2060ce", "alice\u200e", "al\u00adice")  # Cf characters
    for name in ("alice", "ALICE", " Alice ", fullwidth, *invisible):
        r = guest(open_room, name)
        err = assert_error(r, 400, "invalid")
        assert "name" in err["details"], err
    assert User.objects.count() == users
    assert guest_ok(open_room, "alice2")["member"]["user"]["username"] == "alice2"


# --- bans reach the guest's address ---------------------------------------------------------------


def ban(owner, room, user_id):
    r = owner.client.post(room_url(room, f"members/{user_id}/ban"), {"reason": "spam"}, format="json")
    assert r.status_code == 204, r.content


def unban(owner, room, user_id):
    r = owner.client.post(room_url(room, f"members/{user_id}/unban"))
    assert r.status_code == 204, r.content


@pytest.mark.django_db
def test_room_ban_on_a_guest_bans_its_address_until_unban(owner, open_room):
    first = guest_ok(open_room, "troll")
    guest_id = first["member"]["user"]["id"]
    ban(owner, open_room, guest_id)
    row = RoomMember.objects.get(room=open_room, user_id=guest_id)
    assert row.status == "banned" and row.ban_address and GUEST_IP not in row.ban_address
    event = AuditEvent.objects.get(action="member.ban", resource_id=guest_id)
    assert event.details["address_ban"] is True and GUEST_IP not in json.dumps(event.details)
    history = LogEntry.objects.get_for_object(row).order_by("-timestamp").first()
    assert "status" in history.changes_dict and "ban_address" not in history.changes_dict

    users = User.objects.count()
    assert_error(guest(open_room, "troll2"), 403, "permission_denied")
    assert User.objects.count() == users  # no throw-away account made for a refused guest
    # Another address, another room, a registered user at the same address: not affected.
    guest_ok(open_room, "neighbour", ip=OTHER_IP)
    other_room = make_room(owner, name="Elsewhere", settings={"allow_guests": True})
    guest_ok(other_room, "troll3")
    carol = person()
    r = carol.client.post(room_url(open_room, "join"), {}, format="json", REMOTE_ADDR=GUEST_IP)
    assert r.status_code == 201, r.content

    unban(owner, open_room, guest_id)
    guest_ok(open_room, "reformed")


@pytest.mark.django_db
@override_settings(TRUSTED_PROXY_COUNT=1)
def test_guest_address_ban_uses_the_client_address_behind_trusted_proxies(owner, open_room):
    proxy = "10.0.0.1"
    first = guest_ok(open_room, "troll", ip=proxy, HTTP_X_FORWARDED_FOR=GUEST_IP)
    ban(owner, open_room, first["member"]["user"]["id"])
    # The client the proxy reports is banned; a forged first entry changes nothing...
    r = guest(open_room, "troll2", ip=proxy, HTTP_X_FORWARDED_FOR=f"1.2.3.4, {GUEST_IP}")
    assert_error(r, 403, "permission_denied")
    # ...and other clients behind the same proxy are not.
    guest_ok(open_room, "someone", ip=proxy, HTTP_X_FORWARDED_FOR=OTHER_IP)


@pytest.mark.django_db
def test_guest_address_ban_covers_the_ipv6_subnet(owner, open_room):
    first = guest_ok(open_room, "troll", ip="2001:db8:1:2::5")
    ban(owner, open_room, first["member"]["user"]["id"])
    # One host holds a whole /64: another address in it is the same guest.
    assert_error(guest(open_room, "troll2", ip="2001:db8:1:2:ffff::9"), 403, "permission_denied")
    guest_ok(open_room, "other", ip="2001:db8:1:3::5")


@pytest.mark.django_db
def test_banning_a_registered_member_bans_no_address(owner, open_room):
    bob = person()
    join(bob, open_room)
    ban(owner, open_room, bob.user.pk)
    assert RoomMember.objects.get(room=open_room, user=bob.user).ban_address == ""
    assert (
        AuditEvent.objects.get(action="member.ban", resource_id=bob.user.pk).details["address_ban"] is False
    )
    guest_ok(open_room, "visitor", ip="127.0.0.1")  # TEST_ORIGIN's address, bob's sessions'


# --- the marker over the WebSocket ----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_guests_are_marked_in_websocket_payloads(local_hub):
    from synctv.asgi import application

    creator, creator_tokens = make_user()
    room = services.room_create(
        creator=creator, name="ws", settings={"allow_guests": True}, origin=TEST_ORIGIN
    )
    member, guest_token = services.guest_join(room=room, name="alice", origin=TEST_ORIGIN)
    guest_id = member.user_id

    async def frames(socket, seconds=1.0) -> list[dict]:
        out = []
        while not await socket.receive_nothing(timeout=seconds):
            message = await socket.receive_output()
            if message["type"] == "websocket.send":
                out.append(json.loads(message["text"]))
        return out

    async def connect(token):
        socket = ApplicationCommunicator(application, ws_scope(room.pk, token))
        await socket.send_input({"type": "websocket.connect"})
        assert (await socket.receive_output(timeout=10))["type"] == "websocket.accept"
        return socket

    async def run():
        owner = await connect(creator_tokens.access)
        await frames(owner)
        visitor = await connect(guest_token)
        hello = next(f for f in await frames(visitor) if f["type"] == "hello")
        online = {i["user_id"]: i for i in hello["members_online"]}
        assert online[guest_id]["guest"] is True and online[creator.pk]["guest"] is False
        assert hello["member"]["user"]["guest"] is True
        await visitor.send_input(
            {"type": "websocket.receive", "text": json.dumps({"type": "chat", "text": "hi"})}
        )
        seen = await frames(owner)
        joined = next(f for f in seen if f["type"] == "member_joined")
        assert joined["user"] == {"id": guest_id, "username": "alice", "guest": True}
        chat = next(f for f in seen if f["type"] == "chat")
        assert chat["user"] == {"id": guest_id, "username": "alice", "guest": True}
        await owner.send_input({"type": "websocket.disconnect", "code": 1000})
        await owner.wait(timeout=5)
        # The history replayed after a later hello says so too.
        again = await connect(creator_tokens.access)
        history = [f for f in await frames(again) if f["type"] == "chat"]
        assert history and history[-1]["user"]["guest"] is True
        await visitor.send_input({"type": "websocket.disconnect", "code": 1000})
        left = next(f for f in await frames(again) if f["type"] == "member_left")
        assert left["user"]["guest"] is True
        await again.send_input({"type": "websocket.disconnect", "code": 1000})
        await again.wait(timeout=5)
        await visitor.wait(timeout=5)

    async_to_sync(run)()
