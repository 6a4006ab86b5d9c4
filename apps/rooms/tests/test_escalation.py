"""Escalation attempts over REST (docs/security.md, "What they may do": the rules that stop escalation).

Every attempt is refused with 403 and leaves the database exactly as it was (no member row, room
setting or audit event changes). Next to them, the allowed counterparts succeed, so the refusals
are caused by the rule under test and not by a broken endpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from apps.core.tests.helpers import assert_error, error_code
from apps.permissions import flags
from apps.permissions.flags import Perm
from apps.rooms.models import RoomMember
from apps.rooms.tests.conftest import RoomWorld, db_state

pytestmark = pytest.mark.django_db

P = Perm
ADMIN_WITHOUT_PLAY = flags.DEFAULT_ADMIN & ~int(P.PLAY_CONTROL)


def as_creator(world: RoomWorld, method: str, path: str, body: dict | None = None, *, status: int = 200):
    """A setup step done by the creator (must succeed)."""
    response = _call(world, "creator", method, path, body)
    assert response.status_code == status, (path, body, response.content)
    return response


def _call(world: RoomWorld, actor: str, method: str, path: str, body: Any = None):
    client = world.client(actor)
    url = world.url(path)
    if body is None:
        return getattr(client, method)(url)
    return getattr(client, method)(url, body, format="json")


def member_path(world: RoomWorld, who: str, action: str = "") -> str:
    user_id = world.actor(who).id
    return f"members/{user_id}" + (f"/{action}" if action else "")


# --- setups -----------------------------------------------------------------------------------------


def second_admin(world: RoomWorld) -> None:
    """The target becomes a second admin (by the creator)."""
    as_creator(world, "patch", member_path(world, "target"), {"role": "admin"})


def admin_manages_admins(world: RoomWorld) -> None:
    as_creator(world, "patch", member_path(world, "admin"), {"permissions_added": int(P.MANAGE_ADMINS)})


def admin_loses_play(world: RoomWorld) -> None:
    as_creator(world, "patch", member_path(world, "admin"), {"permissions_removed": int(P.PLAY_CONTROL)})


def member_manages_admins(world: RoomWorld) -> None:
    """A plain member trusted with MANAGE_ADMINS only (no kick, ban, settings...)."""
    as_creator(world, "patch", member_path(world, "member"), {"permissions_added": int(P.MANAGE_ADMINS)})


def admin_manages_admins_without_kick(world: RoomWorld) -> None:
    as_creator(
        world,
        "patch",
        member_path(world, "admin"),
        {"permissions_added": int(P.MANAGE_ADMINS), "permissions_removed": int(P.KICK_MEMBERS)},
    )


def member_may_kick(world: RoomWorld) -> None:
    as_creator(world, "patch", member_path(world, "member"), {"permissions_added": int(P.KICK_MEMBERS)})


def creator_bans_target(world: RoomWorld) -> None:
    as_creator(world, "post", member_path(world, "target", "ban"), {}, status=204)


def admin_mask_without_play(world: RoomWorld) -> None:
    as_creator(world, "patch", "", {"settings": {"admin_permissions": ADMIN_WITHOUT_PLAY}})


def admin_mask_without_settings(world: RoomWorld) -> None:
    mask = flags.DEFAULT_ADMIN & ~int(P.EDIT_ROOM_SETTINGS)
    as_creator(world, "patch", "", {"settings": {"admin_permissions": mask}})


def member_mask_with_play(world: RoomWorld) -> None:
    mask = flags.DEFAULT_MEMBER | int(P.PLAY_CONTROL)
    as_creator(world, "patch", "", {"settings": {"member_permissions": mask}})


def site_admin_joins(world: RoomWorld) -> None:
    response = _call(world, "site_admin", "post", "join", {})
    assert response.status_code == 201, response.content


@dataclass(frozen=True)
class Attempt:
    id: str
    actor: str
    method: str
    path: Callable[[RoomWorld], str]
    body: dict | None = None
    setup: tuple[Callable[[RoomWorld], None], ...] = ()
    status: int = 403
    code: str | None = "permission_denied"


def on(who: str, action: str = "") -> Callable[[RoomWorld], str]:
    return lambda w: member_path(w, who, action)


def room_path(_w: RoomWorld) -> str:
    return ""


MEMBER_MASK_PLUS_MANAGE = flags.DEFAULT_MEMBER | int(P.MANAGE_ADMINS)

ATTEMPTS = [
    # Granting (or taking away) a bit the actor does not hold.
    Attempt("admin grants MANAGE_ADMINS", "admin", "patch", on("target"), {"permissions_added": int(P.MANAGE_ADMINS)}),
    Attempt(
        "admin grants PLAY_CONTROL the room's admin mask lacks",
        "admin", "patch", on("target"), {"permissions_added": int(P.PLAY_CONTROL)},
        setup=(admin_mask_without_play,),
    ),
    Attempt(
        "admin grants PLAY_CONTROL removed from itself",
        "admin", "patch", on("target"), {"permissions_added": int(P.PLAY_CONTROL)}, setup=(admin_loses_play,),
    ),
    Attempt(
        "admin takes away PLAY_CONTROL it lacks (permissions_added cleared)",
        "admin", "patch", on("member_plus"), {"permissions_added": 0},
        setup=(admin_mask_without_play,),
    ),
    Attempt(
        "admin takes away PLAY_CONTROL it lacks (permissions_removed)",
        "admin", "patch", on("member_plus"), {"permissions_removed": int(P.PLAY_CONTROL)},
        setup=(admin_mask_without_play,),
    ),
    Attempt("admin grants a bit to a guest", "admin", "patch", on("guest"), {"permissions_added": int(P.ADD_MOVIE)}),
    Attempt("admin makes a guest a member", "admin", "patch", on("guest"), {"role": "member"}),
    # Admins are MANAGE_ADMINS' business.
    Attempt("admin promotes without MANAGE_ADMINS", "admin", "patch", on("target"), {"role": "admin"}),
    Attempt("admin demotes an admin", "admin", "patch", on("target"), {"role": "member"}, setup=(second_admin,)),
    Attempt(
        "admin changes another admin's bits",
        "admin", "patch", on("target"), {"permissions_removed": int(P.KICK_MEMBERS)}, setup=(second_admin,),
    ),
    Attempt(
        "member with MANAGE_ADMINS promotes (the admin mask holds bits it lacks)",
        "member", "patch", on("target"), {"role": "admin"}, setup=(member_manages_admins,),
    ),
    Attempt(
        "admin with MANAGE_ADMINS but no KICK_MEMBERS promotes",
        "admin", "patch", on("target"), {"role": "admin"}, setup=(admin_manages_admins_without_kick,),
    ),
    # Kick and ban need a lower-ranked target.
    Attempt("admin kicks an admin", "admin", "post", on("target", "kick"), setup=(second_admin,)),
    Attempt("admin bans an admin", "admin", "post", on("target", "ban"), {}, setup=(second_admin,)),
    Attempt(
        "admin with MANAGE_ADMINS kicks an admin",
        "admin", "post", on("target", "kick"), setup=(second_admin, admin_manages_admins),
    ),
    Attempt(
        "admin with MANAGE_ADMINS bans an admin",
        "admin", "post", on("target", "ban"), {}, setup=(second_admin, admin_manages_admins),
    ),
    Attempt("member with KICK_MEMBERS kicks a member", "member", "post", on("target", "kick"), setup=(member_may_kick,)),
    Attempt(
        "admin lifts the creator's ban of an admin",
        "admin", "post", on("target", "unban"), setup=(second_admin, creator_bans_target),
    ),
    # A member changing another member.
    Attempt("member grants a bit it holds", "member", "patch", on("target"), {"permissions_added": int(P.SEND_EMOJI)}),
    Attempt("member removes a bit it holds", "member", "patch", on("target"), {"permissions_removed": int(P.SEND_EMOJI)}),
    Attempt("member promotes a member", "member", "patch", on("target"), {"role": "admin"}),
    Attempt("member_plus grants PLAY_CONTROL", "member_plus", "patch", on("target"), {"permissions_added": int(P.PLAY_CONTROL)}),
    # Yourself.
    Attempt("member promotes itself", "member", "patch", on("member"), {"role": "admin"}),
    Attempt("member grants itself PLAY_CONTROL", "member", "patch", on("member"), {"permissions_added": int(P.PLAY_CONTROL)}),
    Attempt("member_minus clears its own removal", "member_minus", "patch", on("member_minus"), {"permissions_removed": 0}),
    Attempt("admin grants itself MANAGE_ADMINS", "admin", "patch", on("admin"), {"permissions_added": int(P.MANAGE_ADMINS)}),
    Attempt("admin grants itself a bit it holds", "admin", "patch", on("admin"), {"permissions_added": int(P.INVITE_MEMBERS)}),
    Attempt(
        "admin with MANAGE_ADMINS changes its own bits",
        "admin", "patch", on("admin"), {"permissions_removed": int(P.VIEW_AUDIT_LOG)}, setup=(admin_manages_admins,),
    ),
    Attempt("admin demotes itself", "admin", "patch", on("admin"), {"role": "member"}),
    Attempt("admin kicks itself", "admin", "post", on("admin", "kick")),
    Attempt("admin bans itself", "admin", "post", on("admin", "ban"), {}),
    Attempt("creator demotes itself", "creator", "patch", on("creator"), {"role": "member"}),
    Attempt("creator removes its own bits", "creator", "patch", on("creator"), {"permissions_removed": int(P.PLAY_CONTROL)}),
    # Nobody acts on the creator: admins, admins with MANAGE_ADMINS, site admins.
    *[
        Attempt(f"{who} {what} the creator", actor, method, on("creator", action), body, setup=setup)
        for who, actor, setup in (
            ("admin", "admin", ()),
            ("admin with MANAGE_ADMINS", "admin", (admin_manages_admins,)),
            ("site admin", "site_admin", ()),
        )
        for what, method, action, body in (
            ("kicks", "post", "kick", None),
            ("bans", "post", "ban", {}),
            ("demotes", "patch", "", {"role": "admin"}),
            ("changes the bits of", "patch", "", {"permissions_removed": int(P.PLAY_CONTROL)}),
        )
    ],
    Attempt(
        "a site admin who is also a plain member kicks the creator",
        "site_admin", "post", on("creator", "kick"), setup=(site_admin_joins,),
    ),
    # Room defaults: changing a mask is granting to everyone of that role.
    Attempt(
        "admin puts MANAGE_ADMINS in the member default",
        "admin", "patch", room_path, {"settings": {"member_permissions": MEMBER_MASK_PLUS_MANAGE}},
    ),
    Attempt(
        "admin lacking PLAY_CONTROL puts it in the member default",
        "admin", "patch", room_path, {"settings": {"member_permissions": flags.DEFAULT_MEMBER | int(P.PLAY_CONTROL)}},
        setup=(admin_loses_play,),
    ),
    Attempt(
        "admin lacking PLAY_CONTROL removes it from the member default",
        "admin", "patch", room_path, {"settings": {"member_permissions": flags.DEFAULT_MEMBER}},
        setup=(member_mask_with_play, admin_mask_without_play),
    ),
    Attempt(
        "admin removes a bit from the admin default (needs MANAGE_ADMINS)",
        "admin", "patch", room_path, {"settings": {"admin_permissions": flags.DEFAULT_ADMIN & ~int(P.VIEW_AUDIT_LOG)}},
    ),
    Attempt(
        "admin adds MANAGE_ADMINS to the admin default",
        "admin", "patch", room_path, {"settings": {"admin_permissions": flags.DEFAULT_ADMIN | int(P.MANAGE_ADMINS)}},
    ),
    Attempt(
        "admin sneaks a mask change in with a rename",
        "admin", "patch", room_path,
        {"name": "Fine", "settings": {"member_permissions": MEMBER_MASK_PLUS_MANAGE}},
    ),
    Attempt(
        "admin without EDIT_ROOM_SETTINGS changes the guest default",
        "admin", "patch", room_path, {"settings": {"guest_permissions": 0}},
        setup=(admin_mask_without_settings,),
    ),
    Attempt(
        "member changes the member default",
        "member", "patch", room_path, {"settings": {"member_permissions": flags.DEFAULT_MEMBER | int(P.PLAY_CONTROL)}},
    ),
]  # fmt: skip


@pytest.mark.parametrize("attempt", ATTEMPTS, ids=[a.id for a in ATTEMPTS])
def test_escalation_is_refused(attempt: Attempt, world: RoomWorld):
    for step in attempt.setup:
        step(world)
    before = db_state()
    response = _call(world, attempt.actor, attempt.method, attempt.path(world), attempt.body)
    assert_error(response, attempt.status, attempt.code)
    assert db_state() == before, "a refused attempt changed the database"


def test_every_escalation_attempt_is_distinct():
    assert len({a.id for a in ATTEMPTS}) == len(ATTEMPTS)


# --- the allowed counterparts --------------------------------------------------------------------------


def last_audit_actions(world: RoomWorld, n: int = 1) -> list[str]:
    body = world.client("creator").get(world.url("audit-log")).json()
    return [event["action"] for event in body["results"][:n]]


def test_creator_promotes_a_member_to_admin(world: RoomWorld):
    w = world
    response = _call(w, "creator", "patch", member_path(w, "target"), {"role": "admin"})
    assert response.status_code == 200, response.content
    assert response.json()["role"] == "admin"
    assert response.json()["effective_permissions"] == flags.DEFAULT_ADMIN
    assert last_audit_actions(w) == ["member.role_change"]
    # ...and the new admin can do admin things now.
    assert _call(w, "target", "post", member_path(w, "member", "kick")).status_code == 204


def test_creator_demotes_an_admin(world: RoomWorld):
    w = world
    response = _call(w, "creator", "patch", member_path(w, "admin"), {"role": "member"})
    assert response.status_code == 200, response.content
    assert w.effective_permissions("admin") == flags.DEFAULT_MEMBER
    assert_error(_call(w, "admin", "post", member_path(w, "target", "kick")), 403, "permission_denied")


def test_admin_grants_a_bit_it_holds_and_the_member_can_use_it(world: RoomWorld):
    w = world
    assert_error(_call(w, "member", "put", "playback", {"playing": True}), 403, "permission_denied")
    response = _call(
        w, "admin", "patch", member_path(w, "member"), {"permissions_added": int(P.PLAY_CONTROL)}
    )
    assert response.status_code == 200, response.content
    assert response.json()["permissions_added"] == int(P.PLAY_CONTROL)
    assert w.effective_permissions("member") == flags.DEFAULT_MEMBER | int(P.PLAY_CONTROL)
    assert last_audit_actions(w) == ["member.permissions_change"]
    assert _call(w, "member", "put", "playback", {"playing": True}).status_code == 200


def test_admin_takes_away_a_bit_it_holds(world: RoomWorld):
    w = world
    response = _call(w, "admin", "patch", member_path(w, "member"), {"permissions_removed": int(P.ADD_MOVIE)})
    assert response.status_code == 200, response.content
    body = {"name": "x", "url": "https://media.example.com/x.mp4"}
    assert_error(_call(w, "member", "post", "movies", body), 403, "permission_denied")


def test_admin_kicks_and_bans_members(world: RoomWorld):
    w = world
    assert _call(w, "admin", "post", member_path(w, "target", "kick")).status_code == 204
    assert not RoomMember.objects.filter(room=w.room, user=w.target.user).exists()
    assert last_audit_actions(w) == ["member.kick"]
    assert_error(w.target.client.get(w.url("playback")), 403, "not_in_room")
    # A kicked member may come back; a banned one may not.
    assert _call(w, "target", "post", "join", {}).status_code == 201
    assert _call(w, "admin", "post", member_path(w, "target", "ban"), {"reason": "spam"}).status_code == 204
    assert last_audit_actions(w) == ["member.ban"]
    assert_error(_call(w, "target", "post", "join", {}), 403, "permission_denied")
    assert_error(w.target.client.get(w.url("playback")), 403, "not_in_room")


def test_member_with_kick_members_may_kick_a_guest_only(world: RoomWorld):
    w = world
    member_may_kick(w)
    assert_error(_call(w, "member", "post", member_path(w, "target", "kick")), 403, "permission_denied")
    assert _call(w, "member", "post", member_path(w, "guest", "kick")).status_code == 204


def test_creator_kicks_an_admin_and_site_admin_too(world: RoomWorld):
    w = world
    second_admin(w)
    assert _call(w, "creator", "post", member_path(w, "admin", "kick")).status_code == 204
    assert _call(w, "site_admin", "post", member_path(w, "target", "ban"), {}).status_code == 204
    assert RoomMember.objects.get(room=w.room, user=w.target.user).status == "banned"
    # ...and lifting the ban of an admin is theirs too.
    assert _call(w, "creator", "post", member_path(w, "target", "unban")).status_code == 204
    assert not RoomMember.objects.filter(room=w.room, user=w.target.user).exists()


def test_admin_lifts_the_ban_of_a_member(world: RoomWorld):
    w = world
    response = _call(w, "admin", "post", member_path(w, "room_banned", "unban"))
    assert response.status_code == 204, response.content
    assert last_audit_actions(w) == ["member.unban"]
    assert _call(w, "room_banned", "post", "join", {}).status_code == 201


def test_admin_with_manage_admins_promotes_and_demotes(world: RoomWorld):
    w = world
    admin_manages_admins(w)
    response = _call(w, "admin", "patch", member_path(w, "target"), {"role": "admin"})
    assert response.status_code == 200, response.content
    response = _call(
        w, "admin", "patch", member_path(w, "target"), {"permissions_removed": int(P.BAN_MEMBERS)}
    )
    assert response.status_code == 200, response.content
    response = _call(w, "admin", "patch", member_path(w, "target"), {"role": "member"})
    assert response.status_code == 200, response.content
    assert w.effective_permissions("target") == flags.DEFAULT_MEMBER  # BAN_MEMBERS was not in it anyway
    # Demoted, the former admin can now be kicked by an admin.
    assert _call(w, "admin", "post", member_path(w, "target", "kick")).status_code == 204


def test_member_with_manage_admins_promotes_when_the_admin_mask_is_within_its_bits(world: RoomWorld):
    """The counterpart of "member with MANAGE_ADMINS promotes": with an admin default that holds
    nothing the member lacks, the promotion is allowed."""
    w = world
    member_manages_admins(w)
    as_creator(w, "patch", "", {"settings": {"admin_permissions": flags.DEFAULT_MEMBER}})
    response = _call(w, "member", "patch", member_path(w, "target"), {"role": "admin"})
    assert response.status_code == 200, response.content
    assert response.json()["effective_permissions"] == flags.DEFAULT_MEMBER


def test_settings_changes_within_the_actors_bits(world: RoomWorld):
    w = world
    mask = flags.DEFAULT_MEMBER | int(P.PLAY_CONTROL)
    response = _call(w, "admin", "patch", "", {"settings": {"member_permissions": mask}})
    assert response.status_code == 200, response.content
    assert response.json()["settings"]["member_permissions"] == mask
    assert last_audit_actions(w) == ["room.settings_change"]
    # Setting a mask to what it already is, is not a change (no MANAGE_ADMINS needed).
    response = _call(w, "admin", "patch", "", {"settings": {"admin_permissions": flags.DEFAULT_ADMIN}})
    assert response.status_code == 200, response.content
    # The creator may move anything, including the admin default.
    response = _call(
        w,
        "creator",
        "patch",
        "",
        {"settings": {"admin_permissions": flags.DEFAULT_ADMIN | int(P.MANAGE_ADMINS)}},
    )
    assert response.status_code == 200, response.content
    assert w.effective_permissions("admin") & int(P.MANAGE_ADMINS)
    # ...after which the admin may promote.
    assert _call(w, "admin", "patch", member_path(w, "target"), {"role": "admin"}).status_code == 200


def test_site_admin_and_creator_agree_on_the_creator(world: RoomWorld):
    """Site admins act as creator, and the creator cannot act on itself: so nobody, site admins
    included, can kick, ban or change the creator; but a site admin may delete the room."""
    for actor in ("creator", "site_admin"):
        for method, action, body in (
            ("post", "kick", None),
            ("post", "ban", {}),
            ("patch", "", {"role": "member"}),
        ):
            response = _call(world, actor, method, member_path(world, "creator", action), body)
            assert response.status_code == 403, (actor, action, response.content)
            assert error_code(response) == "permission_denied"
    assert _call(world, "site_admin", "delete", "").status_code == 204
