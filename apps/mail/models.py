"""Outgoing e-mail: one row per message, written in the caller's transaction and sent by a Celery
task after commit (docs/accounts.md, "E-mail").

The row is what makes sending idempotent: the task sends only a message still ``queued`` and marks
it ``sent`` once the SMTP server accepted it, so a retried or re-delivered task never sends a
second copy. The bodies hold links that act as passwords for an hour (reset) or a day
(verification): they are stored AES-256-GCM encrypted (apps.core.crypto) and erased once sent.
"""

from __future__ import annotations

from django.db import models

from apps.core.ids import new_id


class OutboundEmail(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"  # every attempt failed; last_error says why

    id = models.CharField(primary_key=True, max_length=22, default=new_id, editable=False)
    to = models.EmailField(max_length=254)
    template = models.CharField(max_length=100, help_text="Which message (templates/email/<template>.*).")
    subject = models.CharField(max_length=255)
    # nonce || ciphertext of the text and HTML bodies (apps.core.crypto); emptied once sent.
    text_body = models.BinaryField(default=b"")
    html_body = models.BinaryField(default=b"")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return f"{self.template} to {self.to} ({self.status})"
