"""``manage.py purge_audit_log --before DATE``: remove old audit events and keep the chain
verifiable (docs/security.md, "The audit log")."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from apps.accounts.management.commands._base import OPERATOR
from apps.audit.services import ChainBroken, purge_audit_log


def parse_before(text: str) -> datetime:
    """A date (midnight UTC of that day) or an ISO 8601 date and time (UTC when no offset)."""
    try:
        moment = parse_datetime(text)
        if moment is None and (day := parse_date(text)) is not None:
            moment = datetime.combine(day, time.min)
    except ValueError:
        moment = None
    if moment is None:
        raise CommandError(f"--before: not a date (YYYY-MM-DD) or ISO 8601 date and time: {text!r}")
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, UTC)
    if moment > timezone.now():
        raise CommandError("--before is in the future: that would purge events not written yet")
    return moment


class Command(BaseCommand):
    help = (
        "Remove the audit events created before DATE. The chain is checked first (a broken chain "
        "is not purged); a signed anchor of the last removed event is kept so that audit_verify "
        "still checks the rest; the purge itself is audited."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--before",
            required=True,
            metavar="DATE",
            help="YYYY-MM-DD (midnight UTC) or an ISO 8601 date and time",
        )
        parser.add_argument("--dry-run", action="store_true", help="say what would go; change nothing")

    def handle(self, *args: Any, before: str, dry_run: bool, **options: Any) -> None:
        moment = parse_before(before)
        try:
            result = purge_audit_log(before=moment, origin=OPERATOR, dry_run=dry_run)
        except ChainBroken as exc:
            raise CommandError(f"not purged: {exc}") from exc
        if result.up_to_seq is None:
            self.stdout.write(f"nothing to purge: no event before {moment.isoformat()}")
        elif dry_run:
            self.stdout.write(f"would purge {result.purged} event(s), up to seq {result.up_to_seq}")
        else:
            self.stdout.write(
                f"purged {result.purged} event(s), up to seq {result.up_to_seq}; "
                "the anchor is kept and the chain verifies from there"
            )
