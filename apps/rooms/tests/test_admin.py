"""The Django admin for moderators (docs/security.md, "Checks on what comes in", "The audit
log"): rooms (search, filters, inlines, close/reopen/delete), members (filters,
ban/unban/kick/promote), movies, the audit log (filters, read-only) and sensitive words. Every
change goes through the services, so it is audited."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.accounts.models import Role, User
from apps.accounts.tests.factories import TEST_ORIGIN, make_user
from apps.audit.models import AuditEvent
from apps.core.errors import PermissionDenied
from apps.core.tests.helpers import admin_client_fixture, admin_url
from apps.rooms import services
from apps.rooms.models import Movie, Room, RoomMember, SensitiveWord
from apps.rooms.moderation import clean_text

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_word_filter")]

ROOMS = "/admin/rooms/room/"
MEMBERS = "/admin/rooms/roommember/"
MOVIES = "/admin/rooms/movie/"
WORDS = "/admin/rooms/sensitiveword/"
AUDIT = "/admin/audit/auditevent/"
ADMIN_IP = "192.0.2.44"
ADMIN_UA = "ModeratorBrowser/2.0"


# --- helpers -------------------------------------------------------------------------------------


def user(username: str, role: str | None = None) -> User:
    u, _ = make_user(username)
    if role is not None:
        User.objects.filter(pk=u.pk).update(role=role)
        u.refresh_from_db()
    return u


def make_room(owner: User, name: str, **kwargs) -> Room:
    return services.room_create(creator=owner, name=name, origin=TEST_ORIGIN, **kwargs)


def join(u: User, room: Room) -> RoomMember:
    return services.member_join(user=u, room=room, origin=TEST_ORIGIN)[0]


def add_movie(room: Room, name: str) -> Movie:
    actor = services.actor_for_user(user=room.creator, room=room)
    return services.movies_add(
        actor=actor,
        room=room,
        items=[{"name": name, "url": f"https://example.com/{name}.mp4"}],
        origin=TEST_ORIGIN,
    )[0]


def listed(response) -> list:
    assert response.status_code == 200, (response.status_code, response.content[:300])
    return list(response.context["cl"].result_list)


def names(response) -> set[str]:
    return {r.name for r in listed(response)}


def messages_of(response) -> list[tuple[str, str]]:
    return [(m.level_tag, str(m)) for m in response.context["messages"]]


@pytest.fixture
def root() -> User:
    return user("root", Role.ROOT)


admin_client = admin_client_fixture(ADMIN_IP, ADMIN_UA)


@pytest.fixture
def alice() -> User:
    return user("alice")


@pytest.fixture
def bob() -> User:
    return user("bob")


@pytest.fixture
def rooms(alice, bob) -> dict[str, Room]:
    """Four rooms covering the filters."""
    rs = {
        "open": make_room(alice, "Movie night", description="popcorn"),
        "hidden": make_room(alice, "Secret club", settings={"hidden": True}),
        "guests": make_room(bob, "Open house", settings={"allow_guests": True}),
        "closed": make_room(bob, "Old times"),
    }
    services.room_set_closed(
        actor=services.actor_for_user(user=bob, room=rs["closed"]),
        room=rs["closed"],
        closed=True,
        origin=TEST_ORIGIN,
    )
    return rs


# --- who gets in --------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.USER, Role.PENDING])
def test_ordinary_user_is_sent_to_login(role):
    c = Client()
    c.force_login(user("plain", role))
    for path in (ROOMS, MEMBERS, MOVIES, WORDS, AUDIT, "/admin/"):
        r = c.get(path)
        assert r.status_code == 302, (path, r.status_code)
        assert r["Location"].startswith("/admin/login/"), path
    r = c.post(ROOMS, {"action": "delete_rooms", "_selected_action": []})
    assert r.status_code == 302 and r["Location"].startswith("/admin/login/")


def test_anonymous_is_sent_to_login(rooms):
    room = rooms["open"]
    r = Client().post(ROOMS, {"action": "close_rooms", "_selected_action": [room.pk]})
    assert r.status_code == 302 and r["Location"].startswith("/admin/login/")
    room.refresh_from_db()
    assert not room.is_closed


def test_site_admin_gets_in(rooms):
    c = Client()
    c.force_login(user("moderator", Role.ADMIN))
    assert c.get(ROOMS).status_code == 200
    assert c.get(AUDIT).status_code == 200


# --- rooms -------------------------------------------------------------------------------------------


def test_room_list_search_and_filters(admin_client, rooms):
    assert names(admin_client.get(ROOMS)) == {"Movie night", "Secret club", "Open house", "Old times"}
    assert names(admin_client.get(ROOMS, {"q": "movie"})) == {"Movie night"}
    assert names(admin_client.get(ROOMS, {"q": "popcorn"})) == {"Movie night"}  # description
    assert names(admin_client.get(ROOMS, {"q": rooms["hidden"].pk})) == {"Secret club"}  # id
    assert names(admin_client.get(ROOMS, {"q": "bob"})) == {"Open house", "Old times"}  # creator
    assert names(admin_client.get(ROOMS, {"q": "nothing-like-this"})) == set()
    assert names(admin_client.get(ROOMS, {"state": "closed"})) == {"Old times"}
    assert names(admin_client.get(ROOMS, {"state": "open"})) == {"Movie night", "Secret club", "Open house"}
    assert names(admin_client.get(ROOMS, {"hidden__exact": "1"})) == {"Secret club"}
    assert names(admin_client.get(ROOMS, {"allow_guests__exact": "1"})) == {"Open house"}
    assert names(admin_client.get(ROOMS, {"allow_guests__exact": "0", "state": "open"})) == {
        "Movie night",
        "Secret club",
    }


def test_room_list_shows_active_member_counts(admin_client, rooms, bob):
    room = rooms["open"]
    join(bob, room)
    [row] = listed(admin_client.get(ROOMS, {"q": "Movie night"}))
    assert row.active_members == 2


def test_room_change_page_has_members_and_movies_inline(admin_client, rooms, bob):
    room = rooms["open"]
    join(bob, room)
    add_movie(room, "first-film")
    add_movie(room, "second-film")
    r = admin_client.get(admin_url(room))
    assert r.status_code == 200
    inlines = {type(i.opts).__name__: i for i in r.context["inline_admin_formsets"]}
    assert set(inlines) == {"MemberInline", "MovieInline"}
    member_users = {f.instance.user.username for f in inlines["MemberInline"].formset.forms}
    assert member_users == {"alice", "bob"}
    movie_names = [f.instance.name for f in inlines["MovieInline"].formset.forms]
    assert movie_names == ["first-film", "second-film"]
    page = r.content.decode()
    assert "bob" in page and "second-film" in page
    # Room rows are not added or deleted by hand (the actions do it through the services).
    assert admin_client.get(f"{ROOMS}add/").status_code == 403
    assert admin_client.post(admin_url(room, "delete"), {"post": "yes"}).status_code == 403
    assert Room.objects.filter(pk=room.pk).exists()


def test_close_and_reopen_actions(admin_client, root, rooms):
    targets = [rooms["open"], rooms["hidden"]]
    r = admin_client.post(ROOMS, {"action": "close_rooms", "_selected_action": [t.pk for t in targets]})
    assert r.status_code == 302, r.content[:300]
    for room in targets:
        room.refresh_from_db()
        assert room.is_closed
        event = AuditEvent.objects.get(action="room.close", room_id=room.pk)
        assert event.user_id == root.pk
        assert (event.ip, event.user_agent) == (ADMIN_IP, ADMIN_UA)
    rooms["guests"].refresh_from_db()
    assert not rooms["guests"].is_closed

    r = admin_client.post(ROOMS, {"action": "reopen_rooms", "_selected_action": [rooms["open"].pk]})
    assert r.status_code == 302
    rooms["open"].refresh_from_db()
    assert not rooms["open"].is_closed
    assert AuditEvent.objects.get(action="room.reopen", room_id=rooms["open"].pk).user_id == root.pk


def test_delete_action(admin_client, root, rooms, bob):
    room = rooms["open"]
    join(bob, room)
    add_movie(room, "film")
    r = admin_client.post(ROOMS, {"action": "delete_rooms", "_selected_action": [room.pk]}, follow=True)
    assert r.status_code == 200
    assert ("success", "Deleted: 1.") in messages_of(r)
    assert not Room.objects.filter(pk=room.pk).exists()
    assert not RoomMember.objects.filter(room_id=room.pk).exists()
    assert not Movie.objects.filter(room_id=room.pk).exists()
    event = AuditEvent.objects.get(action="room.delete", room_id=room.pk)
    assert event.user_id == root.pk and event.details["name"] == "Movie night"
    assert Room.objects.count() == 3
    # Django's own bulk delete (no audit) is not offered.
    r = admin_client.post(
        ROOMS, {"action": "delete_selected", "_selected_action": [rooms["guests"].pk], "post": "yes"}
    )
    assert Room.objects.filter(pk=rooms["guests"].pk).exists()


# --- members -----------------------------------------------------------------------------------------------


@pytest.fixture
def club(alice, bob) -> Room:
    """alice's approval room: bob active (promoted to admin), carol active, dave pending."""
    room = make_room(alice, "Club", settings={"join_requires_approval": True})
    creator = services.actor_for_user(user=alice, room=room)
    for name in ("bob", "carol"):
        u = bob if name == "bob" else user(name)
        m = join(u, room)
        services.member_approve(actor=creator, room=room, target=m, origin=TEST_ORIGIN)
    services.member_update(
        actor=creator,
        room=room,
        target=RoomMember.objects.get(room=room, user=bob),
        role="admin",
        origin=TEST_ORIGIN,
    )
    join(user("dave"), room)
    return room


def member_names(response) -> set[str]:
    return {m.user.username for m in listed(response)}


def row(room: Room, username: str) -> RoomMember | None:
    return RoomMember.objects.filter(room=room, user__username=username).first()


def test_member_list_filters(admin_client, club):
    assert member_names(admin_client.get(MEMBERS)) == {"alice", "bob", "carol", "dave"}
    assert member_names(admin_client.get(MEMBERS, {"status__exact": "pending"})) == {"dave"}
    assert member_names(admin_client.get(MEMBERS, {"status__exact": "active"})) == {"alice", "bob", "carol"}
    assert member_names(admin_client.get(MEMBERS, {"role__exact": "admin"})) == {"bob"}
    assert member_names(admin_client.get(MEMBERS, {"role__exact": "creator"})) == {"alice"}
    assert member_names(admin_client.get(MEMBERS, {"role__exact": "member", "status__exact": "active"})) == {
        "carol"
    }
    assert member_names(admin_client.get(MEMBERS, {"q": "carol"})) == {"carol"}
    assert member_names(admin_client.get(MEMBERS, {"q": club.pk})) == {"alice", "bob", "carol", "dave"}
    r = admin_client.get(admin_url(row(club, "carol")))
    assert r.status_code == 200
    assert admin_client.get(f"{MEMBERS}add/").status_code == 403


def test_ban_unban_kick_actions(admin_client, root, club):
    carol, bob = row(club, "carol"), row(club, "bob")
    r = admin_client.post(MEMBERS, {"action": "ban_members", "_selected_action": [carol.pk, bob.pk]})
    assert r.status_code == 302, r.content[:300]
    assert row(club, "carol").status == "banned" and row(club, "bob").status == "banned"
    for who in (carol, bob):
        event = AuditEvent.objects.get(action="member.ban", resource_id=who.user_id)
        assert event.user_id == root.pk and event.room_id == club.pk
        assert (event.ip, event.user_agent) == (ADMIN_IP, ADMIN_UA)
    # Banned: the API refuses the rejoin.
    with pytest.raises(PermissionDenied, match="banned"):
        services.member_join(user=carol.user, room=club, origin=TEST_ORIGIN)

    r = admin_client.post(MEMBERS, {"action": "unban_members", "_selected_action": [carol.pk]})
    assert r.status_code == 302
    assert row(club, "carol") is None
    assert AuditEvent.objects.get(action="member.unban").user_id == root.pk
    assert row(club, "bob").status == "banned"

    dave = row(club, "dave")
    r = admin_client.post(MEMBERS, {"action": "kick_members", "_selected_action": [dave.pk]})
    assert r.status_code == 302
    assert row(club, "dave") is None
    event = AuditEvent.objects.get(action="member.kick")
    assert event.user_id == root.pk and event.resource_id == dave.user_id


def test_creator_is_protected_from_member_actions(admin_client, club):
    alice = row(club, "alice")
    before = AuditEvent.objects.count()
    for action in ("ban_members", "kick_members", "make_member"):
        r = admin_client.post(MEMBERS, {"action": action, "_selected_action": [alice.pk]}, follow=True)
        assert r.status_code == 200
        assert any(level == "error" for level, _ in messages_of(r)), (action, messages_of(r))
    alice = row(club, "alice")
    assert (alice.role, alice.status) == ("creator", "active")
    assert AuditEvent.objects.count() == before


def test_promote_and_demote_actions(admin_client, root, club):
    carol = row(club, "carol")
    admin_client.post(MEMBERS, {"action": "make_admin", "_selected_action": [carol.pk]})
    assert row(club, "carol").role == "admin"
    assert AuditEvent.objects.filter(action="member.role_change", resource_id=carol.user_id).count() == 1
    admin_client.post(MEMBERS, {"action": "make_member", "_selected_action": [carol.pk]})
    assert row(club, "carol").role == "member"
    assert AuditEvent.objects.filter(action="member.role_change", user_id=root.pk).count() == 2


def test_site_admin_not_member_uses_member_actions(club):
    """A site admin moderates rooms they are not in (acts as creator)."""
    mod = user("moderator", Role.ADMIN)
    c = Client(raise_request_exception=False)
    c.force_login(mod)
    carol = row(club, "carol")
    c.post(MEMBERS, {"action": "kick_members", "_selected_action": [carol.pk]})
    assert row(club, "carol") is None
    assert AuditEvent.objects.get(action="member.kick").user_id == mod.pk


# --- movies -------------------------------------------------------------------------------------------------


def test_movie_list_and_remove_action(admin_client, root, rooms):
    room = rooms["open"]
    keep, drop = add_movie(room, "keeper"), add_movie(room, "dropper")
    other = add_movie(rooms["guests"], "elsewhere")
    r = admin_client.get(MOVIES)
    assert {m.name for m in listed(r)} == {"keeper", "dropper", "elsewhere"}
    assert {m.name for m in listed(admin_client.get(MOVIES, {"q": "drop"}))} == {"dropper"}
    assert {m.name for m in listed(admin_client.get(MOVIES, {"q": rooms["guests"].pk}))} == {"elsewhere"}
    assert admin_client.get(admin_url(keep)).status_code == 200
    version = Room.objects.get(pk=room.pk).playlist_version

    r = admin_client.post(MOVIES, {"action": "remove_movies", "_selected_action": [drop.pk]})
    assert r.status_code == 302, r.content[:300]
    assert not Movie.objects.filter(pk=drop.pk).exists()
    assert Movie.objects.filter(pk__in=[keep.pk, other.pk]).count() == 2
    event = AuditEvent.objects.get(action="playlist.delete")
    assert event.user_id == root.pk and event.resource_id == drop.pk and event.room_id == room.pk
    assert Room.objects.get(pk=room.pk).playlist_version == version + 1  # clients refetch
    # No un-audited delete.
    assert admin_client.post(admin_url(keep, "delete"), {"post": "yes"}).status_code == 403
    assert Movie.objects.filter(pk=keep.pk).exists()


# --- the audit log --------------------------------------------------------------------------------------


def test_audit_log_filters(admin_client, root, rooms, bob, alice):
    room = rooms["open"]
    join(bob, room)
    add_movie(room, "film")
    events = lambda **params: listed(admin_client.get(AUDIT, params))  # noqa: E731

    by_room = events(q=room.pk)
    assert by_room and all(e.room_id == room.pk for e in by_room)
    assert {e.action for e in by_room} >= {"room.create", "member.join", "playlist.add"}
    assert len(by_room) == AuditEvent.objects.filter(room_id=room.pk).count()

    by_user = events(q="bob")
    assert by_user and all(e.user_id == bob.pk for e in by_user)
    assert {e.action for e in by_user} >= {"user.register", "member.join", "room.create"}
    by_user_id = events(user__id__exact=bob.pk)
    assert {e.pk for e in by_user_id} == {e.pk for e in by_user}

    joins = events(action__exact="member.join")
    assert [e.user_id for e in joins] == [bob.pk]
    creates = events(action__exact="room.create")
    assert len(creates) == 4
    assert {e.action for e in events(area="room")} == {"room.create", "room.close"}
    assert events(action__exact="member.join", q=rooms["guests"].pk) == []
    assert admin_client.get(admin_url(by_room[0])).status_code == 200  # a view page


def test_audit_log_is_read_only(admin_client, root, rooms):
    event = AuditEvent.objects.filter(action="room.close").get()
    original = (event.action, event.details, event.hash)
    r = admin_client.get(AUDIT)
    assert r.status_code == 200 and r.context["action_form"] is None
    assert admin_client.get(f"{AUDIT}add/").status_code == 403
    assert admin_client.post(f"{AUDIT}add/", {"action": "forged"}).status_code == 403
    assert admin_client.post(admin_url(event), {"action": "forged"}).status_code == 403
    assert admin_client.post(admin_url(event, "delete"), {"post": "yes"}).status_code == 403
    admin_client.post(AUDIT, {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"})
    event.refresh_from_db()
    assert (event.action, event.details, event.hash) == original


# --- sensitive words -----------------------------------------------------------------------------------


def test_sensitive_words_added_and_edited(admin_client):
    assert admin_client.get(WORDS).status_code == 200
    r = admin_client.post(
        f"{WORDS}add/", {"word": "spoiler", "created_at_0": "2026-01-01", "created_at_1": "12:00:00"}
    )
    assert r.status_code == 302, r.content[:500]
    word = SensitiveWord.objects.get()
    assert word.word == "spoiler"
    r = admin_client.get(WORDS, {"q": "spoil"})
    assert [w.word for w in listed(r)] == ["spoiler"]
    r = admin_client.post(
        admin_url(word),
        {"word": "big spoiler", "created_at_0": "2026-01-01", "created_at_1": "12:00:00"},
    )
    assert r.status_code == 302, r.content[:500]
    word.refresh_from_db()
    assert word.word == "big spoiler"
    assert clean_text("a BIG SPOILER!") == "a ***********!"
