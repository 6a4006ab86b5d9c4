"""Queue an e-mail: render it, store it encrypted, send it from a Celery task after commit."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.template.loader import render_to_string

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
    email = OutboundEmail(to=to, template=template, subject=subject[:255])
    email.text_body = crypto.encrypt(text.encode(), associated_data=_associated(email.id))
    email.html_body = crypto.encrypt(html.encode(), associated_data=_associated(email.id))
    email.save(force_insert=True)

    from apps.mail.tasks import send_email  # the task module imports this one

    transaction.on_commit(lambda: send_email.delay(email.id))
    return email


def email_bodies(email: OutboundEmail) -> tuple[str, str]:
    """The text and HTML bodies of a queued message."""
    associated = _associated(email.id)
    text = crypto.decrypt(bytes(email.text_body), associated_data=associated).decode()
    html = crypto.decrypt(bytes(email.html_body), associated_data=associated).decode()
    return text, html
