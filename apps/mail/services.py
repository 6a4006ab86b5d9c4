"""Queue an e-mail: render it, store it encrypted, send it from a Celery task after commit."""

from __future__ import annotations

from datetime import timedelta
from email.utils import parseaddr
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.utils import timezone

from apps.core import crypto
from apps.mail.models import OutboundEmail


def _associated(email_id: str) -> bytes:
    # A body decrypts only as the body of its own row: swapping ciphertexts between rows fails.
    return f"mail:{email_id}".encode()


def email_queue(*, to: str, template: str, context: dict[str, Any]) -> OutboundEmail:
    """Render ``templates/email/<template>_subject.txt``, ``.txt`` and ``.html`` with ``context``
    (plus ``public_url``) and queue the message; the task is sent when the caller's transaction
    commits, so a rolled-back change sends nothing."""
    context = {"public_url": settings.PUBLIC_URL.rstrip("/"), **context}
    subject = " ".join(render_to_string(f"email/{template}_subject.txt", context).split())
    text = render_to_string(f"email/{template}.txt", context)
    html = render_to_string(f"email/{template}.html", context)
    email = OutboundEmail(to=to, template=template, subject=subject[:255], next_attempt_at=timezone.now())
    email.message_id = _message_id(email.id)
    email.text_body = crypto.encrypt(text.encode(), associated_data=_associated(email.id))
    email.html_body = crypto.encrypt(html.encode(), associated_data=_associated(email.id))
    email.save(force_insert=True)

    from apps.mail.tasks import send_email  # the task module imports this one

    # robust: a broker that cannot take the task must not fail the caller's request; the row is
    # still queued and the beat job `resend_stalled` hands it to a worker later.
    transaction.on_commit(lambda: send_email.delay(email.id), robust=True)
    return email


def _message_id(email_id: str) -> str:
    """The Message-ID header, fixed when the message is queued so every attempt carries the same
    one: a duplicate (docs/accounts.md, "E-mail") is recognisable, and clients fold it away."""
    _, address = parseaddr(settings.DEFAULT_FROM_EMAIL)
    domain = address.rpartition("@")[2] or "localhost"
    return f"<{email_id}@{domain}>"


def email_bodies(email: OutboundEmail) -> tuple[str, str]:
    """The text and HTML bodies of a queued message."""
    associated = _associated(email.id)
    text = crypto.decrypt(bytes(email.text_body), associated_data=associated).decode()
    html = crypto.decrypt(bytes(email.html_body), associated_data=associated).decode()
    return text, html


# A queued message whose attempt is this late has lost its task (a broker that refused it, a
# worker killed mid-task): resend_stalled hands it to a worker again.
STALLED_AFTER = timedelta(minutes=5)


def emails_stalled(*, limit: int = 500) -> list[str]:
    """Ids of messages no task is working on: queued and overdue, or claimed by a task that died.
    Each one's next_attempt_at moves to now, so a message is handed out at most once per
    STALLED_AFTER while no worker runs."""
    now = timezone.now()
    ids = list(
        OutboundEmail.objects.filter(
            Q(status=OutboundEmail.Status.QUEUED, next_attempt_at__lt=now - STALLED_AFTER)
            | Q(status=OutboundEmail.Status.SENDING, claimed_until__lt=now)
        )
        .order_by("created_at")
        .values_list("id", flat=True)[:limit]
    )
    OutboundEmail.objects.filter(pk__in=ids, status=OutboundEmail.Status.QUEUED).update(next_attempt_at=now)
    return ids


def emails_purge_old(*, days: int) -> int:
    """Delete sent and failed messages older than ``days``; returns how many."""
    cutoff = timezone.now() - timedelta(days=days)
    deleted, _ = OutboundEmail.objects.filter(
        status__in=[OutboundEmail.Status.SENT, OutboundEmail.Status.FAILED], created_at__lt=cutoff
    ).delete()
    return deleted
