"""Every room, member, playlist and playback change leaves one audit event (docs/security.md,
"The audit log"): who, what, on what, details, IP, user agent and room, and never a room
password (test_audited_guest_join_and_refusals.py: a guest's join, refused changes)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.models import User
from apps.accounts.tests.factories import make_user
from apps.audit.models import AuditEvent
from apps.audit.tests.conftest import (
    CREATOR_IP,
    CREATOR_UA,
    MEMBER_IP,
    MEMBER_UA,
    api_as,
    events_since,
    last_seq,
    verify_output,
)
from apps.permissions import flags
from apps.permissions.flags import Perm
from apps.rooms.models import Movie, Room, invite_ref
from apps.rooms.tests.conftest import ROOMS


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


# --- one room's story, told as the API calls that make it and the event each must leave ------------


@dataclass
class Scene:
    """The people of the audited room (the creator, a member and two who will be kicked and
    banned) and the API clients the creator and the member call from (their own IP and UA)."""

    creator: User
    member: User
    kicked: User
    kicked_token: str
    banned: User
    banned_token: str
    owner: APIClient
    mem: APIClient
    room_id: str = ""  # known once the room is created

    @property
    def base(self) -> str:
        return f"{ROOMS}/{self.room_id}"

    def join(self, api: APIClient, password: str):
        return api.post(f"{self.base}/join", {"password": password}, format="json")


def make_scene() -> Scene:
    creator, creator_pair = make_user()
    member, member_pair = make_user()
    kicked, kicked_pair = make_user()
    banned, banned_pair = make_user()
    return Scene(
        creator=creator,
        member=member,
        kicked=kicked,
        kicked_token=kicked_pair.access,
        banned=banned,
        banned_token=banned_pair.access,
        owner=api_as(creator_pair.access),
        mem=api_as(member_pair.access, ip=MEMBER_IP, ua=MEMBER_UA),
    )


def create_step(s: Scene) -> Step:
    """Create the room: the id is only known from the answer."""
    owner, creator = s.owner, s.creator
    return Step(
        "create",
        lambda: owner.post(ROOMS, {"name": "Audited", "password": "first-Secret"}, format="json"),
        201,
        "room.create",
        creator,
        "room",
        lambda r: r.json()["id"],
        details=lambda d, r: d == {"name": "Audited", "has_password": True} or pytest.fail(str(d)),
        room_id=lambda r: r.json()["id"],
    )


def join_and_settings_steps(s: Scene) -> list[Step]:
    """A wrong password, the member's join and a settings change."""
    owner, mem, join = s.owner, s.mem, s.join
    base, room_id, creator, member = s.base, s.room_id, s.creator, s.member
    return [
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
    ]


def room_and_member_steps(s: Scene) -> list[Step]:
    """Rename with a new password, an invite, a grant and a promotion."""
    owner, base, room_id, creator, member = s.owner, s.base, s.room_id, s.creator, s.member
    return [
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
    ]


def add_movies_steps(s: Scene) -> list[Step]:
    """The member (now an admin with EDIT_MOVIE) adds two movies at once."""
    mem, base, member = s.mem, s.base, s.member
    return [
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


def add_one_and_edit_steps(s: Scene, one: Movie) -> list[Step]:
    """One more movie, and an edit of the first."""
    mem, base, member = s.mem, s.base, s.member
    return [
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


def playlist_and_playback_steps(s: Scene, order: list[str], two: Movie) -> list[Step]:
    """Reorder, play, delete a movie and clear the playlist."""
    owner, mem, base, room_id, creator, member = s.owner, s.mem, s.base, s.room_id, s.creator, s.member
    return [
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
    ]


def kick_and_ban_steps(s: Scene) -> list[Step]:
    """Two more join: one is kicked, the other banned (by the member) and unbanned."""
    owner, mem, join, base = s.owner, s.mem, s.join, s.base
    creator, member, kicked, banned = s.creator, s.member, s.kicked, s.banned
    return [
        Step(
            "kicked joins",
            lambda: join(api_as(s.kicked_token), "second-Secret"),
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
            lambda: join(api_as(s.banned_token), "second-Secret"),
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
    ]


def leave_and_delete_steps(s: Scene) -> list[Step]:
    """The member leaves and the creator deletes the room."""
    owner, mem, base, room_id, creator, member = s.owner, s.mem, s.base, s.room_id, s.creator, s.member
    return [
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


# --- every change writes an event ------------------------------------------------------------------------


@pytest.mark.django_db
def test_room_member_playlist_and_playback_changes_are_audited():
    s = make_scene()
    _r, event = run_step(create_step(s), None)
    s.room_id = event.room_id
    room = Room.objects.get(pk=s.room_id)
    for step in [*join_and_settings_steps(s), *room_and_member_steps(s), *add_movies_steps(s)]:
        run_step(step, s.room_id)

    one, two = Movie.objects.filter(room=room).order_by("position")
    for step in add_one_and_edit_steps(s, one):
        run_step(step, s.room_id)
    three = Movie.objects.get(room=room, name="three")
    order = [three.pk, two.pk, one.pk]
    steps = [*playlist_and_playback_steps(s, order, two), *kick_and_ban_steps(s), *leave_and_delete_steps(s)]
    for step in steps:
        run_step(step, s.room_id)

    # No room password, tried or set, is in any event.
    everything = json.dumps(list(AuditEvent.objects.values("details", "resource_id", "user_agent")))
    for secret in ("first-Secret", "second-Secret", "not-the-one"):
        assert secret not in everything
    # The room is gone; its events stay, chained.
    assert AuditEvent.objects.filter(room_id=s.room_id).count() >= 20
    assert "intact" in verify_output()
