"""Send queued e-mail (apps.mail.services.email_queue) and keep the queue moving. Thin: what
happens to a message is decided in apps.mail.sending; when to try again is decided here."""

from __future__ import annotations

import random

from celery import Task, shared_task
from django.conf import settings

from apps.mail import sending, services

# Seconds a send may take before the worker kills it: well under sending.CLAIM, so a claim never
# expires under a live attempt.
TIME_LIMIT = 300
RETRY_FACTOR = 3
RETRY_CAP = 1800.0  # 30 min; also below the Redis broker's 1 h visibility timeout


class DeliveryDeferred(Exception):
    """A transient SMTP failure; its text is sending.describe()'s (no body, no key)."""


def retry_delay(attempts: int) -> float:
    """Seconds to wait after attempt number ``attempts`` failed: exponential (EMAIL_RETRY_DELAY,
    then 3 times longer each time, at most 30 min) with "equal jitter", a random point in the
    second half, so messages that failed together (a server outage) do not come back together.
    With the defaults the first retry is within 8 s and 8 attempts span about an hour."""
    ceiling = min(RETRY_CAP, settings.EMAIL_RETRY_DELAY * RETRY_FACTOR ** max(0, attempts - 1))
    return random.uniform(ceiling / 2, ceiling)


@shared_task(bind=True, acks_late=True, time_limit=TIME_LIMIT, max_retries=None)
def send_email(self: Task, email_id: str) -> str:
    # Only the row's id travels through the broker and into celery's log lines; the bodies stay
    # encrypted in the database. An eager task (no broker: the embedded default) cannot wait for
    # a retry without holding up the request that queued it, so it tries once.
    result = sending.send_queued(email_id, retry_after=None if self.request.is_eager else retry_delay)
    if result.retry_in is not None:
        raise self.retry(countdown=result.retry_in, exc=DeliveryDeferred(result.error))
    return result.status


@shared_task
def resend_stalled() -> int:
    """Hand messages whose task was lost to a worker again (beat, every 5 minutes)."""
    ids = services.emails_stalled()
    for email_id in ids:
        send_email.delay(email_id)
    return len(ids)


@shared_task
def purge_old_emails() -> int:
    """Delete sent and failed messages after EMAIL_KEEP_DAYS (beat, daily)."""
    return services.emails_purge_old(days=settings.EMAIL_KEEP_DAYS)
