"""Users with global roles, login sessions (the durable side of token revocation), signing keys."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, TypedDict

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from apps.core.ids import new_id

if TYPE_CHECKING:  # django-stubs-ext is a development requirement (type checking only)
    from django_stubs_ext import WithAnnotations


class CaseInsensitive(TypedDict):
    """The lower-cased columns ``UserManager.with_ci`` adds, for the type checker."""

    username_ci: str
    email_ci: str | None


class Role(models.TextChoices):
    BANNED = "banned", "Banned"
    PENDING = "pending", "Pending"
    USER = "user", "User"
    ADMIN = "admin", "Admin"
    ROOT = "root", "Root"


STAFF_ROLES = frozenset({Role.ADMIN, Role.ROOT})


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def with_ci(self) -> models.QuerySet[WithAnnotations[User, CaseInsensitive]]:
        """Annotated so that lookups hit the lower(username)/lower(email) unique indexes
        (``__iexact`` compiles to UPPER() on PostgreSQL and would scan the table)."""
        return self.annotate(username_ci=Lower("username"), email_ci=Lower("email"))

    def get_by_natural_key(self, username):
        return self.with_ci().get(username_ci=username.lower())

    def create_user(
        self, username: str, password: str | None = None, email: str | None = None, **extra: Any
    ) -> User:
        """Low-level create (no validation, no audit); the services call this."""
        user = self.model(username=username, email=self.normalize_email(email) or None, **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, username: str, password: str | None = None, email: str | None = None, **extra):
        extra["role"] = Role.ROOT
        return self.create_user(username, password, email, **extra)


class User(AbstractBaseUser):
    id = models.CharField(primary_key=True, max_length=32, default=new_id, editable=False)
    username = models.CharField(max_length=32, unique=True)
    email = models.EmailField(max_length=254, null=True, blank=True)
    # Whether ``email`` is verified: a copy of allauth's EmailAddress row for it, kept by
    # apps/accounts/services/email.py, so that ``users/me`` (served from the auth cache) needs no
    # query to say so.
    email_verified = models.BooleanField(default=False)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.USER, db_index=True)
    date_joined = models.DateTimeField(default=timezone.now)
    banned_reason = models.CharField(max_length=500, blank=True)
    # Guests (rooms/{id}/guest) get a throw-away account bound to one room: no password, never
    # a login, shown by the name they chose.
    is_guest = models.BooleanField(default=False)
    display_name = models.CharField(max_length=32, blank=True)

    objects = UserManager()

    USERNAME_FIELD = "username"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("username"), name="user_username_ci_unique"),
            models.UniqueConstraint(
                Lower("email"), name="user_email_ci_unique", condition=models.Q(email__isnull=False)
            ),
        ]
        ordering = ["username"]

    def __str__(self) -> str:
        return self.username

    @property
    def public_name(self) -> str:
        return self.display_name or self.username

    # Django's auth and admin read these; they follow from the one `role` field.
    # AbstractBaseUser declares a writable field; here it follows from the role, read-only.
    @property
    def is_active(self) -> bool:  # type: ignore[override]
        return self.role != Role.BANNED

    @property
    def is_banned(self) -> bool:
        return self.role == Role.BANNED

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES and not self.is_guest

    @property
    def is_superuser(self) -> bool:
        return self.role == Role.ROOT

    @property
    def is_site_admin(self) -> bool:
        """Site admins and root moderate every room (docs/security.md, "What they may do")."""
        return self.role in STAFF_ROLES and not self.is_guest

    def has_perm(self, perm, obj=None) -> bool:
        return self.is_active and self.is_staff

    def has_perms(self, perm_list, obj=None) -> bool:
        return all(self.has_perm(p, obj) for p in perm_list)

    def has_module_perms(self, app_label) -> bool:
        return self.is_active and self.is_staff


class AuthSession(models.Model):
    """One login: the refresh-token family and every access token issued from it.

    Tokens carry the session id (``sid``). Revoking the row ends them all, durably: the Redis
    jti list is the fast path and the spec's mechanism, but Redis keeps nothing across a restart.
    ``refresh_jti`` is the only refresh token of the family that may still be used; rotating it
    is one conditional UPDATE, so two concurrent refreshes cannot both win.
    """

    id = models.CharField(primary_key=True, max_length=32, default=new_id, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="auth_sessions")
    refresh_jti = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    last_refreshed_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=64, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    node_id = models.CharField(max_length=128, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user", "revoked_at"]), models.Index(fields=["expires_at"])]

    def __str__(self) -> str:
        return f"session {self.id} of {self.user_id}"

    @property
    def is_live(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()


class SigningKey(models.Model):
    """An RS256 key pair in the key store every node reads (docs/security.md, "Who is asking").

    The private key is encrypted at rest with AES-256-GCM (apps.core.crypto), bound to the kid.
    Exactly one key signs at a time; retired keys keep verifying until the tokens they signed
    have expired.
    """

    kid = models.CharField(primary_key=True, max_length=64)
    public_pem = models.TextField()
    private_key_encrypted = models.BinaryField()
    created_at = models.DateTimeField(default=timezone.now)
    is_signing = models.BooleanField(default=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["is_signing"], condition=models.Q(is_signing=True), name="one_signing_key"
            )
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.kid


class ProviderToken(models.Model):
    """The access and refresh tokens an OAuth2 provider gave for one linked identity
    (docs/accounts.md, "OAuth2 sign-in").

    allauth's own token table keeps them in plain text (SOCIALACCOUNT_STORE_TOKENS is off); here
    they are AES-256-GCM encrypted (apps.core.crypto) with the row's id and the column's name as
    associated data, so a ciphertext copied to another row or column does not decrypt.
    """

    id = models.CharField(primary_key=True, max_length=32, default=new_id, editable=False)
    social_account = models.OneToOneField(
        "socialaccount.SocialAccount", on_delete=models.CASCADE, related_name="synctv_token"
    )
    access_token_encrypted = models.BinaryField()
    refresh_token_encrypted = models.BinaryField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"provider token {self.id}"
