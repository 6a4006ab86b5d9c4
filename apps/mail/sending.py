"""Deliver one queued message over SMTP (EMAIL_URL), never twice once the server accepted it.

docs/accounts.md ("E-mail") explains the choice. In short: no database lock or transaction is held
while talking SMTP. A task first *claims* the row with one conditional UPDATE (``queued`` ->
``sending``, ``claimed_until`` = now + CLAIM); a concurrent duplicate of the task finds it claimed
and does nothing. After the server's 250 the row becomes ``sent`` (bodies erased) in one UPDATE.
The only window left is between that 250 and that UPDATE (the worker killed, the database gone):
the claim then expires and the message is sent again, with the same Message-ID.

The retry policy (when to try again) lives in apps.mail.tasks; this module says what happened.
"""

from __future__ import annotations

import smtplib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db.models import F, Q
from django.utils import timezone

from apps.core.crypto import DecryptionError
from apps.mail.models import OutboundEmail
from apps.mail.services import email_bodies

# Longer than the task's time limit (apps.mail.tasks.TIME_LIMIT): a live attempt never loses its
# claim to another task.
CLAIM = timedelta(minutes=10)
Status = OutboundEmail.Status


@dataclass(frozen=True)
class SendResult:
    status: str  # the row's status afterwards, or "missing"
    retry_in: float | None = None  # transient failure: try again after this many seconds
    error: str = ""


def send_queued(email_id: str, *, retry_after: Callable[[int], float] | None) -> SendResult:
    """Send the message if it is queued (or its claim expired).

    ``retry_after(attempts)``: seconds to wait after a transient failure of attempt number
    ``attempts``; None when the caller cannot try again (an eager task), so such a failure ends
    ``failed``.
    """
    now = timezone.now()
    claimed = (
        OutboundEmail.objects.filter(pk=email_id)
        .filter(Q(status=Status.QUEUED) | Q(status=Status.SENDING, claimed_until__lt=now))
        .update(status=Status.SENDING, attempts=F("attempts") + 1, claimed_until=now + CLAIM)
    )
    email = OutboundEmail.objects.filter(pk=email_id).first()
    if email is None:
        return SendResult("missing")
    if not claimed:  # sent, failed, or another task holds it right now
        return SendResult(email.status)

    try:
        message = _message(email)
    except DecryptionError:
        return _give_up(email, "the bodies cannot be decrypted (was SYNCTV_ENCRYPTION_KEY changed?)")
    try:
        message.send()
    except (smtplib.SMTPException, OSError) as exc:
        error = describe(exc)
        if is_permanent(exc) or retry_after is None or email.attempts >= settings.EMAIL_MAX_ATTEMPTS:
            return _give_up(email, error)
        retry_delay = retry_after(email.attempts)
        OutboundEmail.objects.filter(pk=email.pk, status=Status.SENDING).update(
            status=Status.QUEUED,
            claimed_until=None,
            last_error=error,
            next_attempt_at=timezone.now() + timedelta(seconds=retry_delay),
        )
        return SendResult(Status.QUEUED, retry_in=retry_delay, error=error)
    except Exception as exc:
        # Not a delivery problem (a bug, a malformed header): no attempt will do better.
        _give_up(email, f"{type(exc).__name__} while sending")
        raise
    OutboundEmail.objects.filter(pk=email.pk, status=Status.SENDING).update(
        status=Status.SENT, sent_at=timezone.now(), claimed_until=None, text_body=b"", html_body=b""
    )
    return SendResult(Status.SENT)


def _message(email: OutboundEmail) -> EmailMultiAlternatives:
    text, html = email_bodies(email)
    message = EmailMultiAlternatives(
        subject=email.subject,
        body=text,
        to=[email.to],
        headers={"Message-ID": email.message_id} if email.message_id else None,
    )
    message.attach_alternative(html, "text/html")
    return message


def _give_up(email: OutboundEmail, error: str) -> SendResult:
    # The bodies go too: nothing will send them, and they hold keys.
    OutboundEmail.objects.filter(pk=email.pk).update(
        status=Status.FAILED, claimed_until=None, last_error=error[:500], text_body=b"", html_body=b""
    )
    return SendResult(Status.FAILED, error=error)


def is_permanent(exc: BaseException) -> bool:
    """A 5xx refusal of the recipient or of the message itself: asking again gets the same answer.
    Other 5xx (authentication, a sender the server does not like) are configuration an operator
    can fix within the retry window, and connection errors and 4xx are transient."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        return bool(codes) and all(500 <= code < 600 for code in codes)
    if isinstance(exc, smtplib.SMTPDataError):
        return 500 <= exc.smtp_code < 600
    return False


def describe(exc: BaseException) -> str:
    """What went wrong, for ``last_error`` and the worker's log: the exception's class and the
    server's reply code and text, or the socket error. Built from those fields alone, never from
    the message: no body, so no key or link, can end up in it."""
    name = type(exc).__name__
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        replies = {f"{code} {_text(reply)}" for code, reply in exc.recipients.values()}
        return f"{name}: {'; '.join(sorted(replies))}"[:500]
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{name}: {exc.smtp_code} {_text(exc.smtp_error)}"[:500]
    if isinstance(exc, OSError) and exc.strerror:
        return f"{name}: {exc.strerror}"[:500]
    return f"{name}: {exc}"[:500]


def _text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())[:200]
