"""Moderators' view of users: search, role changes and bans, all through the services."""

from __future__ import annotations

from allauth.account.models import EmailAddress, EmailConfirmation
from allauth.socialaccount.models import SocialAccount, SocialApp, SocialToken
from django import forms
from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.db import transaction
from django.http import HttpResponseRedirect
from django.utils import timezone

from apps.accounts import services
from apps.accounts.models import AuthSession, Role, SigningKey, User
from apps.core.admin import ReadOnlyAdmin
from apps.core.context import Origin
from apps.core.errors import ApplicationError, RateLimited


class AuthSessionInline(admin.TabularInline):
    model = AuthSession
    fields = (
        "id",
        "created_at",
        "last_refreshed_at",
        "expires_at",
        "revoked_at",
        "revoked_reason",
        "ip",
        "user_agent",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("-created_at",)
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).filter(revoked_at__isnull=True, expires_at__gt=timezone.now())


class EmailAddressInline(admin.TabularInline):
    """The user's address as allauth keeps it (verified or not), read-only: a change of address
    goes through the profile form above, which re-verifies it (docs/accounts.md)."""

    model = EmailAddress
    verbose_name = "e-mail address"
    verbose_name_plural = "e-mail addresses"
    fields = ("email", "verified", "primary")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


# allauth's own admin pages would edit addresses, identities, keys and provider apps around our
# services (no audit event, User.email and email_verified out of step, a second app for a
# provider the environment already configures). The user page shows addresses and identities
# read-only instead; providers come from the environment (docs/accounts.md).
for _model in (EmailAddress, EmailConfirmation, SocialAccount, SocialApp, SocialToken):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)


class SocialAccountInline(admin.TabularInline):
    """The user's linked OAuth2 identities, read-only: never their tokens (docs/accounts.md)."""

    model = SocialAccount
    verbose_name = "linked provider"
    verbose_name_plural = "linked providers"
    fields = ("provider", "uid", "date_joined", "last_login")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class AdminLoginForm(AdminAuthenticationForm):
    """The admin's login form. Passwords are checked by the accounts login service (through
    StaffLoginBackend): the API login's limits and audit events. Over a limit, the form says so
    and no password is hashed."""

    def clean(self):
        try:
            return super().clean()
        except RateLimited as exc:
            raise forms.ValidationError(
                "Too many login attempts. Try again in %(seconds)s seconds.",
                code="rate_limited",
                params={"seconds": exc.details["retry_after"]},
            ) from exc


admin.site.login_form = AdminLoginForm


class UserAdminForm(forms.ModelForm):
    ban_reason = forms.CharField(
        required=False, max_length=500, help_text="Recorded in the audit log when the role becomes banned."
    )
    current_password = forms.CharField(
        required=False,
        widget=forms.PasswordInput,
        label="Your password",
        help_text="Needed to change the e-mail address of your own account (as on the API).",
    )

    class Meta:
        model = User
        fields = ("username", "email", "role")


@admin.register(User)
class UserAdmin(admin.ModelAdmin):
    form = UserAdminForm
    list_display = ("username", "email", "email_verified", "role", "date_joined", "last_login")
    list_filter = ("role", ("date_joined", admin.DateFieldListFilter))
    search_fields = ("username", "email", "id")
    readonly_fields = ("id", "email_verified", "date_joined", "last_login", "banned_reason")
    ordering = ("-date_joined",)
    inlines = [AuthSessionInline, EmailAddressInline, SocialAccountInline]
    actions = ["ban_users", "unban_users", "end_sessions"]

    def get_fields(self, request, obj=None):
        base = [
            "id",
            "username",
            "email",
            "email_verified",
            "role",
            "ban_reason",
            "banned_reason",
            "date_joined",
            "last_login",
        ]
        if obj is not None and obj.pk == request.user.pk:
            base.insert(3, "current_password")
        return base if obj else ["username", "email", "role"]

    def has_add_permission(self, request) -> bool:
        # Accounts are made by registration or `manage.py create_root`, where the password rule applies.
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser

    def save_model(self, request, obj, form, change):
        """Profile edits and role changes go through the services (the moderation rule, session
        revocation, audit), all or nothing: a refused part leaves the account as it was."""
        origin = Origin.of(request)
        new_role = form.cleaned_data["role"]
        old = User.objects.get(pk=obj.pk)
        obj.role = old.role  # the service decides; do not let the form write it directly
        try:
            with transaction.atomic():
                if {"username", "email"} & set(form.changed_data):
                    services.user_update_profile(
                        user=old,
                        actor=request.user,
                        origin=origin,
                        username=obj.username,
                        email=obj.email,
                        # Only asked for (and only needed) when editing your own address.
                        current_password=form.cleaned_data.get("current_password") or None,
                    )
                if new_role != old.role:
                    if new_role == Role.BANNED:
                        services.user_ban(
                            actor=request.user,
                            user=old,
                            reason=form.cleaned_data["ban_reason"],
                            origin=origin,
                        )
                    elif old.role == Role.BANNED and new_role == Role.USER:
                        services.user_unban(actor=request.user, user=old, origin=origin)
                    else:
                        services.user_set_role(actor=request.user, user=old, role=new_role, origin=origin)
        except ApplicationError as exc:
            request._synctv_refused = True
            self.message_user(request, exc.message, level=messages.ERROR)

    def response_change(self, request, obj):
        if getattr(request, "_synctv_refused", False):
            # Back to the form with the refusal, not Django's "changed successfully".
            return HttpResponseRedirect(request.path)
        return super().response_change(request, obj)

    def _each(self, request, queryset, action, done: str) -> None:
        count = 0
        for user in queryset:
            try:
                action(user)
                count += 1
            except ApplicationError as exc:
                self.message_user(request, f"{user.username}: {exc.message}", level=messages.ERROR)
        if count:
            self.message_user(request, f"{done} {count} user(s).", level=messages.SUCCESS)

    @admin.action(description="Ban selected users (ends their sessions)")
    def ban_users(self, request, queryset):
        origin = Origin.of(request)
        self._each(
            request,
            queryset,
            lambda u: services.user_ban(actor=request.user, user=u, reason="admin action", origin=origin),
            "Banned",
        )

    @admin.action(description="Unban selected users")
    def unban_users(self, request, queryset):
        origin = Origin.of(request)
        self._each(
            request,
            queryset,
            lambda u: services.user_unban(actor=request.user, user=u, origin=origin),
            "Unbanned",
        )

    @admin.action(description="End all sessions of selected users")
    def end_sessions(self, request, queryset):
        origin = Origin.of(request)
        self._each(
            request,
            queryset,
            lambda u: services.tokens_revoke_all(user=u, reason="admin", origin=origin, actor=request.user),
            "Ended the sessions of",
        )


@admin.register(SigningKey)
class SigningKeyAdmin(ReadOnlyAdmin):
    """Read-only: keys are made with `manage.py rotate_jwt_keys`."""

    list_display = ("kid", "is_signing", "created_at", "retired_at")
    fields = ("kid", "is_signing", "created_at", "retired_at", "public_pem")
    readonly_fields = fields
