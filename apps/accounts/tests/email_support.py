"""Reading the mail the e-mail tests caused: the queued rows (apps.mail, bodies decrypted) and,
once a message was sent (the task runs after commit), Django's test outbox."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

from django.core import mail

from apps.mail.models import OutboundEmail
from apps.mail.services import email_bodies

VERIFY = "/api/v1/auth/email/verify"
RESEND = "/api/v1/auth/email/resend"
RESET = "/api/v1/auth/password/reset"
RESET_CONFIRM = "/api/v1/auth/password/reset/confirm"
REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
ME = "/api/v1/users/me"
NEW_PASSWORD = "N3w-passw0rd!"

_LINK = re.compile(r"https?://\S+?/(verify-email|reset-password)/\?key=(\S+)")


def texts(to: str, template: str | None = None) -> list[str]:
    """The plain-text bodies of every message to ``to`` (optionally of one template), oldest first."""
    rows = OutboundEmail.objects.filter(to=to).order_by("created_at")
    if template:
        rows = rows.filter(template=template)
    found = [email_bodies(row)[0] for row in rows if bytes(row.text_body)]
    found += [m.body for m in mail.outbox if to in m.to and m.body not in found]
    return found


def templates_sent(to: str) -> list[str]:
    return list(OutboundEmail.objects.filter(to=to).order_by("created_at").values_list("template", flat=True))


def key_from(text: str, page: str) -> str:
    """The key of the first ``page`` link (verify-email or reset-password) in a mail's text."""
    for match in _LINK.finditer(text):
        if match.group(1) == page:
            url = match.group(0)
            return parse_qs(urlsplit(url).query)["key"][0]
    raise AssertionError(f"no {page} link in {text!r}")


def last_key(to: str, page: str) -> str:
    template = {"verify-email": "verify_email", "reset-password": "reset_password"}[page]
    found = texts(to, template)
    assert found, f"no {template} mail to {to}: {templates_sent(to)}"
    return key_from(found[-1], page)
