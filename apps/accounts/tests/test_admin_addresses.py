"""The admin's user page shows a user's e-mail addresses (verified or not) read-only, and allauth's
own admin pages, which would edit addresses, identities and provider apps around the services,
are not there (docs/accounts.md)."""

from __future__ import annotations

import pytest
from allauth.account.models import EmailAddress
from django.test import Client

from apps.accounts.models import Role, User
from apps.accounts.tests.factories import make_user
from apps.core.tests.helpers import admin_url

pytestmark = pytest.mark.django_db


@pytest.fixture
def root_client() -> Client:
    client = Client()
    client.force_login(User.objects.create(username="root", role=Role.ROOT))
    return client


def test_the_user_page_lists_addresses_and_whether_they_are_verified(root_client):
    user, _pair = make_user(email="seen@example.com")
    page = root_client.get(admin_url(user))
    html = page.content.decode()
    assert page.status_code == 200
    assert "e-mail addresses" in html.lower() and "seen@example.com" in html
    assert EmailAddress.objects.filter(user=user, verified=False).exists()
    assert 'name="emailaddress_set-0-email"' not in html  # shown, not editable


@pytest.mark.parametrize(
    "path",
    [
        "/admin/account/emailaddress/",
        "/admin/socialaccount/socialaccount/",
        "/admin/socialaccount/socialapp/",
        "/admin/socialaccount/socialtoken/",
    ],
)
def test_allauths_own_admin_pages_are_not_offered(root_client, path):
    assert root_client.get(path).status_code == 404
