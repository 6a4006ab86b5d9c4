from django.core.management.base import BaseCommand

from apps.accounts.keystore import rotate_signing_key, verification_window


class Command(BaseCommand):
    help = (
        "Add a new JWT signing key. The old key stops signing but keeps verifying until every "
        "token it signed has expired, so nobody is logged out. Other nodes pick the new key up "
        "within JWT_KEYSET_REFRESH_SECONDS, or at once when they meet a token signed with it."
    )

    def handle(self, *args, **options):
        new, old = rotate_signing_key()
        self.stdout.write(f"new signing key: {new.kid}")
        if old is not None:
            until = old.retired_at + verification_window()
            self.stdout.write(f"retired key {old.kid} keeps verifying until {until:%Y-%m-%d %H:%M} UTC")
