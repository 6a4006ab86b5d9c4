# ruff: noqa: F811
"""E-mail through a real Celery worker (the Procfile's `worker`, Redis broker, the test database)
and a real SMTP server on loopback (aiosmtpd): retries, idempotency, refusals, what the worker
logs, and the verification and reset links end to end (docs/accounts.md, "E-mail")."""

from __future__ import annotations

import time
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.core import signing
from django.db import transaction

from apps.accounts.tests.email_support import (
    LOGIN,
    ME,
    NEW_PASSWORD,
    REGISTER,
    RESET,
    RESET_CONFIRM,
    VERIFY,
    key_from,
)
from apps.accounts.tests.factories import PASSWORD
from apps.mail.models import OutboundEmail
from apps.mail.services import email_queue
from apps.mail.tasks import send_email
from apps.mail.tests.helpers import TEST_BODY_SENTENCE

# Imported to register them as fixtures here; the tests take them as parameters.
from tests.mailserver import celery_worker, smtp_server  # noqa: F401
from tests.procs import run
from tests.secretscan import find_secrets

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]
Status = OutboundEmail.Status


def queue(to: str = "carol@example.com") -> OutboundEmail:
    with transaction.atomic():  # the task is sent when this commits
        return email_queue(to=to, template="test", context={})


def wait_status(email_id: str, status: str, *, worker, timeout: float = 30) -> OutboundEmail:
    deadline = time.monotonic() + timeout
    while True:
        row = OutboundEmail.objects.get(pk=email_id)
        if row.status == status:
            return row
        assert time.monotonic() < deadline, (
            f"{row.status} ({row.last_error}) after {timeout}s:\n{worker.output()[-3000:]}"
        )
        time.sleep(0.2)


def test_an_smtp_server_failing_twice_still_gets_exactly_one_message(celery_worker, smtp_server):
    smtp_server.fail_next(2)
    email = queue()
    row = wait_status(email.id, Status.SENT, worker=celery_worker)
    (delivered,) = smtp_server.wait_for(1)
    assert len(smtp_server.deferred) == 2
    assert {m.message_id for m in smtp_server.deferred} == {delivered.message_id} == {email.message_id}
    assert TEST_BODY_SENTENCE in delivered.text
    assert (row.attempts, bytes(row.text_body), bytes(row.html_body)) == (3, b"", b"")
    assert row.last_error.startswith("SMTPDataError: 451")
    # The worker retried (celery logs the deferral) and logged no body.
    celery_worker.wait_log("retry: Retry in", count=2)
    time.sleep(1)
    assert len(smtp_server.delivered) == 1
    assert TEST_BODY_SENTENCE not in celery_worker.output()


def test_a_task_delivered_again_after_success_sends_nothing(celery_worker, smtp_server):
    email = queue()
    wait_status(email.id, Status.SENT, worker=celery_worker)
    for _ in range(2):
        send_email.delay(email.id)
    celery_worker.wait_log("succeeded in", count=3)
    assert len(smtp_server.wait_for(1)) == 1
    assert OutboundEmail.objects.get(pk=email.id).attempts == 1


def test_concurrent_deliveries_of_one_task_send_one_copy(celery_worker, smtp_server):
    """Duplicates arriving together (the worker runs two at once): one claims, the rest do nothing."""
    with transaction.atomic():
        email = email_queue(to="heidi@example.com", template="test", context={})
        for _ in range(3):
            transaction.on_commit(lambda: send_email.delay(email.id))
    wait_status(email.id, Status.SENT, worker=celery_worker)
    celery_worker.wait_log("succeeded in", count=4)
    assert len(smtp_server.wait_for(1)) == 1
    assert OutboundEmail.objects.get(pk=email.id).attempts == 1


def test_send_test_email_goes_out_through_the_worker(celery_worker, smtp_server):
    done = run("python manage.py send_test_email ivan@example.com", env=celery_worker.env)
    assert done.returncode == 0, done.stdout + done.stderr
    row = OutboundEmail.objects.get(to="ivan@example.com")
    assert f"queued test message {row.id} to ivan@example.com" in done.stdout
    (delivered,) = smtp_server.wait_for(1)
    assert delivered.message_id == row.message_id
    assert wait_status(row.id, Status.SENT, worker=celery_worker).attempts == 1


def test_a_permanently_refused_address_ends_failed_without_retries(celery_worker, smtp_server):
    smtp_server.refuse("nobody@example.com")
    email = queue("nobody@example.com")
    row = wait_status(email.id, Status.FAILED, worker=celery_worker)
    assert row.attempts == 1
    assert row.last_error.startswith("SMTPRecipientsRefused: 550")
    assert bytes(row.text_body) == b""
    assert "retry: Retry in" not in celery_worker.output()
    assert smtp_server.delivered == []


def test_verification_and_reset_links_work_once_and_expire_on_time(
    celery_worker, smtp_server, api, monkeypatch
):
    address = "grace@example.com"
    r = api.post(REGISTER, {"username": "grace", "password": PASSWORD, "email": address}, format="json")
    assert r.status_code in (201, 202), r.content
    (verification,) = smtp_server.wait_for(1)
    assert verification.rcpt_tos == [address]
    verify_key = key_from(verification.text, "verify-email")

    # Expiry: the key is signed with its time; the check reads django.core.signing's clock.
    signed_at = time.time()
    monkeypatch.setattr(signing, "time", SimpleNamespace(time=lambda: signed_at + 24 * 3600 + 5))
    assert api.post(VERIFY, {"key": verify_key}, format="json").status_code == 400
    monkeypatch.setattr(signing, "time", SimpleNamespace(time=lambda: signed_at + 24 * 3600 - 60))
    assert api.post(VERIFY, {"key": verify_key}, format="json").status_code == 200
    monkeypatch.undo()
    again = api.post(VERIFY, {"key": verify_key}, format="json")
    assert again.status_code == 400 and again.json()["error"]["code"] == "invalid"
    access = api.post(LOGIN, {"username": "grace", "password": PASSWORD}, format="json").json()["access"]
    me = api.get(ME, HTTP_AUTHORIZATION=f"Bearer {access}")
    assert me.json()["email_verified"] is True

    assert api.post(RESET, {"email": address}, format="json").status_code == 202
    reset = smtp_server.wait_for(2)[1]
    reset_key = key_from(reset.text, "reset-password")
    assert reset.message_id != verification.message_id

    real_now = PasswordResetTokenGenerator._now
    monkeypatch.setattr(
        PasswordResetTokenGenerator, "_now", lambda self: real_now(self) + timedelta(seconds=3600 + 5)
    )
    late = api.post(RESET_CONFIRM, {"key": reset_key, "password": NEW_PASSWORD}, format="json")
    assert late.status_code == 400
    monkeypatch.undo()
    used = api.post(RESET_CONFIRM, {"key": reset_key, "password": NEW_PASSWORD}, format="json")
    assert used.status_code == 200, used.content
    twice = api.post(RESET_CONFIRM, {"key": reset_key, "password": "An0ther-passw0rd"}, format="json")
    assert twice.status_code == 400 and twice.json()["error"]["code"] == "invalid"
    assert api.post(LOGIN, {"username": "grace", "password": NEW_PASSWORD}, format="json").status_code == 200
    assert api.get(ME, HTTP_AUTHORIZATION=f"Bearer {access}").status_code == 401  # the reset ended it

    # Exactly the two messages, and neither key nor link in anything the worker logged.
    time.sleep(1)
    assert len(smtp_server.delivered) == 2
    log = celery_worker.output()
    assert "succeeded in" in log
    for secret in (verify_key, reset_key, "verify-email/?key=", "reset-password/?key="):
        assert secret not in log
    assert find_secrets(log.splitlines()) == []
