"""The retry schedule, the beat jobs, the admin and the send_test_email command."""

from __future__ import annotations

import subprocess
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from apps.accounts.models import User
from apps.accounts.tests.factories import make_user
from apps.mail import tasks
from apps.mail.models import OutboundEmail
from apps.mail.services import STALLED_AFTER, emails_purge_old, emails_stalled
from apps.mail.tests.helpers import TEST_BODY_SENTENCE, queue_test
from tests.procs import ROOT, VENV_BIN, base_env

Status = OutboundEmail.Status


def test_retry_delays_grow_with_jitter_first_within_ten_seconds(settings):
    settings.EMAIL_RETRY_DELAY = 8.0
    for _ in range(200):
        first = tasks.retry_delay(1)
        assert 4.0 <= first <= 8.0
    ceilings = [8.0, 24.0, 72.0, 216.0, 648.0, 1800.0, 1800.0]
    for attempt, ceiling in enumerate(ceilings, start=1):
        samples = [tasks.retry_delay(attempt) for _ in range(200)]
        assert all(ceiling / 2 <= s <= ceiling for s in samples)
        assert len(set(samples)) > 100  # jittered, not one fixed value
    # 8 attempts = 7 waits: between ~38 min and ~76 min, about an hour on average.
    assert 2200 < sum(ceilings) / 2 and sum(ceilings) < 4600


@pytest.mark.django_db
def test_purge_deletes_old_sent_and_failed_messages_only():
    old = timezone.now() - timedelta(days=31)
    rows = {status: queue_test() for status in (Status.SENT, Status.FAILED, Status.QUEUED)}
    for status, row in rows.items():
        OutboundEmail.objects.filter(pk=row.pk).update(status=status, created_at=old)
    recent = queue_test()
    OutboundEmail.objects.filter(pk=recent.pk).update(status=Status.SENT)

    assert emails_purge_old(days=30) == 2
    left = set(OutboundEmail.objects.values_list("id", flat=True))
    assert left == {rows[Status.QUEUED].id, recent.id}


@pytest.mark.django_db
def test_the_purge_task_keeps_email_keep_days(settings):
    settings.EMAIL_KEEP_DAYS = 2
    row = queue_test()
    OutboundEmail.objects.filter(pk=row.pk).update(
        status=Status.SENT, created_at=timezone.now() - timedelta(days=3)
    )
    assert tasks.purge_old_emails.apply().get() == 1


@pytest.mark.django_db
def test_stalled_messages_are_the_overdue_and_the_abandoned():
    now = timezone.now()
    fresh, overdue, abandoned, working, sent = (queue_test() for _ in range(5))
    OutboundEmail.objects.filter(pk=overdue.pk).update(
        next_attempt_at=now - STALLED_AFTER - timedelta(seconds=5)
    )
    OutboundEmail.objects.filter(pk=abandoned.pk).update(
        status=Status.SENDING, claimed_until=now - timedelta(seconds=1)
    )
    OutboundEmail.objects.filter(pk=working.pk).update(
        status=Status.SENDING, claimed_until=now + timedelta(minutes=5)
    )
    OutboundEmail.objects.filter(pk=sent.pk).update(
        status=Status.SENT, next_attempt_at=now - timedelta(hours=1)
    )

    assert set(emails_stalled()) == {overdue.id, abandoned.id}
    # Handed out once per STALLED_AFTER, not on every beat tick.
    assert emails_stalled() == [abandoned.id]
    assert fresh.id not in emails_stalled()


@pytest.mark.django_db
def test_the_admin_lists_messages_read_only_and_never_shows_bodies(client):
    user, _ = make_user("mailadmin", email="mailadmin@example.com")
    User.objects.filter(pk=user.pk).update(role="admin")
    client.force_login(User.objects.get(pk=user.pk))
    email = queue_test("erin@example.com")

    listing = client.get("/admin/mail/outboundemail/")
    assert listing.status_code == 200
    assert "erin@example.com" in listing.text and "SyncTV test message" in listing.text
    detail = client.get(f"/admin/mail/outboundemail/{email.pk}/change/")
    assert detail.status_code == 200
    assert email.message_id.strip("<>") in detail.text
    for page in (listing, detail):
        assert TEST_BODY_SENTENCE not in page.text and "text_body" not in page.text
    assert client.get("/admin/mail/outboundemail/add/").status_code == 403
    assert client.post(f"/admin/mail/outboundemail/{email.pk}/delete/", {"post": "yes"}).status_code == 403
    assert (
        client.post(f"/admin/mail/outboundemail/{email.pk}/change/", {"to": "x@example.com"}).status_code
        == 403
    )
    assert OutboundEmail.objects.get(pk=email.pk).to == "erin@example.com"


@pytest.mark.django_db
def test_send_test_email_queues_the_test_template(capsys):
    call_command("send_test_email", "frank@example.com")
    out = capsys.readouterr().out
    row = OutboundEmail.objects.get(to="frank@example.com")
    assert row.template == "test"
    assert f"queued test message {row.id} to frank@example.com" in out
    assert row.message_id in out


@pytest.mark.django_db
@pytest.mark.parametrize("address", ["not-an-address", "a@", "", "x@example.com\nBcc: y@example.com"])
def test_send_test_email_refuses_a_bad_address(address):
    with pytest.raises(CommandError, match="not an e-mail address"):
        call_command("send_test_email", address)
    assert not OutboundEmail.objects.exists()


def test_send_test_email_from_the_command_line(tmp_path):
    env = base_env(SYNCTV_VAR_DIR=str(tmp_path))
    python = str(VENV_BIN / "python")
    helped = subprocess.run(
        [python, "manage.py", "send_test_email", "--help"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert helped.returncode == 0 and "ADDR" in helped.stdout and "test" in helped.stdout
    bad = subprocess.run(
        [python, "manage.py", "send_test_email", "nope"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert bad.returncode != 0
    assert "not an e-mail address" in bad.stderr
