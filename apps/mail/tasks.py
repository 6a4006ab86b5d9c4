"""Send queued e-mail (apps.mail.services.email_queue). Thin: the work is in apps.mail.sending."""

from __future__ import annotations

from celery import shared_task

from apps.mail import sending


@shared_task(acks_late=True)
def send_email(email_id: str) -> str:
    return sending.send_queued(email_id)
