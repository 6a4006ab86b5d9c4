"""apps/accounts/authcache.py: an authenticated request reads no database while the user's stamp
in Redis is unchanged; every change that matters is seen on the next request; without Redis the
database decides every time."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.accounts import authcache, services
from apps.accounts.models import AuthSession, Role, User
from apps.accounts.tests.conftest import assert_refused, get_me, unverified
from apps.accounts.tests.factories import PASSWORD, TEST_ORIGIN, make_user
from apps.accounts.tests.test_sessions import UNREACHABLE_REDIS, _point_redis_at

pytestmark = pytest.mark.django_db


def me(token: str):
    """GET users/me; returns (response, number of SQL queries it ran)."""
    with CaptureQueriesContext(connection) as queries:
        response = get_me(token)
    return response, len(queries)


def stamp_of(redis_client, user) -> str | None:
    return redis_client.get(authcache.stamp_key(user.pk))


@pytest.fixture
def account(db):
    user, pair = make_user()
    return user, pair


@pytest.mark.redis
def test_the_second_request_reads_no_database(account, redis_client):
    user, pair = account
    first, n_first = me(pair.access)
    assert first.status_code == 200 and n_first == 1
    assert stamp_of(redis_client, user) is not None  # claimed by the first request
    for _ in range(3):
        again, n_again = me(pair.access)
        assert again.status_code == 200 and n_again == 0
        assert again.json() == first.json()


@pytest.mark.redis
def test_a_verified_address_costs_no_query_either(redis_client):
    """``email_verified`` is a column of the user row, not a look-up of allauth's address table:
    a user with a verified address is served from the cache too, and a change of it is seen."""
    user, pair = make_user(email="verified@example.com")
    services.email_verify(key=_verification_key(user), origin=TEST_ORIGIN)
    first, _ = me(pair.access)
    assert first.json()["email_verified"] is True
    again, n_again = me(pair.access)
    assert again.status_code == 200 and n_again == 0 and again.json()["email_verified"] is True
    services.user_update_profile(
        user=User.objects.get(pk=user.pk),
        email="new@example.com",
        current_password=PASSWORD,
        origin=TEST_ORIGIN,
    )
    changed, _ = me(pair.access)
    assert changed.json()["email"] == "new@example.com" and changed.json()["email_verified"] is False


def _verification_key(user) -> str:
    from allauth.account.models import EmailAddress, EmailConfirmationHMAC

    return EmailConfirmationHMAC(EmailAddress.objects.get(user_id=user.pk)).key


def _ban(user, pair):
    services.user_ban(actor=None, user=user, reason="spam", origin=TEST_ORIGIN)


def _logout(user, pair):
    services.session_logout(user=user, access=_access(pair), raw_refresh=pair.refresh, origin=TEST_ORIGIN)


def _access(pair):
    from apps.accounts.tokens import AccessToken

    return AccessToken(pair.access)


def _logout_all(user, pair):
    services.user_logout_all(user=user, origin=TEST_ORIGIN)


def _password_change(user, pair):
    services.user_password_change(
        user=user, old_password=PASSWORD, new_password="N3w-Secret-pass", origin=TEST_ORIGIN
    )


@pytest.mark.redis
@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        (_ban, 403, "user_banned"),
        (_logout, 401, "token_revoked"),
        (_logout_all, 401, "token_revoked"),
        (_password_change, 401, "token_revoked"),
    ],
)
def test_a_change_through_the_services_refuses_the_cached_token(
    account, redis_client, django_capture_on_commit_callbacks, change, status, code
):
    user, pair = account
    me(pair.access), me(pair.access)  # cached now
    before = stamp_of(redis_client, user)
    with django_capture_on_commit_callbacks(execute=True):
        change(user, pair)
    assert stamp_of(redis_client, user) != before  # other processes see it too
    assert_refused(get_me(pair.access), status, code)


@pytest.mark.redis
def test_profile_and_role_changes_show_on_the_next_request(
    account, redis_client, django_capture_on_commit_callbacks
):
    user, pair = account
    me(pair.access), me(pair.access)
    with django_capture_on_commit_callbacks(execute=True):
        services.user_update_profile(user=user, origin=TEST_ORIGIN, username="renamed")
        services.user_set_role(actor=None, user=user, role=Role.ADMIN, origin=TEST_ORIGIN)
    body = get_me(pair.access).json()
    assert (body["username"], body["role"]) == ("renamed", Role.ADMIN)


@pytest.mark.redis
def test_a_change_made_by_another_process_is_seen_through_the_stamp(account, redis_client):
    """Another process changed the row and replaced the stamp: this process must reload."""
    user, pair = account
    me(pair.access), me(pair.access)
    User.objects.filter(pk=user.pk).update(username="elsewhere")  # no signal: nothing local knows
    response, n = me(pair.access)
    assert response.json()["username"] == user.username and n == 0  # the stamp is unchanged
    redis_client.set(authcache.stamp_key(user.pk), "set-by-another-process")
    response, n = me(pair.access)
    assert response.json()["username"] == "elsewhere" and n == 1
    assert me(pair.access)[1] == 0  # cached again under the new stamp


@pytest.mark.redis
def test_entries_expire_after_max_age(account, monkeypatch):
    user, pair = account
    me(pair.access), me(pair.access)
    User.objects.filter(pk=user.pk).update(role=Role.BANNED)  # a write nobody announced
    assert me(pair.access)[0].status_code == 200
    start = authcache._clock()
    monkeypatch.setattr(authcache, "_clock", lambda: start + authcache.MAX_AGE_S + 1)
    assert_refused(get_me(pair.access), 403, "user_banned")


@pytest.mark.redis
def test_a_lost_stamp_means_the_database_decides_until_one_is_claimed(account, redis_client):
    user, pair = account
    me(pair.access), me(pair.access)
    redis_client.delete(authcache.stamp_key(user.pk))  # e.g. Redis restarted
    assert me(pair.access)[1] == 1
    assert stamp_of(redis_client, user) is not None
    assert me(pair.access)[1] == 0


@pytest.mark.redis
def test_a_row_loaded_while_someone_replaced_the_stamp_is_not_kept(account, redis_client):
    user, pair = account
    sid = unverified(pair.access)["sid"]
    redis_client.set(authcache.stamp_key(user.pk), "replaced-meanwhile")
    authcache.store(user.pk, sid, None, ("stale",))  # read "no stamp" before the DB: must not keep
    assert authcache.lookup(user.pk, sid, "replaced-meanwhile") is None
    assert me(pair.access)[1] == 1


@pytest.mark.redis
def test_a_session_ending_within_max_age_is_not_cached(account):
    user, pair = account
    soon = timezone.now() + timedelta(seconds=authcache.MAX_AGE_S / 3)
    AuthSession.objects.filter(user=user).update(expires_at=soon)
    assert me(pair.access)[1] == 1
    assert me(pair.access)[1] == 1


def test_without_redis_every_request_asks_the_database(account, settings):
    _user, pair = account
    real_url = settings.REDIS_URL
    _point_redis_at(settings, UNREACHABLE_REDIS)
    try:
        for _ in range(3):
            response, n = me(pair.access)
            assert response.status_code == 200 and n == 1
        assert authcache._entries == {}
    finally:
        _point_redis_at(settings, real_url)


@pytest.mark.redis
def test_redis_failing_forgets_what_was_cached(account, settings):
    _user, pair = account
    me(pair.access), me(pair.access)
    assert authcache._entries
    real_url = settings.REDIS_URL
    _point_redis_at(settings, UNREACHABLE_REDIS)
    try:
        assert me(pair.access)[1] == 1
        assert authcache._entries == {}
    finally:
        _point_redis_at(settings, real_url)
