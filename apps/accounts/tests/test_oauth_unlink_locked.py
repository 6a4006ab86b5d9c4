"""``users/me/identities/{provider}`` never removes the last way in, judged on the locked row
(docs/accounts.md, "OAuth2 sign-in", identities): the request's user was loaded (from the auth
cache) before the lock, so a password removed since then must be seen, not the stale copy's."""

from __future__ import annotations

import pytest
from allauth.socialaccount.models import SocialAccount
from django.contrib.auth.hashers import make_password

from apps.accounts.models import User
from apps.accounts.oauth import services as oauth_services
from apps.accounts.tests.factories import TEST_ORIGIN, create_user
from apps.core.errors import Conflict

pytestmark = pytest.mark.django_db


def test_a_password_removed_after_the_request_loaded_the_user_is_honoured():
    user = create_user("ada")
    SocialAccount.objects.create(user=user, provider="oidc", uid="oidc-user-1", extra_data={})
    stale = User.objects.get(pk=user.pk)  # what the request holds: a usable password
    assert stale.has_usable_password()
    User.objects.filter(pk=user.pk).update(password=make_password(None))  # removed meanwhile
    with pytest.raises(Conflict) as refused:
        oauth_services.identity_unlink(user=stale, provider_id="oidc", origin=TEST_ORIGIN)
    assert refused.value.code == "last_login_method"
    assert SocialAccount.objects.filter(user=user).count() == 1


def test_a_password_set_after_the_request_loaded_the_user_lets_the_identity_go():
    user = create_user("ada")
    User.objects.filter(pk=user.pk).update(password=make_password(None))
    SocialAccount.objects.create(user=user, provider="oidc", uid="oidc-user-1", extra_data={})
    stale = User.objects.get(pk=user.pk)  # no usable password when the request loaded it
    User.objects.filter(pk=user.pk).update(password=make_password("Corr3ct-horse"))
    oauth_services.identity_unlink(user=stale, provider_id="oidc", origin=TEST_ORIGIN)
    assert not SocialAccount.objects.filter(user=user).exists()
