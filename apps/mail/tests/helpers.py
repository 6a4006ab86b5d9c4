from __future__ import annotations

from apps.mail.models import OutboundEmail
from apps.mail.services import email_queue

# A sentence of templates/email/test.txt: if it shows up anywhere but the delivered message, a body leaked.
TEST_BODY_SENTENCE = "outgoing e-mail works"


def queue_test(to: str = "carol@example.com") -> OutboundEmail:
    return email_queue(to=to, template="test", context={})


def no_retry(attempts: int) -> float:
    return 0.0
