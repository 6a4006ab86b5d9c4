from django.core.management.base import BaseCommand, CommandError

from apps.core.reencrypt import reencrypt_all


class Command(BaseCommand):
    help = (
        "Rewrite every secret kept at rest (signing keys, queued e-mail, provider tokens) under "
        "the first key of SYNCTV_ENCRYPTION_KEY. Rotate a key by putting the new one first "
        "(NEW,OLD), running this on one node, then removing the old key everywhere."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Count what would change; write nothing.")

    def handle(self, *args, dry_run: bool = False, **options):
        unreadable = 0
        for report in reencrypt_all(dry_run=dry_run):
            verb = "would rewrite" if dry_run else "rewrote"
            self.stdout.write(
                f"{report.column.model}.{report.column.field}: {report.rows} value(s), "
                f"{verb} {report.rewritten}"
            )
            for pk in report.unreadable:
                self.stderr.write(f"  {report.column.model} {pk}: no configured key opens it")
            unreadable += len(report.unreadable)
        if unreadable:
            raise CommandError(f"{unreadable} value(s) could not be decrypted with any configured key")
