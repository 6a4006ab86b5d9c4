import pytest

from apps.accounts.tests.factories import make_user


@pytest.mark.django_db
def test_register_login_me_round_trip(api):
    r = api.post("/api/v1/auth/register", {"username": "alice", "password": "Passw0rd!x"}, format="json")
    assert r.status_code == 201, r.content
    r = api.post("/api/v1/auth/login", {"username": "alice", "password": "Passw0rd!x"}, format="json")
    assert r.status_code == 200
    api.credentials(HTTP_AUTHORIZATION="Bearer " + r.json()["access"])
    r = api.get("/api/v1/users/me")
    assert r.status_code == 200
    assert r.json()["username"] == "alice"
    assert r.json()["role"] == "user"


@pytest.mark.django_db
def test_factory_user_has_tokens():
    user, pair = make_user()
    assert user.pk and pair.access and pair.refresh
