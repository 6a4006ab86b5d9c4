"""Unit tests of the permission mask and the rules (docs/security.md, "What they may do"). No
database: rows are unsaved model instances, which is all the rules read."""

from __future__ import annotations

import itertools

import pytest
from django.contrib.auth.models import AnonymousUser

from apps.accounts.models import User
from apps.permissions import flags
from apps.permissions.flags import Perm
from apps.permissions.rules import (
    RANK,
    EscalationError,
    RoomActor,
    build_actor,
    check_member_change,
    check_moderation,
    check_settings_masks,
    effective_permissions,
)
from apps.rooms.models import Room, RoomMember

P = Perm
CHAT, EMOJI, ADD, DELETE, EDIT = P.SEND_CHAT_MESSAGE, P.SEND_EMOJI, P.ADD_MOVIE, P.DELETE_MOVIE, P.EDIT_MOVIE
REORDER, PLAY, CHANGE, INVITE, VIEW = (
    P.REORDER_PLAYLIST,
    P.PLAY_CONTROL,
    P.CHANGE_CURRENT_MOVIE,
    P.INVITE_MEMBERS,
    P.VIEW_MEMBER_LIST,
)
KICK, BAN, INFO, SETTINGS, MANAGE, AUDIT = (
    P.KICK_MEMBERS,
    P.BAN_MEMBERS,
    P.EDIT_ROOM_INFO,
    P.EDIT_ROOM_SETTINGS,
    P.MANAGE_ADMINS,
    P.VIEW_AUDIT_LOG,
)

# The specified names and bit positions, verbatim: they are a contract.
SPEC_BITS = {
    "SEND_CHAT_MESSAGE": 0,
    "SEND_EMOJI": 1,
    "ADD_MOVIE": 2,
    "DELETE_MOVIE": 3,
    "EDIT_MOVIE": 4,
    "REORDER_PLAYLIST": 5,
    "PLAY_CONTROL": 6,
    "CHANGE_CURRENT_MOVIE": 7,
    "INVITE_MEMBERS": 8,
    "VIEW_MEMBER_LIST": 9,
    "KICK_MEMBERS": 10,
    "BAN_MEMBERS": 11,
    "EDIT_ROOM_INFO": 12,
    "EDIT_ROOM_SETTINGS": 13,
    "MANAGE_ADMINS": 14,
    "VIEW_AUDIT_LOG": 15,
}
ALL = (1 << 16) - 1
BASIC = (1 << 10) - 1

_ids = itertools.count()


def make_user(role: str = "user", *, guest: bool = False) -> User:
    n = next(_ids)
    return User(id=f"u{n}", username=f"user{n}", role=role, is_guest=guest)


def make_room(**masks) -> Room:
    return Room(id="room1", name="Room", creator_id="creator", **masks)


def make_member(room: Room, role: str, *, user: User | None = None, status="active", added=0, removed=0):
    user = user or make_user(guest=role == "guest")
    return RoomMember(
        room=room,
        user=user,
        role=role,
        status=status,
        permissions_added=int(added),
        permissions_removed=int(removed),
    )


def actor(room: Room, role: str | None, *, site_role: str = "user", added=0, removed=0, status="active"):
    """A RoomActor: ``role`` None means no membership (an outsider, or a site admin)."""
    user = make_user(site_role, guest=role == "guest")
    member = None
    if role is not None:
        member = make_member(room, role, user=user, status=status, added=added, removed=removed)
    return build_actor(user=user, room=room, member=member)


# --- the mask ------------------------------------------------------------------------------------------


def test_bit_positions_are_exactly_the_specs():
    assert {p.name: p.value for p in Perm} == {name: 1 << bit for name, bit in SPEC_BITS.items()}
    assert len(Perm) == 16


def test_basic_and_admin_bits_partition_the_mask():
    assert flags.BASIC_BITS == BASIC
    assert flags.ADMIN_BITS == ALL & ~BASIC
    assert flags.ALL_BITS == ALL
    assert flags.BASIC_BITS & flags.ADMIN_BITS == 0


def test_defaults_are_the_specs():
    assert flags.DEFAULT_MEMBER == CHAT | EMOJI | ADD | VIEW
    assert flags.DEFAULT_ADMIN == BASIC | KICK | BAN | INFO | SETTINGS | AUDIT
    assert not flags.DEFAULT_ADMIN & MANAGE
    assert flags.DEFAULT_GUEST == CHAT | EMOJI | VIEW
    assert flags.GUEST_CAP == CHAT | EMOJI | VIEW
    room = make_room()
    assert room.member_permissions == flags.DEFAULT_MEMBER
    assert room.admin_permissions == flags.DEFAULT_ADMIN
    assert room.guest_permissions == flags.DEFAULT_GUEST


@pytest.mark.parametrize(
    ("value", "valid"),
    [(0, True), (ALL, True), (int(PLAY), True), (ALL + 1, False), (1 << 16, False), (-1, False),
     (True, False), (False, False), ("4", False), (4.0, False), (None, False)],
)  # fmt: skip
def test_is_valid_mask(value, valid):
    assert flags.is_valid_mask(value) is valid


def test_names():
    assert flags.names(int(CHAT | MANAGE)) == ["SEND_CHAT_MESSAGE", "MANAGE_ADMINS"]
    assert flags.names(1 << 20) == []


# --- effective permissions -------------------------------------------------------------------------------


def test_creator_holds_every_bit_whatever_its_overrides():
    room = make_room(member_permissions=0, admin_permissions=0)
    assert effective_permissions(room=room, member=make_member(room, "creator")) == ALL
    creator = make_member(room, "creator", removed=ALL)
    assert effective_permissions(room=room, member=creator) == ALL


def test_member_and_admin_follow_their_room_default():
    room = make_room()
    assert effective_permissions(room=room, member=make_member(room, "member")) == flags.DEFAULT_MEMBER
    assert effective_permissions(room=room, member=make_member(room, "admin")) == flags.DEFAULT_ADMIN
    # A custom default is read from the room, at check time.
    member = make_member(room, "member")
    room.member_permissions = int(CHAT | PLAY)
    assert effective_permissions(room=room, member=member) == CHAT | PLAY
    room.admin_permissions = int(KICK)
    assert effective_permissions(room=room, member=make_member(room, "admin")) == KICK


def test_added_and_removed():
    room = make_room()
    member = make_member(room, "member", added=PLAY | MANAGE, removed=ADD)
    assert effective_permissions(room=room, member=member) == (flags.DEFAULT_MEMBER | PLAY | MANAGE) & ~ADD
    admin = make_member(room, "admin", added=MANAGE, removed=KICK)
    assert effective_permissions(room=room, member=admin) == (flags.DEFAULT_ADMIN | MANAGE) & ~KICK


@pytest.mark.parametrize("role", ["member", "admin", "guest"])
def test_removed_beats_added(role):
    room = make_room()
    member = make_member(room, role, added=CHAT | PLAY, removed=CHAT | PLAY)
    assert effective_permissions(room=room, member=member) & (CHAT | PLAY) == 0


def test_unknown_bits_are_never_held():
    room = make_room()
    member = make_member(room, "member", added=(1 << 20) | (1 << 40))
    assert effective_permissions(room=room, member=member) == flags.DEFAULT_MEMBER


@pytest.mark.parametrize(
    ("guest_mask", "added", "removed", "expected"),
    [
        (flags.DEFAULT_GUEST, 0, 0, CHAT | EMOJI | VIEW),
        (ALL, 0, 0, CHAT | EMOJI | VIEW),  # the room mask cannot lift a guest past the cap
        (flags.DEFAULT_GUEST, ALL, 0, CHAT | EMOJI | VIEW),  # nor can per-member additions
        (flags.DEFAULT_GUEST, ADD | PLAY | KICK | MANAGE, 0, CHAT | EMOJI | VIEW),
        (0, ALL, 0, CHAT | EMOJI | VIEW),
        (int(CHAT), 0, 0, CHAT),
        (0, 0, 0, 0),
        (ALL, ALL, EMOJI, CHAT | VIEW),
    ],
)
def test_guest_cap(guest_mask, added, removed, expected):
    room = make_room(guest_permissions=int(guest_mask))
    guest = make_member(room, "guest", added=added, removed=removed)
    got = effective_permissions(room=room, member=guest)
    assert got == expected
    assert got & ~(CHAT | EMOJI | VIEW) == 0


@pytest.mark.parametrize("role", ["creator", "admin", "member", "guest"])
@pytest.mark.parametrize("status", ["pending", "banned"])
def test_pending_or_banned_membership_holds_nothing(role, status):
    room = make_room(member_permissions=ALL, admin_permissions=ALL, guest_permissions=ALL)
    member = make_member(room, role, status=status, added=ALL)
    assert effective_permissions(room=room, member=member) == 0
    user = make_user()
    built = build_actor(user=user, room=room, member=make_member(room, role, user=user, status=status))
    assert built.permissions == 0 and not built.is_member and built.rank == -1


def test_no_membership_or_unknown_role_holds_nothing():
    room = make_room()
    assert effective_permissions(room=room, member=None) == 0
    assert effective_permissions(room=room, member=make_member(room, "owner")) == 0


# --- build_actor ---------------------------------------------------------------------------------------------


def test_anonymous_holds_nothing():
    room = make_room(member_permissions=ALL, guest_permissions=ALL)
    for user in (None, AnonymousUser()):
        built = build_actor(user=user, room=room, member=None)
        assert built.permissions == 0 and built.rank == -1 and not built.is_member
        assert not built.can(CHAT)


@pytest.mark.parametrize("role", ["creator", "admin", "member"])
def test_site_banned_user_holds_nothing_even_as_creator(role):
    room = make_room()
    user = make_user("banned")
    built = build_actor(user=user, room=room, member=make_member(room, role, user=user))
    assert built.permissions == 0
    assert built.rank == -1
    assert not built.is_member
    assert not built.is_site_admin


@pytest.mark.parametrize("site_role", ["admin", "root"])
def test_site_admins_act_as_creator_without_a_membership(site_role):
    room = make_room(member_permissions=0, admin_permissions=0)
    built = actor(room, None, site_role=site_role)
    assert built.permissions == ALL
    assert built.rank == RANK["creator"]
    assert built.is_site_admin and built.is_member
    # A membership (even a restricted one) does not make them less than the creator.
    restricted = actor(room, "member", site_role=site_role, removed=ALL)
    assert restricted.permissions == ALL and restricted.rank == RANK["creator"]


def test_a_guest_account_with_a_staff_role_is_not_a_site_admin():
    room = make_room()
    user = make_user("admin", guest=True)
    built = build_actor(user=user, room=room, member=make_member(room, "guest", user=user))
    assert not built.is_site_admin
    assert built.permissions == flags.GUEST_CAP


@pytest.mark.parametrize(("role", "rank"), [("creator", 3), ("admin", 2), ("member", 1), ("guest", 0)])
def test_ranks(role, rank):
    room = make_room()
    built = actor(room, role)
    assert built.rank == rank
    assert built.is_member
    assert built.permissions == effective_permissions(room=room, member=built.member)


def test_outsider_holds_nothing():
    built = actor(make_room(member_permissions=ALL), None)
    assert built.permissions == 0 and built.rank == -1 and not built.is_member


def test_can_needs_every_bit_asked():
    built = RoomActor(user=None, member=None, permissions=int(PLAY), rank=1)
    assert built.can(PLAY)
    assert not built.can(PLAY | CHANGE)
    assert not built.can(CHANGE)
    assert built.can(0)


@pytest.mark.parametrize(
    ("role", "status", "site_role", "expected"),
    [
        ("creator", "active", "user", True),
        ("creator", "active", "admin", True),  # a site admin who created the room
        ("creator", "pending", "user", False),  # not an active membership: not the creator's rights
        ("creator", "banned", "user", False),
        ("admin", "active", "user", False),
        ("member", "active", "user", False),
        ("guest", "active", "user", False),
        (None, "active", "user", False),
        (None, "active", "admin", False),  # acts as the creator, is not the creator
        (None, "active", "root", False),
    ],
)
def test_is_creator(role, status, site_role, expected):
    assert actor(make_room(), role, site_role=site_role, status=status).is_creator is expected


def test_a_site_banned_creator_is_not_the_creator():
    room = make_room()
    user = make_user("banned")
    assert not build_actor(user=user, room=room, member=make_member(room, "creator", user=user)).is_creator


# --- check_member_change ----------------------------------------------------------------------------------


def change(room, by, target, *, role=None, added=None, removed=None):
    check_member_change(actor=by, target=target, new_role=role, added=added, removed=removed)


def refused(room, by, target, **kwargs):
    with pytest.raises(EscalationError):
        change(room, by, target, **kwargs)


def test_nobody_changes_the_creator():
    room = make_room()
    creator = make_member(room, "creator")
    for by in (
        actor(room, "admin", added=MANAGE),
        actor(room, None, site_role="admin"),
        actor(room, "creator"),
    ):
        refused(room, by, creator, role="member")
        refused(room, by, creator, removed=int(PLAY))
        refused(room, by, creator, added=0)


def test_nobody_changes_themselves():
    room = make_room()
    for role, kwargs in (
        ("admin", {"added": int(MANAGE)}),
        ("admin", {"added": int(INVITE)}),  # a bit it already holds
        ("admin", {"role": "member"}),
        ("member", {"role": "admin"}),
        ("member", {"added": int(PLAY)}),
    ):
        by = actor(room, role, added=MANAGE if role == "admin" else 0)
        refused(room, by, by.member, **kwargs)


def test_guests_are_not_changed_and_nobody_becomes_one():
    room = make_room()
    creator = actor(room, "creator")
    refused(room, creator, make_member(room, "guest"), added=int(CHAT))
    refused(room, creator, make_member(room, "guest"), role="member")
    refused(room, creator, make_member(room, "member"), role="guest")
    refused(room, creator, make_member(room, "member"), role="creator")


def test_admins_are_manage_admins_business():
    room = make_room()
    admin = actor(room, "admin")
    refused(room, admin, make_member(room, "member"), role="admin")
    refused(room, admin, make_member(room, "admin"), role="member")
    refused(room, admin, make_member(room, "admin"), removed=int(KICK))
    refused(room, admin, make_member(room, "admin"), added=int(PLAY))
    manager = actor(room, "admin", added=MANAGE)
    change(room, manager, make_member(room, "member"), role="admin")
    change(room, manager, make_member(room, "admin"), role="member")
    change(room, manager, make_member(room, "admin"), removed=int(KICK))


def test_members_do_not_change_members():
    room = make_room()
    for by in (actor(room, "member"), actor(room, "member", added=KICK | BAN), actor(room, "guest")):
        refused(room, by, make_member(room, "member"), added=int(CHAT))
        refused(room, by, make_member(room, "member"), removed=int(CHAT))


def test_nobody_grants_or_takes_a_bit_they_do_not_hold():
    room = make_room(admin_permissions=flags.DEFAULT_ADMIN & ~int(PLAY))
    admin = actor(room, "admin")
    refused(room, admin, make_member(room, "member"), added=int(PLAY))
    refused(room, admin, make_member(room, "member"), removed=int(PLAY))
    refused(room, admin, make_member(room, "member"), added=int(MANAGE))
    refused(room, admin, make_member(room, "member"), added=int(CHAT | PLAY))  # one missing bit is enough
    change(room, admin, make_member(room, "member"), added=int(CHAT | KICK))
    change(room, admin, make_member(room, "member"), removed=int(ADD))
    # A per-member removal counts the same as a room default.
    removed_play = actor(room, "admin", removed=PLAY)
    refused(room, removed_play, make_member(room, "member"), added=int(PLAY))


def test_promotion_grants_the_admin_default_and_needs_those_bits():
    room = make_room()
    target = make_member(room, "member")
    # A member trusted with MANAGE_ADMINS only: promoting would hand out KICK, BAN, settings...
    refused(room, actor(room, "member", added=MANAGE), target, role="admin")
    # An admin manager without KICK_MEMBERS cannot create an admin who kicks.
    refused(room, actor(room, "admin", added=MANAGE, removed=KICK), target, role="admin")
    # With every bit of the admin default, fine; so is a default within the actor's bits.
    change(room, actor(room, "admin", added=MANAGE), target, role="admin")
    room.admin_permissions = flags.DEFAULT_MEMBER
    change(room, actor(room, "member", added=MANAGE), target, role="admin")
    # What the target keeps through its own overrides is not a gain.
    room.admin_permissions = flags.DEFAULT_ADMIN
    holds_kick = make_member(room, "member", added=KICK)
    change(room, actor(room, "admin", added=MANAGE, removed=KICK), holds_kick, role="admin", added=None)


def test_rank_rule():
    room = make_room()
    admin = actor(room, "admin")
    change(room, admin, make_member(room, "member"), added=int(PLAY))
    creator = actor(room, "creator")
    change(room, creator, make_member(room, "admin"), role="member")
    site = actor(room, None, site_role="admin")
    change(room, site, make_member(room, "admin"), role="member")


# --- check_moderation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("perm", [KICK, BAN])
def test_moderation(perm):
    room = make_room()
    admin, creator, site = actor(room, "admin"), actor(room, "creator"), actor(room, None, site_role="root")
    member, guest = make_member(room, "member"), make_member(room, "guest")
    other_admin, the_creator = make_member(room, "admin"), make_member(room, "creator")

    for by in (admin, creator, site):
        check_moderation(actor=by, target=member, perm=perm)
        check_moderation(actor=by, target=guest, perm=perm)
    for by in (creator, site):
        check_moderation(actor=by, target=other_admin, perm=perm)

    def no(by, target):
        with pytest.raises(EscalationError):
            check_moderation(actor=by, target=target, perm=perm)

    no(admin, other_admin)  # equal rank
    no(actor(room, "admin", added=MANAGE), other_admin)  # MANAGE_ADMINS does not change that
    for by in (admin, creator, site, actor(room, "admin", added=MANAGE)):
        no(by, the_creator)  # nobody acts on the creator
    no(admin, admin.member)  # nor on themselves
    no(actor(room, "admin", removed=perm), member)  # the bit itself
    no(actor(room, "member"), guest)
    no(actor(room, "member", added=perm), member)  # a member with the bit: equal rank
    check_moderation(actor=actor(room, "member", added=perm), target=guest, perm=perm)
    no(actor(room, None), guest)  # outsiders
    no(build_actor(user=None, room=room, member=None), guest)


# --- check_settings_masks --------------------------------------------------------------------------------


def masks(room: Room) -> dict[str, int]:
    return {
        "member_permissions": room.member_permissions,
        "admin_permissions": room.admin_permissions,
        "guest_permissions": room.guest_permissions,
    }


def test_settings_masks():
    room = make_room()
    before = masks(room)
    admin = actor(room, "admin")

    def ok(by, **after):
        check_settings_masks(actor=by, before=before, after=after)

    def no(by, **after):
        with pytest.raises(EscalationError):
            check_settings_masks(actor=by, before=before, after=after)

    ok(admin, member_permissions=flags.DEFAULT_MEMBER | int(PLAY))
    ok(admin, member_permissions=int(CHAT))
    ok(admin, guest_permissions=0)
    ok(admin, admin_permissions=flags.DEFAULT_ADMIN)  # unchanged is no change
    no(admin, member_permissions=flags.DEFAULT_MEMBER | int(MANAGE))
    no(admin, admin_permissions=flags.DEFAULT_ADMIN & ~int(AUDIT))  # needs MANAGE_ADMINS
    no(admin, admin_permissions=flags.DEFAULT_ADMIN | int(MANAGE))
    no(actor(room, "admin", added=MANAGE, removed=PLAY), admin_permissions=flags.DEFAULT_ADMIN & ~int(PLAY))
    ok(actor(room, "admin", added=MANAGE), admin_permissions=flags.DEFAULT_ADMIN & ~int(AUDIT))
    no(actor(room, "admin", removed=PLAY), member_permissions=flags.DEFAULT_MEMBER | int(PLAY))
    creator = actor(room, "creator")
    ok(creator, member_permissions=ALL, admin_permissions=ALL, guest_permissions=ALL)
    ok(actor(room, None, site_role="admin"), admin_permissions=0)
