"""``manage.py reencrypt_secrets``: a key rotation rewrites every registered secret under the new
first key, after which the old key can go (docs/security.md, "Secrets at rest")."""

from __future__ import annotations

import base64
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from apps.accounts import keystore
from apps.accounts.models import SigningKey
from apps.core import crypto
from apps.mail.models import OutboundEmail
from apps.mail.services import email_bodies, email_queue

OLD = base64.b64encode(b"o" * 32).decode()
NEW = base64.b64encode(b"n" * 32).decode()

pytestmark = pytest.mark.django_db


def _named_key(blob) -> bytes:
    return bytes(blob)[1 : crypto.HEADER_BYTES]


def _secrets_under_the_old_key() -> tuple[SigningKey, OutboundEmail]:
    with override_settings(ENCRYPTION_KEY=OLD):
        key = keystore.ensure_signing_key()
        email = email_queue(to="someone@example.com", template="test", context={})
    return key, email


def test_every_registered_column_is_rewritten_under_the_first_key():
    key, email = _secrets_under_the_old_key()
    with override_settings(ENCRYPTION_KEY=f"{NEW},{OLD}"):
        out = StringIO()
        call_command("reencrypt_secrets", stdout=out)
        assert "accounts.SigningKey.private_key_encrypted: 1 value(s), rewrote 1" in out.getvalue()
        assert "mail.OutboundEmail.text_body: 1 value(s), rewrote 1" in out.getvalue()
        out = StringIO()
        call_command("reencrypt_secrets", stdout=out)  # a second run has nothing left to do
        assert "rewrote 1" not in out.getvalue()
    key.refresh_from_db()
    email.refresh_from_db()
    new_id = crypto.key_id(b"n" * 32)
    assert _named_key(key.private_key_encrypted) == new_id
    assert _named_key(email.text_body) == _named_key(email.html_body) == new_id
    with override_settings(ENCRYPTION_KEY=NEW):  # the old key is gone: everything still opens
        crypto.decrypt(key.private_key_encrypted, associated_data=key.kid.encode())
        text, html = email_bodies(email)
        assert "test message" in text and "test message" in html


def test_dry_run_writes_nothing():
    key, _email = _secrets_under_the_old_key()
    before = bytes(key.private_key_encrypted)
    with override_settings(ENCRYPTION_KEY=f"{NEW},{OLD}"):
        out = StringIO()
        call_command("reencrypt_secrets", "--dry-run", stdout=out)
    assert "would rewrite 1" in out.getvalue()
    key.refresh_from_db()
    assert bytes(key.private_key_encrypted) == before


def test_a_value_no_configured_key_opens_fails_the_command_and_changes_nothing():
    key, _email = _secrets_under_the_old_key()
    before = bytes(key.private_key_encrypted)
    with override_settings(ENCRYPTION_KEY=NEW), pytest.raises(CommandError, match="could not be decrypted"):
        call_command("reencrypt_secrets", stdout=StringIO(), stderr=StringIO())
    key.refresh_from_db()
    assert bytes(key.private_key_encrypted) == before


def test_provider_tokens_are_rewritten_and_still_read():
    from allauth.socialaccount.models import SocialAccount, SocialToken

    from apps.accounts.oauth.services import _token_store, provider_token_read
    from apps.accounts.tests.factories import make_user

    with override_settings(ENCRYPTION_KEY=OLD):  # the signing key that make_user needs too
        user, _pair = make_user()
        account = SocialAccount.objects.create(user=user, provider="github", uid="4242")
        row = _token_store(account=account, token=SocialToken(token="gho_access", token_secret="ghr_refresh"))
    with override_settings(ENCRYPTION_KEY=f"{NEW},{OLD}"):
        out = StringIO()
        call_command("reencrypt_secrets", stdout=out)
    assert "accounts.ProviderToken.refresh_token_encrypted: 1 value(s), rewrote 1" in out.getvalue()
    row.refresh_from_db()
    with override_settings(ENCRYPTION_KEY=NEW):
        assert provider_token_read(row) == ("gho_access", "ghr_refresh")


def test_every_binary_column_of_every_model_is_registered():
    """A new column of secrets that no app registers would be left under a retired key."""
    from django.apps import apps
    from django.db import models

    registered = {(c.model, c.field) for c in crypto.ENCRYPTED_COLUMNS}
    binary = {
        (model._meta.label, field.name)
        for model in apps.get_models()
        for field in model._meta.concrete_fields
        if isinstance(field, models.BinaryField)
        and model._meta.app_label in {"accounts", "mail", "rooms", "core"}
    }
    assert binary <= registered, binary - registered
