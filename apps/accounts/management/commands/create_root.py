import getpass
import os

from django.core.management.base import BaseCommand, CommandError

from apps.accounts import services
from apps.core.errors import ApplicationError

from ._base import OPERATOR


class Command(BaseCommand):
    help = "Create a root account. The password comes from --password, SYNCTV_ROOT_PASSWORD or a prompt."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--email", default=None)
        parser.add_argument("--password", default=None)
        parser.add_argument("--if-missing", action="store_true", help="do nothing if the username exists")

    def handle(self, *args, username, email, password, if_missing, **options):
        from apps.accounts.models import User

        if if_missing and User.objects.filter(username__iexact=username).exists():
            self.stdout.write(f"{username} exists; nothing to do")
            return
        password = password or os.environ.get("SYNCTV_ROOT_PASSWORD")
        if not password:
            if not options.get("interactive", True) or not os.isatty(0):
                raise CommandError("give --password or SYNCTV_ROOT_PASSWORD")
            password = getpass.getpass("Password: ")
            if password != getpass.getpass("Password (again): "):
                raise CommandError("passwords differ")
        try:
            user = services.user_create_root(
                username=username, password=password, email=email, origin=OPERATOR
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"root user {user.username} created (id {user.pk})")
