"""Outgoing e-mail: one row per message, written in the caller's transaction and sent by a Celery
task after commit (docs/accounts.md, "E-mail").

The row, not the task, is the truth about a message: a task claims the row before talking SMTP
(``queued`` -> ``sending``, one conditional UPDATE), so of two deliveries of the same task only one
talks to the server, and it marks the row ``sent`` once the server accepted the message, so a
retried or re-delivered task never sends a second copy. Every message carries a stable
Message-ID, so the one copy that could ever be repeated (the worker dies between the server's
acceptance and the ``sent`` UPDATE) is recognisable as the same message.

The bodies hold links that act as passwords for an hour (reset) or a day (verification): they are
stored AES-256-GCM encrypted (apps.core.crypto) and erased once the message is sent or given up.
"""

from __future__ import annotations

from django.db import models

from apps.core.ids import new_id


class OutboundEmail(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"  # waiting for (another) attempt at next_attempt_at
        SENDING = "sending", "Sending"  # claimed by a task until claimed_until
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"  # refused, or every attempt failed; last_error says why

    id = models.CharField(primary_key=True, max_length=22, default=new_id, editable=False)
    to = models.EmailField(max_length=254)
    template = models.CharField(max_length=100, help_text="Which message (templates/email/<template>.*).")
    subject = models.CharField(max_length=255)
    message_id = models.CharField(
        max_length=255, blank=True, help_text="The Message-ID header: the same on every attempt."
    )
    # nonce || ciphertext of the text and HTML bodies (apps.core.crypto); emptied once sent or failed.
    text_body = models.BinaryField(default=b"")
    html_body = models.BinaryField(default=b"")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveIntegerField(default=0, help_text="SMTP conversations started.")
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return f"{self.template} to {self.to} ({self.status})"
