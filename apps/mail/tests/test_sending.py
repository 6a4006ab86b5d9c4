"""Delivery in this process, over SMTP to a real server on loopback (tests/mailserver.py)."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.core import crypto
from apps.mail import sending
from apps.mail.models import OutboundEmail
from apps.mail.services import email_bodies
from apps.mail.tasks import send_email
from apps.mail.tests.helpers import TEST_BODY_SENTENCE, no_retry, queue_test
from tests.procs import free_port

pytestmark = pytest.mark.django_db
Status = OutboundEmail.Status


def test_a_queued_message_is_sent_once_with_its_message_id(smtp_backend):
    email = queue_test()
    assert sending.send_queued(email.id, retry_after=no_retry).status == Status.SENT
    (delivered,) = smtp_backend.wait_for(1)
    assert delivered.rcpt_tos == ["carol@example.com"]
    assert delivered.message_id == email.message_id
    assert email.message_id.startswith(f"<{email.id}@")
    assert TEST_BODY_SENTENCE in delivered.text and TEST_BODY_SENTENCE in delivered.html
    assert delivered.message["Subject"] == "SyncTV test message"
    email.refresh_from_db()
    assert (email.status, email.attempts, email.claimed_until) == (Status.SENT, 1, None)
    assert email.sent_at is not None


def test_a_redelivered_task_after_success_sends_nothing(smtp_backend):
    email = queue_test()
    assert sending.send_queued(email.id, retry_after=no_retry).status == Status.SENT
    # The same task again (acks_late: a worker lost before the ack), through the task itself.
    assert send_email.apply(args=[email.id]).get() == Status.SENT
    assert sending.send_queued(email.id, retry_after=no_retry).status == Status.SENT
    assert len(smtp_backend.delivered) == 1
    email.refresh_from_db()
    assert email.attempts == 1


def test_bodies_are_stored_encrypted_and_erased_once_sent(smtp_backend):
    email = queue_test()
    email.refresh_from_db()
    stored = bytes(email.text_body) + bytes(email.html_body)
    assert stored and TEST_BODY_SENTENCE.encode() not in stored
    text, html = email_bodies(email)
    assert TEST_BODY_SENTENCE in text and TEST_BODY_SENTENCE in html
    # Bound to their row: another row's ciphertext does not decrypt as this one's.
    other = queue_test("dave@example.com")
    other.text_body = email.text_body
    with pytest.raises(crypto.DecryptionError):
        email_bodies(other)

    sending.send_queued(email.id, retry_after=no_retry)
    email.refresh_from_db()
    assert bytes(email.text_body) == b"" and bytes(email.html_body) == b""


def test_a_transient_failure_is_retried_with_the_same_message_id(smtp_backend):
    smtp_backend.fail_next(2)
    email = queue_test()
    for attempt in (1, 2):
        result = sending.send_queued(email.id, retry_after=lambda n: 7.0 * n)
        assert result.status == Status.QUEUED
        assert result.retry_in == 7.0 * attempt
        assert result.error == "SMTPDataError: 451 4.3.0 Temporary failure, please try again later"
        email.refresh_from_db()
        assert (email.status, email.attempts, email.last_error) == (Status.QUEUED, attempt, result.error)
        assert email.next_attempt_at > timezone.now() + timedelta(seconds=5)
        assert bytes(email.text_body)  # still needed for the next attempt
    assert sending.send_queued(email.id, retry_after=no_retry).status == Status.SENT
    assert len(smtp_backend.delivered) == 1
    ids = {m.message_id for m in smtp_backend.deferred + smtp_backend.delivered}
    assert ids == {email.message_id}
    email.refresh_from_db()
    assert (email.status, email.attempts) == (Status.SENT, 3)


def test_a_message_that_exhausted_its_attempts_is_failed(smtp_backend, settings):
    settings.EMAIL_MAX_ATTEMPTS = 3
    smtp_backend.fail_next(10)
    email = queue_test()
    statuses = [sending.send_queued(email.id, retry_after=no_retry).status for _ in range(4)]
    assert statuses == [Status.QUEUED, Status.QUEUED, Status.FAILED, Status.FAILED]
    email.refresh_from_db()
    assert (email.status, email.attempts) == (Status.FAILED, 3)
    assert email.last_error.startswith("SMTPDataError: 451")
    assert bytes(email.text_body) == b"" and bytes(email.html_body) == b""
    assert smtp_backend.delivered == [] and len(smtp_backend.deferred) == 3


def test_a_permanently_refused_address_fails_at_once(smtp_backend):
    smtp_backend.refuse("nobody@example.com")
    email = queue_test("nobody@example.com")
    result = sending.send_queued(email.id, retry_after=no_retry)
    assert (result.status, result.retry_in) == (Status.FAILED, None)
    email.refresh_from_db()
    assert email.status == Status.FAILED and email.attempts == 1
    assert email.last_error == "SMTPRecipientsRefused: 550 5.1.1 Recipient address rejected: no such user"
    assert smtp_backend.delivered == []


def test_an_unreachable_server_is_a_transient_failure(settings, smtp_backend):
    settings.EMAIL_PORT = free_port()  # nothing listens there
    email = queue_test()
    result = sending.send_queued(email.id, retry_after=no_retry)
    assert result.status == Status.QUEUED and result.retry_in == 0.0
    assert result.error.startswith("ConnectionRefusedError")


def test_an_eager_task_tries_once_and_does_not_hold_the_request(smtp_backend):
    """Without a broker (the embedded default) the task runs inside the request: no retry loop."""
    smtp_backend.fail_next(1)
    email = queue_test()
    assert send_email.apply(args=[email.id]).get() == Status.FAILED
    email.refresh_from_db()
    assert (email.status, email.attempts) == (Status.FAILED, 1)


def test_a_message_claimed_by_a_live_task_is_left_alone(smtp_backend):
    """A concurrent duplicate delivery of the task finds the claim and does nothing."""
    email = queue_test()
    OutboundEmail.objects.filter(pk=email.pk).update(
        status=Status.SENDING, attempts=1, claimed_until=timezone.now() + timedelta(minutes=5)
    )
    assert sending.send_queued(email.id, retry_after=no_retry).status == Status.SENDING
    assert smtp_backend.delivered == []
    email.refresh_from_db()
    assert email.attempts == 1


def test_a_claim_whose_task_died_expires_and_the_message_goes_out(smtp_backend):
    email = queue_test()
    OutboundEmail.objects.filter(pk=email.pk).update(
        status=Status.SENDING, attempts=1, claimed_until=timezone.now() - timedelta(seconds=1)
    )
    assert sending.send_queued(email.id, retry_after=no_retry).status == Status.SENT
    (delivered,) = smtp_backend.delivered
    assert delivered.message_id == email.message_id  # a duplicate, if the first did go out, shows
    email.refresh_from_db()
    assert email.attempts == 2


def test_an_unknown_id_is_missing():
    assert sending.send_queued("no-such-id", retry_after=no_retry).status == "missing"


def test_bodies_that_no_longer_decrypt_fail_the_message(smtp_backend):
    email = queue_test()
    OutboundEmail.objects.filter(pk=email.pk).update(text_body=b"x" * 40)
    result = sending.send_queued(email.id, retry_after=no_retry)
    assert result.status == Status.FAILED and "decrypted" in result.error
    assert smtp_backend.delivered == []


def test_no_body_reaches_a_log_line(smtp_backend, caplog):
    smtp_backend.fail_next(1)
    email = queue_test()
    with caplog.at_level(logging.DEBUG):
        sending.send_queued(email.id, retry_after=no_retry)
        sending.send_queued(email.id, retry_after=no_retry)
    assert len(smtp_backend.delivered) == 1
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert TEST_BODY_SENTENCE not in logged
