"""``manage.py purge_audit_log --before DATE`` (docs/security.md, "The audit log"): old events go,
a signed anchor of the last one removed stays, ``audit_verify`` checks the rest from it and still
finds any tampering: a forged or deleted anchor, a row deleted or edited after it."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command, load_command_class
from django.test import override_settings
from django.utils import timezone

from apps.accounts import services as account_services
from apps.accounts.tests.factories import TEST_ORIGIN
from apps.audit.actions import AuditAction
from apps.audit.chain import verify_chain
from apps.audit.models import AuditAnchor, AuditChainHead, AuditEvent
from apps.audit.services import audit_record
from apps.audit.tests.conftest import assert_verify_names, verify_output
from apps.core.tests.helpers import admin_url

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


@pytest.fixture
def aged_chain() -> list[AuditEvent]:
    """Ten events: six written 40 days ago, four today."""
    for n in range(10):
        audit_record(action=AuditAction.USER_UPDATE, origin=TEST_ORIGIN, details={"n": n})
    events = list(AuditEvent.objects.order_by("seq"))
    long_ago = timezone.now() - 40 * DAY
    for event in events[:6]:  # the chain hashes created_at: re-seal the aged rows as written then
        event.created_at = long_ago + timedelta(seconds=event.seq)
    _reseal(events)
    assert verify_chain() == (10, None)
    return events


def _reseal(events: list[AuditEvent]) -> None:
    from apps.audit.chain import GENESIS, event_digest

    prev = GENESIS
    for event in events:
        event.prev_hash = prev
        event.hash = event_digest(event, prev)
        prev = event.hash
    AuditEvent.objects.bulk_update(events, ["created_at", "prev_hash", "hash"])
    AuditChainHead.objects.filter(pk=1).update(hash=prev)


def purge(*args: str) -> str:
    out = io.StringIO()
    call_command("purge_audit_log", *args, stdout=out)
    return out.getvalue()


def a_month_ago() -> str:
    return (timezone.now() - 30 * DAY).date().isoformat()


def test_purge_removes_the_old_events_and_the_rest_still_verifies(aged_chain):
    assert "would purge 6 event(s), up to seq 6" in purge("--before", a_month_ago(), "--dry-run")
    assert AuditEvent.objects.count() == 10 and not AuditAnchor.objects.exists()

    out = purge("--before", a_month_ago())

    assert "purged 6 event(s), up to seq 6" in out
    assert list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True)) == [7, 8, 9, 10, 11]
    anchor = AuditAnchor.objects.get()
    assert (anchor.seq, anchor.hash, anchor.purged) == (6, aged_chain[5].hash, 6)
    record = AuditEvent.objects.get(seq=11)  # the purge, audited at the head of the chain
    assert record.action == AuditAction.AUDIT_PURGED
    assert record.details == {"before": anchor.before.isoformat(), "up_to_seq": 6, "purged": 6}
    assert record.user_agent == "manage.py"
    assert "intact: 5 event(s)" in verify_output()

    # Again, later: the newest anchor is where verification starts.
    assert "nothing to purge" in purge("--before", a_month_ago())
    assert "purged 5 event(s), up to seq 11" in purge("--before", timezone.now().isoformat())
    assert AuditAnchor.objects.count() == 2
    assert "intact: 1 event(s)" in verify_output()


def test_a_date_with_an_offset_is_kept_in_utc_and_the_anchor_still_verifies(aged_chain):
    day = (timezone.now() - 30 * DAY).date().isoformat()
    assert "purged 6 event(s)" in purge("--before", f"{day}T02:00:00+02:00")  # midnight UTC
    assert AuditAnchor.objects.get().before.isoformat() == f"{day}T00:00:00+00:00"
    assert "intact: 5 event(s)" in verify_output()
    assert "nothing to purge" in purge("--before", f"{day}T05:30:00+05:30")  # the next one works too


def test_the_check_before_a_purge_stops_at_the_head_it_read_first(aged_chain):
    """A purge checks the chain up to the head it read before the walk: an event appended while
    it walks is neither "missing" nor checked half-written."""
    head = AuditChainHead.objects.values_list("seq", "hash").get()
    audit_record(action=AuditAction.USER_UPDATE, origin=TEST_ORIGIN, details={"n": "late"})
    assert verify_chain(head=head) == (10, None)
    assert verify_chain() == (11, None)
    AuditEvent.objects.filter(seq=4).update(details={"n": "edited"})
    assert verify_chain(head=head)[1].seq == 4  # what it checks, it still checks


def test_a_forged_or_deleted_anchor_or_a_deleted_row_after_it_breaks_the_chain(aged_chain):
    purge("--before", a_month_ago())
    anchor = AuditAnchor.objects.get()

    # Someone with the database but not the secret key moves the anchor to hide event 7.
    AuditEvent.objects.filter(seq=7).delete()
    AuditAnchor.objects.filter(pk=anchor.pk).update(seq=7, hash=aged_chain[6].hash, purged=7)
    assert "anchor's signature does not verify" in assert_verify_names(7)

    # Deleting the anchor instead: the chain then starts at genesis, and seq 1 is missing.
    AuditAnchor.objects.all().delete()
    assert "event missing" in assert_verify_names(1)


def test_an_edit_after_the_anchor_is_still_found(aged_chain):
    purge("--before", a_month_ago())
    AuditEvent.objects.filter(seq=8).update(details={"n": "edited"})
    assert "edited" in assert_verify_names(8)


def test_a_broken_chain_is_not_purged_and_nothing_changes(aged_chain):
    AuditEvent.objects.filter(seq=3).update(details={"n": "edited"})
    with pytest.raises(CommandError, match="not purged: audit chain broken at seq 3"):
        purge("--before", a_month_ago())
    assert AuditEvent.objects.count() == 10 and not AuditAnchor.objects.exists()


def test_an_anchor_signed_with_a_retired_key_verifies_while_it_is_a_fallback(aged_chain, settings):
    purge("--before", a_month_ago())
    old_key = settings.SECRET_KEY
    with override_settings(SECRET_KEY="a-new-key-" + "x" * 50, SECRET_KEY_FALLBACKS=[old_key]):
        assert "intact" in verify_output()
    with override_settings(SECRET_KEY="a-new-key-" + "x" * 50, SECRET_KEY_FALLBACKS=[]):
        assert "signature does not verify" in assert_verify_names(6)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("yesterday", "not a date"),
        ("2026-13-01", "not a date"),
        ("2999-01-01", "in the future"),
    ],
)
def test_a_bad_date_is_refused_and_nothing_changes(aged_chain, value, message):
    with pytest.raises(CommandError, match=message):
        purge("--before", value)
    assert AuditEvent.objects.count() == 10 and not AuditAnchor.objects.exists()


def test_moderators_see_the_anchors_in_the_admin_and_cannot_change_them(aged_chain, client):
    purge("--before", a_month_ago())
    anchor = AuditAnchor.objects.get()
    root = account_services.user_create_root(
        username="rootadmin", password="Corr3ct-horse", email=None, origin=TEST_ORIGIN
    )
    client.force_login(root)
    assert client.get("/admin/audit/auditanchor/").status_code == 200
    assert client.get(admin_url(anchor)).status_code == 200
    client.post(admin_url(anchor), {"seq": "9", "purged": "9"})
    client.post(admin_url(anchor, "delete"), {"post": "yes"})
    assert client.get("/admin/audit/auditanchor/add/").status_code == 403
    assert AuditAnchor.objects.get().seq == 6
    assert "intact" in verify_output()


def test_help_says_what_it_keeps():
    command = load_command_class("apps.audit", "purge_audit_log")
    text = " ".join(command.create_parser("manage.py", "purge_audit_log").format_help().split())
    assert "--before DATE" in text and "signed anchor" in text and "--dry-run" in text
