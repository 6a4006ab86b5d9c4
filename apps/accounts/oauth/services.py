"""OAuth2 sign-in: ``oauth_start`` (the authorization URL with its PKCE challenge and state),
``oauth_login`` (the code exchange, the account it lands in, our own token pair) and
``identity_unlink`` (docs/accounts.md, "OAuth2 sign-in").

The provider side is allauth's: its provider classes, their OAuth2 clients (which send the
``code_verifier`` with the code) and adapters (userinfo, id_token claims). The session is the
same as a password login's (``_session_open``); provider tokens are kept AES-256-GCM encrypted
in ``ProviderToken``. Calls to a provider go to operator-configured URLs, so they do not go
through the fetch guard for user-given URLs (apps/core/netguard.py); allauth's session gives
them a timeout (SOCIALACCOUNT_REQUESTS_TIMEOUT).
"""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any

import requests
from allauth.account.models import EmailAddress
from allauth.socialaccount.models import SocialAccount, SocialLogin, SocialToken
from allauth.socialaccount.providers.base import ProviderException
from allauth.socialaccount.providers.oauth2.client import OAuth2Client, OAuth2Error
from allauth.socialaccount.providers.oauth2.provider import OAuth2Provider
from allauth.socialaccount.providers.oauth2.utils import generate_code_challenge
from allauth.socialaccount.providers.oauth2.views import OAuth2Adapter
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone

from apps.accounts.models import ProviderToken, Role, User
from apps.accounts.oauth.providers import provider_get
from apps.accounts.oauth.state import state_stash, state_take
from apps.accounts.services._common import TokenPair
from apps.accounts.services.sessions import _login_refusal, _session_open
from apps.audit.actions import AuditAction
from apps.audit.services import audit_record
from apps.core import crypto
from apps.core.context import Origin
from apps.core.errors import AccountPending, ApplicationError, Conflict, InvalidInput, NotFound, UserBanned

logger = logging.getLogger(__name__)

USERNAME_MIN, USERNAME_MAX = 3, 32  # apps/accounts/serializers.py username_field
_NOT_USERNAME = re.compile(r"[^A-Za-z0-9_.-]+")


def _refused(message: str = "The provider did not sign you in.") -> ApplicationError:
    return ApplicationError(message, code="oauth_refused", status=400)


def _unavailable() -> ApplicationError:
    return ApplicationError(
        "The sign-in provider did not answer; try again shortly.", code="provider_unavailable", status=502
    )


def _state_invalid() -> InvalidInput:
    return InvalidInput(
        "state: unknown, expired or already used; start the sign-in again.",
        details={"state": ["Unknown, expired or already used."]},
    )


def redirect_uri(provider_id: str) -> str:
    """Where the provider sends the browser back: the web page's callback (apps/web/urls.py)."""
    return f"{settings.PUBLIC_URL.rstrip('/')}/oauth/callback/{provider_id}/"


def _client(provider: OAuth2Provider, adapter: OAuth2Adapter, provider_id: str) -> OAuth2Client:
    """allauth's client for this provider, built as its adapter's ``get_client`` does but with
    our redirect URI (allauth's would name its own callback view, which we do not serve)."""
    app = provider.app
    client: OAuth2Client = adapter.client_class(
        adapter.request,
        app.client_id,
        app.secret,
        adapter.access_token_method,
        adapter.access_token_url,
        redirect_uri(provider_id),
        scope_delimiter=adapter.scope_delimiter,
        headers=adapter.headers,
        basic_auth=adapter.basic_auth,
    )
    return client


def _provider_call_failed(provider_id: str, exc: Exception) -> ApplicationError:
    """The answer for a failed call to a provider. Logged by kind only: a provider's error body
    may echo the code or a token."""
    if isinstance(exc, requests.HTTPError) and exc.response is not None and exc.response.status_code < 500:
        kind = f"refused ({exc.response.status_code})"
        error = _refused()
    elif isinstance(exc, requests.RequestException):
        kind = f"unreachable ({type(exc).__name__})"
        error = _unavailable()
    else:
        kind = f"refused ({type(exc).__name__})"
        error = _refused()
    logger.warning("oauth %s: provider %s", provider_id, kind)
    return error


# Everything a provider's answer can make allauth raise: refusals (OAuth2Error, ProviderException,
# PermissionDenied), unexpected shapes (KeyError, TypeError, ValueError: bad JSON, an empty uid)
# and the network (RequestException).
_PROVIDER_ERRORS = (
    OAuth2Error,
    ProviderException,
    DjangoPermissionDenied,
    requests.RequestException,
    ImproperlyConfigured,
    KeyError,
    TypeError,
    ValueError,
)


def oauth_start(*, request: HttpRequest, provider_id: str) -> tuple[str, str]:
    """Begin a sign-in: returns ``(authorize_url, state)``. The PKCE verifier stays in the cache
    (``state``); the URL carries its S256 challenge. NotFound for a provider not offered."""
    provider = provider_get(request, provider_id)
    adapter = provider.get_oauth2_adapter(request)
    pkce = generate_code_challenge()
    challenge = pkce["code_challenge"]
    state = state_stash(provider=provider_id, code_verifier=pkce["code_verifier"])
    try:
        client = _client(provider, adapter, provider_id)
        client.state = state
        params = provider.get_auth_params()
        params.update(
            code_challenge=challenge.decode() if isinstance(challenge, bytes) else challenge,
            code_challenge_method="S256",
        )
        url: str = client.get_redirect_url(adapter.authorize_url, provider.get_scope(), params)
    except _PROVIDER_ERRORS as exc:  # an OpenID Connect discovery document that did not come
        state_take(state)
        raise _provider_call_failed(provider_id, exc) from exc
    return url, state


def _exchange(
    *, request: HttpRequest, provider: OAuth2Provider, provider_id: str, code: str, code_verifier: str
) -> SocialLogin:
    """The code (and its verifier) for the provider's tokens, then who the user is."""
    adapter = provider.get_oauth2_adapter(request)
    try:
        client = _client(provider, adapter, provider_id)
        response: dict[str, Any] = client.get_access_token(code, pkce_code_verifier=code_verifier)
        # Straight from the token endpoint: the adapter may trust an id_token's signature.
        adapter.did_fetch_access_token = True
        token: SocialToken = adapter.parse_token(response)
        login: SocialLogin = adapter.complete_login(request, provider.app, token, response=response)
    except _PROVIDER_ERRORS as exc:
        raise _provider_call_failed(provider_id, exc) from exc
    login.token = token
    return login


def oauth_login(
    *, request: HttpRequest, provider_id: str, code: str, state: str, origin: Origin
) -> tuple[User, TokenPair]:
    """Finish a sign-in: check and spend the state, exchange the code with its verifier, find or
    create the account (``_account_for``) and open a session, as ``user_login`` does.

    InvalidInput for an unknown, expired, used or other provider's state; ``oauth_refused`` (400)
    when the provider refuses, ``provider_unavailable`` (502) when it does not answer;
    UserBanned / AccountPending as a password login."""
    provider = provider_get(request, provider_id)
    pending = state_take(state)
    if pending is None or pending.provider != provider_id:
        raise _state_invalid()
    login = _exchange(
        request=request,
        provider=provider,
        provider_id=provider_id,
        code=code,
        code_verifier=pending.code_verifier,
    )
    for attempt in range(3):
        try:
            with transaction.atomic():
                user, account = _account_for(login=login, provider_id=provider_id, origin=origin)
                _token_store(account=account, token=login.token)
                refusal = _login_refusal(user, staff_only=False)
                if refusal is not None:
                    audit_record(
                        action=AuditAction.AUTH_LOGIN_REFUSED,
                        origin=origin,
                        user=user,
                        resource_type="user",
                        resource_id=user.pk,
                        details={"reason": refusal, "via": "oauth", "provider": provider_id},
                    )
                else:
                    user.last_login = timezone.now()
                    user.save(update_fields=["last_login"])
                    audit_record(
                        action=AuditAction.OAUTH_LOGIN,
                        origin=origin,
                        user=user,
                        resource_type="user",
                        resource_id=user.pk,
                        details={"provider": provider_id},
                    )
                    return user, _session_open(user=user, origin=origin)
            break
        except IntegrityError:
            # A concurrent first sign-in of the same identity, or of the same username: the next
            # attempt finds the identity, or picks another name.
            if attempt == 2:
                raise
    if refusal == "banned":
        raise UserBanned()
    raise AccountPending()


def _account_for(*, login: SocialLogin, provider_id: str, origin: Origin) -> tuple[User, SocialAccount]:
    """The identity's account: found by (provider, uid); else the account whose verified address
    the provider vouches for (linked); else a new one. Caller holds the transaction."""
    uid = login.account.uid
    account = SocialAccount.objects.select_related("user").filter(provider=provider_id, uid=uid).first()
    if account is not None:
        account.extra_data = login.account.extra_data
        account.last_login = timezone.now()
        account.save(update_fields=["extra_data", "last_login"])
        return account.user, account
    user = _user_by_verified_email(login)
    if user is None:
        user = _user_create(login=login, provider_id=provider_id, origin=origin)
    account = SocialAccount.objects.create(
        user=user,
        provider=provider_id,
        uid=uid,
        extra_data=login.account.extra_data,
        last_login=timezone.now(),
    )
    audit_record(
        action=AuditAction.OAUTH_LINK,
        origin=origin,
        user=user,
        resource_type="user",
        resource_id=user.pk,
        details={"provider": provider_id, "uid": uid},
    )
    return user, account


def _provider_verified_emails(login: SocialLogin) -> list[str]:
    """The addresses the provider says belong to this person (verified on its side), the primary
    one first (GitHub's /user/emails lists every address of the account)."""
    ordered = sorted(login.email_addresses, key=lambda addr: not addr.primary)
    return [addr.email for addr in ordered if addr.verified and addr.email]


def _user_by_verified_email(login: SocialLogin) -> User | None:
    """An existing account is linked by e-mail only when both sides have the address verified:
    the provider says so and our EmailAddress row is verified (docs/accounts.md)."""
    for email in _provider_verified_emails(login):
        row = EmailAddress.objects.filter(email__iexact=email, verified=True).select_related("user").first()
        if row is not None:
            user: User = row.user
            return user
    return None


def _username_for(login: SocialLogin) -> str:
    """A free username from the provider's login name (or the e-mail's local part), reduced to
    our username rule; a taken one gets a suffix."""
    user = login.user
    wanted = getattr(user, "username", "") or ""
    if not wanted:
        email = getattr(user, "email", "") or next(iter(_provider_verified_emails(login)), "")
        wanted = email.split("@", 1)[0]
    base = _NOT_USERNAME.sub("", wanted)[:USERNAME_MAX]
    if len(base) < USERNAME_MIN:
        base = "user"
    candidates = [base] + [f"{base[: USERNAME_MAX - 2]}-{n}" for n in range(2, 10)]
    candidates += [f"{base[: USERNAME_MAX - 9]}-{secrets.token_hex(4)}" for _ in range(5)]
    for candidate in candidates:
        if not User.objects.with_ci().filter(username_ci=candidate.lower()).exists():
            return candidate
    raise AssertionError("no free username after random suffixes")  # 2^32 each: never


def _user_create(*, login: SocialLogin, provider_id: str, origin: Origin) -> User:
    """A new account for a first sign-in: no password (the provider is its way in), the
    provider's verified address when no account has it. Caller holds the transaction."""
    email = None
    for candidate in _provider_verified_emails(login):
        taken = User.objects.with_ci().filter(email_ci=candidate.lower()).exists()
        if not taken and not EmailAddress.objects.filter(email__iexact=candidate).exists():
            email = candidate
            break
    role = Role.PENDING if settings.ACCOUNT_REVIEW_REQUIRED else Role.USER
    user = User.objects.create_user(
        username=_username_for(login), password=None, email=email, role=role, email_verified=email is not None
    )
    if email is not None:
        EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    audit_record(
        action=AuditAction.USER_REGISTER,
        origin=origin,
        user=user,
        resource_type="user",
        resource_id=user.pk,
        details={"via": "oauth", "provider": provider_id},
    )
    return user


def _aad(row_id: str, column: str) -> bytes:
    return f"accounts.ProviderToken:{row_id}:{column}".encode()


def _token_store(*, account: SocialAccount, token: SocialToken) -> ProviderToken:
    """Keep the provider's tokens for this identity, encrypted, replacing older ones."""
    row = ProviderToken.objects.filter(social_account=account).first() or ProviderToken(
        social_account=account
    )
    row.access_token_encrypted = crypto.encrypt(token.token.encode(), associated_data=_aad(row.pk, "access"))
    refresh = token.token_secret or ""
    row.refresh_token_encrypted = (
        crypto.encrypt(refresh.encode(), associated_data=_aad(row.pk, "refresh")) if refresh else None
    )
    row.expires_at = token.expires_at
    row.updated_at = timezone.now()
    row.save()
    return row


def provider_token_read(row: ProviderToken) -> tuple[str, str | None]:
    """The stored ``(access, refresh)`` tokens in clear. Raises crypto.DecryptionError for a
    tampered row or one encrypted for another row."""
    access = crypto.decrypt(row.access_token_encrypted, associated_data=_aad(row.pk, "access")).decode()
    refresh = None
    if row.refresh_token_encrypted:
        refresh = crypto.decrypt(
            row.refresh_token_encrypted, associated_data=_aad(row.pk, "refresh")
        ).decode()
    return access, refresh


def identity_unlink(*, user: User, provider_id: str, origin: Origin) -> None:
    """Unlink the caller's identities at ``provider_id``. Refused (409 ``last_login_method``) when
    nothing else would let them log in: no usable password and no other provider's identity."""
    with transaction.atomic():
        # The user's row is the lock: two unlinks at once cannot each leave the other's last way in.
        # The password is read from the locked row, not the caller's cached user: one removed
        # since the request loaded it (a concurrent change, an admin) is no way in.
        locked = User.objects.select_for_update().filter(pk=user.pk).first()
        if locked is None:
            raise NotFound("No identity of this provider is linked to your account.")
        accounts = SocialAccount.objects.filter(user=user)
        here = [a for a in accounts if a.provider == provider_id]
        if not here:
            raise NotFound("No identity of this provider is linked to your account.")
        others = len(accounts) - len(here)
        if others == 0 and not locked.has_usable_password():
            raise Conflict(
                "This is your only way to log in; set a password or link another provider first.",
                code="last_login_method",
            )
        for account in here:
            audit_record(
                action=AuditAction.OAUTH_UNLINK,
                origin=origin,
                user=user,
                resource_type="user",
                resource_id=user.pk,
                details={"provider": provider_id, "uid": account.uid},
            )
            account.delete()
