from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "apps.accounts"
    label = "accounts"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from apps.accounts import schema  # noqa: F401  (registers the OpenAPI auth extension)
        from apps.accounts.models import User

        # Model-level history for moderators; never the password hash.
        auditlog.register(User, exclude_fields=["password", "last_login"])
