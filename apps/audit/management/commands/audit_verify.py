from django.core.management.base import BaseCommand, CommandError

from apps.audit.chain import verify_chain


class Command(BaseCommand):
    help = "Check the audit log's hash chain; report the first broken link (exit 1) or say it is intact."

    def handle(self, *args, **options):
        checked, broken = verify_chain()
        if broken is not None:
            raise CommandError(f"{broken} ({checked} event(s) before it are intact)")
        self.stdout.write(f"audit chain intact: {checked} event(s)")
