"""E-mail addresses: verification (the link sent on sign-up, on a change of address and on
request) and the password reset (docs/accounts.md).

allauth's account internals hold the state: an ``EmailAddress`` row per user mirrors
``User.email`` and says whether it is verified; verification keys are ``EmailConfirmationHMAC``
(signed, 24 h, nothing stored); reset keys are ``<user id>-<token>`` with allauth's
``default_token_generator`` (Django's ``PasswordResetTokenGenerator`` plus the addresses: valid
``PASSWORD_RESET_TIMEOUT``, and single use because the token hashes the password, which the
reset changes). The mail goes out through ``AccountAdapter`` (apps.accounts.allauth): queued,
sent by Celery after commit. Our endpoints call these functions; allauth's views and session
login are not used.

Whether an address is known must not show in any answer (docs/security.md, "Accounts and
staff"): the reset request and both resends return nothing their callers show, and the callers
answer the same either way.
"""

from __future__ import annotations

from allauth.account.adapter import get_adapter
from allauth.account.forms import default_token_generator
from allauth.account.models import EmailAddress, EmailConfirmationHMAC
from django.conf import settings
from django.db import transaction

from apps.accounts.models import Role, User
from apps.accounts.services._common import _check_password_rule
from apps.accounts.services.sessions import _sessions_revoke_all
from apps.audit.actions import AuditAction
from apps.audit.services import audit_record
from apps.core.context import Origin
from apps.core.errors import InvalidInput

# A reset key names the account, then holds the token: "<user id>-<timestamp>-<hash>". User ids
# are base64url (apps.core.ids) and may contain "-", the token always holds exactly one.
_RESET_KEY_MAX = 200


def _invalid_key() -> InvalidInput:
    return InvalidInput("key: The link is invalid or has expired.", details={"key": ["invalid"]})


def verification_enabled() -> bool:
    return bool(settings.ACCOUNT_EMAIL_VERIFICATION != "none")


def email_verified(user: User) -> bool:
    """Whether the user's current address is verified (False without one)."""
    return bool(user.email) and user.email_verified


def _verified_flag_set(user: User, verified: bool) -> None:
    """Keep ``User.email_verified`` equal to the current address's row (a save, so every
    process's auth cache hears of it)."""
    if user.email_verified != verified:
        user.email_verified = verified
        user.save(update_fields=["email_verified"])


def _address_replace(*, user: User) -> EmailAddress | None:
    """Make the user's ``EmailAddress`` rows mirror ``user.email``: the old rows go, the current
    address (if any) is the one primary row, unverified. Caller holds the transaction."""
    EmailAddress.objects.filter(user_id=user.pk).delete()
    _verified_flag_set(user, False)
    if not user.email:
        return None
    return EmailAddress.objects.create(user=user, email=user.email, primary=True, verified=False)


def _send_verification(address: EmailAddress, *, signup: bool) -> None:
    """Queue the verification mail (sent after the caller's transaction commits)."""
    if verification_enabled():
        get_adapter().send_confirmation_mail(None, EmailConfirmationHMAC.create(address), signup)


def _address_set_after_signup(*, user: User) -> None:
    """A new account with an address: its row, and the link when verification is on."""
    address = _address_replace(user=user)
    if address is not None:
        _send_verification(address, signup=True)


def _address_changed(*, user: User) -> None:
    """The user's address changed (``user_update_profile``): the new one is unverified and gets
    the link; the old rows are gone, so a key sent to the old address verifies nothing."""
    address = _address_replace(user=user)
    if address is not None:
        _send_verification(address, signup=False)


def _account_exists_notice(*, email: str) -> None:
    """Tell the owner of ``email`` that someone tried to register with it (verification on)."""
    if verification_enabled():
        get_adapter().send_account_already_exists_mail(email)


def email_verification_resend(*, user: User) -> bool:
    """Send the caller a new verification link if their address is not verified yet. The caller
    answers the same whether or not anything was sent; returns whether it was."""
    if not verification_enabled() or not user.email:
        return False
    with transaction.atomic():
        address = EmailAddress.objects.filter(user_id=user.pk, email__iexact=user.email).first()
        if address is None:  # an account from before verification existed
            address = _address_replace(user=user)
        if address is None or address.verified:
            return False
        _send_verification(address, signup=False)
    return True


def email_verification_resend_to(*, email: str) -> bool:
    """The public resend (no login: a ``pending`` account cannot log in to ask): a new link when
    an account holds ``email`` unverified. The caller answers the same whether or not anything
    was sent, and the mail is queued as the reset's is; returns whether it was."""
    user = _account_with_address(email)
    if user is None:
        return False
    return email_verification_resend(user=user)


def _account_with_address(email: str) -> User | None:
    """The account that mail to ``email`` reaches (any case): not a guest, not banned."""
    email = User.objects.normalize_email(email)
    return (
        User.objects.with_ci()
        .filter(email_ci=email.lower(), is_guest=False)
        .exclude(role=Role.BANNED)
        .first()
    )


def email_verify(*, key: str, origin: Origin) -> User:
    """Mark the address a verification key names as verified. An account that is pending only
    because verification is mandatory becomes a user (one awaiting review stays pending).

    Refused (400 ``invalid``): a bad signature, a key older than 24 h, an address no longer the
    account's, or one already verified (the key is then used up)."""
    confirmation = EmailConfirmationHMAC.from_key(key)
    if confirmation is None:
        raise _invalid_key()
    with transaction.atomic():
        address = EmailAddress.objects.select_for_update().filter(pk=confirmation.email_address.pk).first()
        user = User.objects.select_for_update().filter(pk=confirmation.email_address.user_id).first()
        if (
            address is None
            or address.verified
            or user is None
            or (user.email or "").lower() != address.email.lower()
        ):
            raise _invalid_key()
        if not _mark_verified(user=user, address=address, origin=origin, via="link"):
            # Another account verified this address first (UNIQUE verified addresses).
            raise _invalid_key()
    return user


def _mark_verified(*, user: User, address: EmailAddress, origin: Origin, via: str) -> bool:
    """Verify ``address`` (the user's current one; both rows locked by the caller) and activate
    an account that is pending only because verification is mandatory. False if another account
    verified the address first."""
    if not address.set_verified(commit=True):
        return False
    _verified_flag_set(user, True)
    activated = (
        user.role == Role.PENDING
        and settings.ACCOUNT_EMAIL_VERIFICATION == "mandatory"
        and not settings.ACCOUNT_REVIEW_REQUIRED
    )
    if activated:
        user.role = Role.USER
        user.save(update_fields=["role"])
    details: dict[str, object] = {"via": via} if via != "link" else {}
    if activated:
        details["activated"] = True
    audit_record(
        action=AuditAction.EMAIL_VERIFIED,
        origin=origin,
        user=user,
        resource_type="user",
        resource_id=user.pk,
        details=details or None,
    )
    return True


def password_reset_request(*, email: str, origin: Origin) -> None:
    """Send a reset link to the account with this address, if there is one. Returns nothing:
    the caller answers the same either way (docs/security.md, "Accounts and staff")."""
    user = _account_with_address(email)
    if user is None or not user.email:
        return
    with transaction.atomic():
        key = _reset_key(user)
        url = get_adapter().get_reset_password_from_key_url(key)
        get_adapter().send_password_reset_mail(user, user.email, {"user": user, "password_reset_url": url})
        audit_record(
            action=AuditAction.AUTH_PASSWORD_RESET_REQUEST,
            origin=origin,
            user=user,
            resource_type="user",
            resource_id=user.pk,
        )


def _reset_key(user: User) -> str:
    return f"{user.pk}-{default_token_generator.make_token(user)}"


def _reset_user(key: str) -> User:
    if len(key) > _RESET_KEY_MAX or key.count("-") < 2:
        raise _invalid_key()
    user_id, stamp, digest = key.rsplit("-", 2)
    user = User.objects.filter(pk=user_id, is_guest=False).first()
    if user is None or not default_token_generator.check_token(user, f"{stamp}-{digest}"):
        raise _invalid_key()
    return user


def password_reset_confirm(*, key: str, password: str, origin: Origin) -> User:
    """Set a new password with a reset key (1 h, single use) and end every session of the
    account, as a password change does (open sockets close with 4401)."""
    user = _reset_user(key)
    _check_password_rule(password, user, "password")
    with transaction.atomic():
        locked = User.objects.select_for_update().get(pk=user.pk)
        # Checked again under the lock: of two uses of one key at once, only the first passes.
        if locked.password != user.password:
            raise _invalid_key()
        locked.set_password(password)
        locked.save(update_fields=["password"])
        count = _sessions_revoke_all(user=locked, reason="password_reset")
        # The key reached the account's address, and it hashes the addresses: the address is
        # proven. This is also a way out for a pending account whose verification link expired
        # (docs/accounts.md, "E-mail addresses").
        address = (
            EmailAddress.objects.select_for_update()
            .filter(user_id=locked.pk, email__iexact=locked.email or "", verified=False)
            .first()
        )
        if address is not None:
            _mark_verified(user=locked, address=address, origin=origin, via="password_reset")
        audit_record(
            action=AuditAction.AUTH_PASSWORD_RESET,
            origin=origin,
            user=locked,
            resource_type="user",
            resource_id=locked.pk,
            details={"sessions_revoked": count},
        )
    return locked
