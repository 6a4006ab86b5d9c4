from apps.accounts import services

from ._base import OPERATOR, UserCommand


class Command(UserCommand):
    help = "Ban a user site-wide: every session ends and their next request is refused."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--reason", default="")

    def handle(self, *args, user, reason, **options):
        target = self.get_user(user)
        services.user_ban(actor=None, user=target, reason=reason, origin=OPERATOR)
        self.stdout.write(f"banned {target.username}")
