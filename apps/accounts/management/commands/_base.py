"""Shared bits of the accounts commands: find a user, turn service errors into CommandError."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from apps.accounts.models import User
from apps.core.context import Origin

OPERATOR = Origin(ip=None, user_agent="manage.py")


class UserCommand(BaseCommand):
    def add_arguments(self, parser):
        parser.add_argument("user", help="username, email address or user id")

    def get_user(self, ident: str) -> User:
        user = (
            User.objects.filter(pk=ident).first()
            or User.objects.filter(username__iexact=ident).first()
            or User.objects.filter(email__iexact=ident).first()
        )
        if user is None:
            raise CommandError(f"no such user: {ident}")
        return user
