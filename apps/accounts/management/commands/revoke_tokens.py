import time

from django.core.management.base import CommandError

from apps.accounts import services

from ._base import OPERATOR, UserCommand


class Command(UserCommand):
    help = "End every session of a user (all their tokens stop working), or revoke one token id with --jti."

    def add_arguments(self, parser):
        parser.add_argument("user", nargs="?", help="username, email address or user id")
        parser.add_argument("--jti", help="revoke just this token id")
        parser.add_argument(
            "--ttl",
            type=int,
            default=None,
            help="with --jti: seconds to remember it (default: the refresh-token lifetime)",
        )

    def handle(self, *args, user, jti, ttl, **options):
        from django.conf import settings

        if jti:
            ttl = ttl or int(settings.JWT_REFRESH_LIFETIME.total_seconds())
            services.token_revoke_jti(jti=jti, expires_at_epoch=time.time() + ttl, origin=OPERATOR)
            self.stdout.write(f"revoked token {jti} for {ttl} s")
            if not settings.REDIS_URL:
                self.stderr.write(
                    "note: without REDIS_URL the revocation list is per process; "
                    "a running server will not see this"
                )
            return
        if not user:
            raise CommandError("give a user or --jti")
        target = self.get_user(user)
        count = services.tokens_revoke_all(user=target, reason="operator", origin=OPERATOR)
        self.stdout.write(f"ended {count} session(s) of {target.username}")
