from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class AccountsConfig(AppConfig):
    name = "apps.accounts"
    label = "accounts"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from apps.accounts import schema  # noqa: F401  (registers the OpenAPI auth extension)
        from apps.accounts.models import User
        from apps.core import crypto

        # Private signing keys, bound to their kid (apps/accounts/keystore.py).
        crypto.register_column("accounts.SigningKey", "private_key_encrypted", lambda row: row.kid.encode())
        # OAuth provider tokens, bound to their row and column (apps/accounts/oauth/services.py).
        for field, column in (("access_token_encrypted", "access"), ("refresh_token_encrypted", "refresh")):
            crypto.register_column("accounts.ProviderToken", field, _provider_token_aad(column))

        # Model-level history for moderators; never the password hash.
        auditlog.register(User, exclude_fields=["password", "last_login"])

        # Any change to a user reaches every process's authentication cache (authcache).
        post_save.connect(_user_changed, sender=User, dispatch_uid="authcache-user-saved")
        post_delete.connect(_user_changed, sender=User, dispatch_uid="authcache-user-deleted")


def _user_changed(sender, instance, **kwargs) -> None:
    from apps.accounts import authcache

    authcache.user_changed(instance.pk)


def _provider_token_aad(column: str):
    def associated_data(row) -> bytes:
        from apps.accounts.oauth.services import _aad

        return _aad(row.pk, column)

    return associated_data
