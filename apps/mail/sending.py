"""Deliver one queued message over SMTP (EMAIL_URL). The retry policy lives in apps.mail.tasks."""

from __future__ import annotations

from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.utils import timezone

from apps.mail.models import OutboundEmail
from apps.mail.services import email_bodies


def send_queued(email_id: str) -> str:
    """Send the message if it is still queued; returns its status afterwards."""
    with transaction.atomic():
        email = OutboundEmail.objects.select_for_update().filter(pk=email_id).first()
        if email is None or email.status != OutboundEmail.Status.QUEUED:
            return email.status if email else "missing"
        text, html = email_bodies(email)
        message = EmailMultiAlternatives(subject=email.subject, body=text, to=[email.to])
        message.attach_alternative(html, "text/html")
        email.attempts += 1
        message.send()
        email.status = OutboundEmail.Status.SENT
        email.sent_at = timezone.now()
        email.text_body = email.html_body = b""
        email.save(update_fields=["attempts", "status", "sent_at", "text_body", "html_body"])
    return email.status
