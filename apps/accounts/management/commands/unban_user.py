from apps.accounts import services

from ._base import OPERATOR, UserCommand


class Command(UserCommand):
    help = "Lift a site-wide ban; the user returns as an ordinary user."

    def handle(self, *args, user, **options):
        target = self.get_user(user)
        services.user_unban(actor=None, user=target, origin=OPERATOR)
        self.stdout.write(f"unbanned {target.username}")
