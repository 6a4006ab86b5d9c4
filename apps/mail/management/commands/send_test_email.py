from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email
from django.db import transaction

from apps.mail.services import email_queue


class Command(BaseCommand):
    help = (
        "Queue the `test` message (templates/email/test.*) to ADDR and hand it to a worker, as every "
        "message is sent; the outcome shows in the admin (Outgoing e-mail) under the printed id."
    )

    def add_arguments(self, parser):
        parser.add_argument("address", metavar="ADDR", help="where to send the test message")

    def handle(self, *args, address: str, **options):
        address = address.strip()
        try:
            validate_email(address)
        except ValidationError as exc:
            raise CommandError(f"not an e-mail address: {address!r}") from exc
        with transaction.atomic():
            email = email_queue(to=address, template="test", context={})
        email.refresh_from_db()
        self.stdout.write(
            f"queued test message {email.id} to {email.to} (Message-ID {email.message_id}); "
            f"status now: {email.status}"
        )
