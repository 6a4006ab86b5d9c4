"""Login sessions: refresh rotation, reuse detection, logout, logout-all, password change, bans,
and the Redis side of revocation (docs/security.md, "Who is asking", "When Redis is down")."""

from __future__ import annotations

import time

import pytest
from django.db import connection
from rest_framework.test import APIClient

from apps.accounts import revocation, services
from apps.accounts.models import AuthSession
from apps.accounts.tests.conftest import (
    LOGIN,
    LOGOUT,
    LOGOUT_ALL,
    PASSWORD_CHANGE,
    assert_refused,
    get_me,
    post_refresh,
    unverified,
)
from apps.accounts.tests.factories import PASSWORD, TEST_ORIGIN, make_user
from apps.core.errors import TokenRevoked
from apps.core.tests.helpers import client_for, retry_if_sqlite_locked, run_at_once

NEW_PASSWORD = "N3w-Secret-pass"


def _alive(pair) -> bool:
    """The access token of ``pair`` still works."""
    return get_me(pair.access).status_code == 200


def _assert_pair_dead(pair, code="token_revoked"):
    assert_refused(get_me(pair.access), 401, code)
    assert post_refresh(pair.refresh).status_code == 401


# --- refresh ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_refresh_rotates_and_the_old_refresh_token_dies(account):
    r = post_refresh(account.pair.refresh)
    assert r.status_code == 200, r.content
    new = r.json()
    assert set(new) == {"access", "refresh"}
    assert new["refresh"] != account.pair.refresh and new["access"] != account.pair.access
    old, rotated = unverified(account.pair.refresh), unverified(new["refresh"])
    assert rotated["sid"] == old["sid"] and rotated["jti"] != old["jti"]
    assert get_me(new["access"]).status_code == 200
    # The session now only accepts the new refresh token.
    assert AuthSession.objects.get(pk=old["sid"]).refresh_jti == rotated["jti"]

    assert_refused(post_refresh(account.pair.refresh), 401, "token_revoked")


@pytest.mark.django_db
def test_refresh_chain_keeps_working(account):
    refresh = account.pair.refresh
    for _ in range(3):
        r = post_refresh(refresh)
        assert r.status_code == 200, r.content
        refresh = r.json()["refresh"]
        assert get_me(r.json()["access"]).status_code == 200


@pytest.mark.django_db
def test_reused_refresh_token_ends_every_session(account):
    """Theft: a rotated-away refresh token comes back. The attacker gets nothing, and every
    token of the user dies: this session's new pair and every other login's pair."""
    other_login = account.login()
    r = post_refresh(account.pair.refresh)
    assert r.status_code == 200
    rotated = r.json()
    assert get_me(rotated["access"]).status_code == 200
    assert get_me(other_login.access).status_code == 200

    assert_refused(post_refresh(account.pair.refresh), 401, "token_revoked")

    assert_refused(get_me(rotated["access"]), 401, "token_revoked")
    assert_refused(get_me(other_login.access), 401, "token_revoked")
    assert_refused(post_refresh(rotated["refresh"]), 401, "token_revoked")
    assert_refused(post_refresh(other_login.refresh), 401, "token_revoked")
    assert not AuthSession.objects.filter(user=account.user, revoked_at__isnull=True).exists()
    assert set(AuthSession.objects.filter(user=account.user).values_list("revoked_reason", flat=True)) == {
        "refresh_reuse"
    }


@pytest.mark.django_db
def test_reuse_does_not_touch_other_users(account, other_account):
    post_refresh(account.pair.refresh)
    assert post_refresh(account.pair.refresh).status_code == 401
    assert get_me(other_account.pair.access).status_code == 200
    assert post_refresh(other_account.pair.refresh).status_code == 200


@pytest.mark.django_db
def test_refresh_of_a_revoked_session_is_refused(account):
    """Refresh tokens revoked by logout stop working."""
    r = client_for(account.pair.access).post(LOGOUT, {"refresh": account.pair.refresh}, format="json")
    assert r.status_code == 204, r.content
    assert post_refresh(account.pair.refresh).status_code == 401


@pytest.mark.django_db
def test_forged_and_garbage_refresh_tokens_are_refused(account, forge, foreign_rsa_key):
    claims = unverified(account.pair.refresh)
    for raw in [
        "garbage",
        forge.rs256(claims, key=foreign_rsa_key),
        forge.unsigned(claims),
        forge.rs256({**claims, "exp": int(time.time()) - 60}),
        forge.rs256({**claims, "iss": "evil"}),
    ]:
        assert_refused(post_refresh(raw), 401, "token_invalid")
    # None of that counted as reuse: the real token still works.
    assert post_refresh(account.pair.refresh).status_code == 200


@pytest.mark.django_db
def test_expired_session_refresh_is_refused(account):
    sid = unverified(account.pair.refresh)["sid"]
    AuthSession.objects.filter(pk=sid).update(expires_at="2000-01-01T00:00:00Z")
    assert_refused(post_refresh(account.pair.refresh), 401, "token_invalid")
    assert_refused(get_me(account.pair.access), 401, "token_revoked")


def _race(raw_refresh: str, contenders: int = 2):
    return run_at_once(
        lambda i: retry_if_sqlite_locked(
            lambda: services.session_refresh(raw_refresh=raw_refresh, origin=TEST_ORIGIN)
        ),
        contenders,
        timeout=30,
    )


@pytest.mark.django_db(transaction=True)
def test_concurrent_refreshes_with_one_token_give_one_pair():
    user, _ = make_user()
    for round_no in range(10):
        pair = services.user_login(identifier=user.username, password=PASSWORD, origin=TEST_ORIGIN)[1]
        results = _race(pair.refresh)
        winners = [r for r in results if isinstance(r, services.TokenPair)]
        losers = [r for r in results if not isinstance(r, services.TokenPair)]
        assert len(winners) == 1, (round_no, results)
        assert len(losers) == 1 and isinstance(losers[0], TokenRevoked), (round_no, results)


@pytest.mark.django_db(transaction=True)
def test_concurrent_refreshes_over_http_give_one_pair():
    user, _ = make_user()
    for round_no in range(5):
        pair = services.user_login(identifier=user.username, password=PASSWORD, origin=TEST_ORIGIN)[1]

        def refresh(i: int, raw: str = pair.refresh) -> tuple[int, bytes]:
            # Django's test client re-raises server errors through a process-wide signal, so
            # with two clients in flight one would receive the other's; answers are read
            # from the response instead.
            client = APIClient(raise_request_exception=False)
            for _ in range(200):
                response = client.post("/api/v1/auth/refresh", {"refresh": raw}, format="json")
                if not (response.status_code == 500 and connection.vendor == "sqlite"):
                    break
                time.sleep(0.005)  # SQLite in-memory "table is locked": see above
            return (response.status_code, response.content[:200])

        answers = run_at_once(refresh, 2, timeout=30)
        assert sorted(a[0] for a in answers) == [200, 401], (round_no, answers)
        assert b"token_revoked" in next(a[1] for a in answers if a[0] == 401)


# --- logout ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_logout_ends_this_session_only(account):
    other_login = account.login()
    r = client_for(account.pair.access).post(LOGOUT, {"refresh": account.pair.refresh}, format="json")
    assert r.status_code == 204, r.content
    assert_refused(get_me(account.pair.access), 401, "token_revoked")
    assert get_me(other_login.access).status_code == 200
    assert post_refresh(other_login.refresh).status_code == 200


@pytest.mark.django_db
def test_logout_revokes_the_jti_as_well_as_the_session(account, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        r = client_for(account.pair.access).post(LOGOUT, {"refresh": account.pair.refresh}, format="json")
    assert r.status_code == 204
    assert revocation.is_revoked(unverified(account.pair.access)["jti"])
    assert revocation.is_revoked(unverified(account.pair.refresh)["jti"])


@pytest.mark.django_db
def test_logout_with_someone_elses_refresh_is_refused(account, other_account):
    r = client_for(account.pair.access).post(LOGOUT, {"refresh": other_account.pair.refresh}, format="json")
    assert r.status_code == 400
    assert get_me(other_account.pair.access).status_code == 200


@pytest.mark.django_db
def test_logout_needs_a_valid_access_token(account):
    r = client_for(header="Bearer garbage").post(LOGOUT, {"refresh": account.pair.refresh}, format="json")
    assert_refused(r)
    assert get_me(account.pair.access).status_code == 200


@pytest.mark.django_db
def test_logout_all_ends_every_session(account, other_account):
    second = account.login()
    r = client_for(account.pair.access).post(LOGOUT_ALL)
    assert r.status_code == 204, r.content
    _assert_pair_dead(account.pair)
    _assert_pair_dead(second)
    assert not AuthSession.objects.filter(user=account.user, revoked_at__isnull=True).exists()
    # Other users keep their sessions, and the user can log in again.
    assert get_me(other_account.pair.access).status_code == 200
    assert _alive(account.login())


# --- password change -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_password_change_ends_old_sessions_and_returns_a_working_pair(account):
    second = account.login()
    r = client_for(account.pair.access).post(
        PASSWORD_CHANGE, {"old_password": PASSWORD, "new_password": NEW_PASSWORD}, format="json"
    )
    assert r.status_code == 200, r.content
    new = r.json()
    assert set(new) >= {"access", "refresh"}

    # The new pair works (access, then a refresh of it).
    assert get_me(new["access"]).status_code == 200
    rotated = post_refresh(new["refresh"])
    assert rotated.status_code == 200, rotated.content
    assert get_me(rotated.json()["access"]).status_code == 200

    # Every old token is dead: this session's and the other login's.
    assert_refused(get_me(account.pair.access), 401, "token_revoked")
    assert_refused(get_me(second.access), 401, "token_revoked")
    assert post_refresh(account.pair.refresh).status_code == 401
    assert post_refresh(second.refresh).status_code == 401

    # The old password no longer logs in; the new one does.
    login = {"username": account.user.username}
    assert APIClient().post(LOGIN, {**login, "password": PASSWORD}, format="json").status_code == 401
    assert APIClient().post(LOGIN, {**login, "password": NEW_PASSWORD}, format="json").status_code == 200


@pytest.mark.django_db
def test_failed_password_change_ends_nothing(account):
    r = client_for(account.pair.access).post(
        PASSWORD_CHANGE, {"old_password": "Wrong-pass-1", "new_password": NEW_PASSWORD}, format="json"
    )
    assert r.status_code == 400
    assert _alive(account.pair)


# --- ban -------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_ban_ends_every_session_and_unban_allows_login_again(account):
    second = account.login()
    services.user_ban(actor=None, user=account.user, reason="abuse", origin=TEST_ORIGIN)
    assert not AuthSession.objects.filter(user=account.user, revoked_at__isnull=True).exists()

    for pair in (account.pair, second):
        assert_refused(get_me(pair.access), 403, "user_banned")
        assert_refused(post_refresh(pair.refresh), 403, "user_banned")
    r = APIClient().post(LOGIN, {"username": account.user.username, "password": PASSWORD}, format="json")
    assert_refused(r, 403, "user_banned")

    account.user.refresh_from_db()
    services.user_unban(actor=None, user=account.user, origin=TEST_ORIGIN)
    r = APIClient().post(LOGIN, {"username": account.user.username, "password": PASSWORD}, format="json")
    assert r.status_code == 200, r.content
    assert get_me(r.json()["access"]).status_code == 200
    # Unbanning does not bring the old sessions back.
    assert_refused(get_me(account.pair.access), 401, "token_revoked")
    assert_refused(get_me(second.access), 401, "token_revoked")


@pytest.mark.django_db
def test_ban_takes_effect_on_the_next_request_even_with_a_live_session(account):
    """The role check alone refuses a banned user, even if the session row were still live."""
    from apps.accounts.models import Role

    type(account.user).objects.filter(pk=account.user.pk).update(role=Role.BANNED)
    assert AuthSession.objects.filter(user=account.user, revoked_at__isnull=True).exists()
    assert_refused(get_me(account.pair.access), 403, "user_banned")
    assert_refused(post_refresh(account.pair.refresh), 403, "user_banned")


@pytest.mark.django_db
def test_session_revoked_in_the_database_alone_is_refused(account):
    """The durable side: with the jti list empty (e.g. Redis restarted), the session row still
    ends the tokens."""
    AuthSession.objects.filter(user=account.user).update(revoked_at="2020-01-01T00:00:00Z")
    assert not revocation.is_revoked(unverified(account.pair.access)["jti"])
    assert_refused(get_me(account.pair.access), 401, "token_revoked")


# --- revocation in Redis -----------------------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.django_db
def test_logout_writes_revoked_jtis_to_redis_with_remaining_ttl(
    account, redis_client, django_capture_on_commit_callbacks
):
    access, refresh = unverified(account.pair.access), unverified(account.pair.refresh)
    key_a, key_r = f"token:revoked:{access['jti']}", f"token:revoked:{refresh['jti']}"
    assert not redis_client.exists(key_a)
    with django_capture_on_commit_callbacks(execute=True):
        r = client_for(account.pair.access).post(LOGOUT, {"refresh": account.pair.refresh}, format="json")
    assert r.status_code == 204
    now = time.time()
    assert redis_client.exists(key_a) and redis_client.exists(key_r)
    for key, claims in ((key_a, access), (key_r, refresh)):
        remaining = claims["exp"] - now
        ttl = redis_client.ttl(key)
        assert remaining - 10 <= ttl <= remaining + 2, (key, ttl, remaining)
    assert redis_client.ttl(key_a) < 3700 < redis_client.ttl(key_r)


@pytest.mark.redis
@pytest.mark.django_db
def test_rotation_writes_the_old_refresh_jti_to_redis(
    account, redis_client, django_capture_on_commit_callbacks
):
    old = unverified(account.pair.refresh)
    with django_capture_on_commit_callbacks(execute=True):
        assert post_refresh(account.pair.refresh).status_code == 200
    ttl = redis_client.ttl(f"token:revoked:{old['jti']}")
    assert old["exp"] - time.time() - 10 <= ttl <= old["exp"] - time.time() + 2


@pytest.mark.redis
@pytest.mark.django_db
def test_jti_revoked_by_another_node_is_refused(account, redis_client):
    """Only Redis knows (another node wrote it): this process must ask Redis."""
    jti = unverified(account.pair.access)["jti"]
    redis_client.set(f"token:revoked:{jti}", 1, ex=60)
    assert_refused(get_me(account.pair.access), 401, "token_revoked")


UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


def _point_redis_at(settings, url: str) -> None:
    from apps.core.redis import _client_for, redis_breaker

    settings.REDIS_URL = url
    _client_for.cache_clear()
    redis_breaker.reset()


@pytest.fixture
def redis_down(settings):
    """Point the raw Redis client at a port nothing listens on."""
    real_url = settings.REDIS_URL
    _point_redis_at(settings, UNREACHABLE_REDIS)
    yield
    _point_redis_at(settings, real_url)


@pytest.mark.django_db
def test_redis_down_falls_back_to_the_local_cache(account, redis_down, caplog):
    from apps.core.redis import get_redis

    assert get_redis() is not None  # really trying an unreachable server, not the embedded path
    claims = unverified(account.pair.access)
    revocation.revoke_jti(claims["jti"], claims["exp"])  # must not raise
    assert revocation.is_revoked(claims["jti"])
    assert not revocation.is_revoked("some-other-jti")
    # The service keeps answering: valid tokens pass, the revoked one is refused.
    assert_refused(get_me(account.pair.access), 401, "token_revoked")
    assert get_me(account.login().access).status_code == 200
    assert any("Redis unavailable" in rec.getMessage() for rec in caplog.records)


@pytest.mark.django_db
def test_logout_while_redis_is_down(account, redis_down, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        r = client_for(account.pair.access).post(LOGOUT, {"refresh": account.pair.refresh}, format="json")
    assert r.status_code == 204
    assert revocation.is_revoked(unverified(account.pair.access)["jti"])
    assert_refused(get_me(account.pair.access), 401, "token_revoked")


@pytest.mark.redis
@pytest.mark.django_db
def test_revocation_made_while_redis_was_down_survives_its_return(account, redis_client, settings):
    """A jti revoked during an outage stays revoked in this process once Redis answers again
    (Redis knows nothing of it, but the local cache does)."""
    claims = unverified(account.pair.access)
    real_url = settings.REDIS_URL
    _point_redis_at(settings, UNREACHABLE_REDIS)
    try:
        revocation.revoke_jti(claims["jti"], claims["exp"])
    finally:
        _point_redis_at(settings, real_url)  # Redis answers again
    assert not redis_client.exists(f"token:revoked:{claims['jti']}")
    assert revocation.is_revoked(claims["jti"])
    assert_refused(get_me(account.pair.access), 401, "token_revoked")
    # And Redis is used again at once for new revocations.
    other = unverified(account.login().access)
    revocation.revoke_jti(other["jti"], other["exp"])
    assert redis_client.exists(f"token:revoked:{other['jti']}")


def test_revoke_of_an_expired_token_is_a_no_op(db):
    revocation.revoke_jti("long-gone", time.time() - 10)
    assert not revocation.is_revoked("long-gone")


# --- a device that missed the news is not a thief -------------------------------------------------


@pytest.mark.django_db
def test_stale_device_after_password_change_is_refused_without_ending_the_new_session(account):
    """Device B still holds its session's current refresh token when device A changes the
    password: B's refresh is refused, and A's fresh session survives (only a rotated-away
    token means theft)."""
    device_b = services.user_login(identifier=account.user.username, password=PASSWORD, origin=TEST_ORIGIN)[1]
    r = client_for(account.pair.access).post(
        PASSWORD_CHANGE, {"old_password": PASSWORD, "new_password": NEW_PASSWORD}, format="json"
    )
    assert r.status_code == 200, r.content
    fresh = r.json()
    assert_refused(post_refresh(device_b.refresh), 401, "token_revoked")
    assert get_me(fresh["access"]).status_code == 200
    assert post_refresh(fresh["refresh"]).status_code == 200


@pytest.mark.django_db
def test_logged_out_refresh_token_is_refused_and_other_sessions_live(account):
    other = services.user_login(identifier=account.user.username, password=PASSWORD, origin=TEST_ORIGIN)[1]
    r = client_for(account.pair.access).post(LOGOUT, {"refresh": account.pair.refresh}, format="json")
    assert r.status_code == 204
    assert_refused(post_refresh(account.pair.refresh), 401, "token_revoked")
    assert _alive(other)


@pytest.mark.django_db
def test_rotated_away_token_of_an_ended_session_is_still_theft(account):
    other = services.user_login(identifier=account.user.username, password=PASSWORD, origin=TEST_ORIGIN)[1]
    rotated = post_refresh(account.pair.refresh).json()
    r = client_for(rotated["access"]).post(LOGOUT, {"refresh": rotated["refresh"]}, format="json")
    assert r.status_code == 204
    assert_refused(post_refresh(account.pair.refresh), 401, "token_revoked")
    _assert_pair_dead(other)
