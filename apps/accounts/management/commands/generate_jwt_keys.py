from django.core.management.base import BaseCommand

from apps.accounts.keystore import ensure_signing_key, keystore


class Command(BaseCommand):
    help = (
        "Create the first JWT signing key if the key store is empty (from JWT_PRIVATE_KEY_FILE "
        "when set, otherwise a new RSA key). Safe to run on every deploy."
    )

    def handle(self, *args, **options):
        row = ensure_signing_key()
        keystore.invalidate()
        self.stdout.write(f"signing key: {row.kid}")
