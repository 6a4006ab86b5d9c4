"""The audit log's hash chain (docs/security.md, "The audit log"): ``audit_verify`` finds an
intact chain intact and names where any edited or deleted row, or a changed head, breaks it;
the admin cannot change events; concurrent writers still form one gap-free valid chain."""

from __future__ import annotations

import io
import itertools

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from apps.accounts import services as account_services
from apps.accounts.tests.factories import TEST_ORIGIN, make_user
from apps.audit.actions import AuditAction
from apps.audit.chain import GENESIS, verify_chain
from apps.audit.models import AuditChainHead, AuditEvent
from apps.audit.services import audit_record
from apps.audit.tests.conftest import assert_verify_names, verify_output
from apps.core.context import Origin
from apps.core.tests.helpers import admin_url, retry_if_sqlite_locked, run_at_once
from apps.rooms import services

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

    def writer(w: int) -> None:
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

    assert run_at_once(writer, writers, timeout=120) == [None] * writers

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
    actors = [services.actor_for_user(user=creator, room=room) for room in rooms]

    def worker(r: int) -> None:
        for i in range(5):
            retry_if_sqlite_locked(
                lambda i=i: services.playback_update(
                    actor=actors[r], room=rooms[r], position=float(i), origin=TEST_ORIGIN
                ),
                seconds=2.0,
                pause=0.002,
            )

    assert run_at_once(worker, len(rooms), timeout=120) == [None] * len(rooms)
    for room in rooms:
        assert AuditEvent.objects.filter(room_id=room.pk, action="playback.update").count() == 5
    checked, broken = verify_chain()
    assert broken is None and checked == AuditEvent.objects.count()
