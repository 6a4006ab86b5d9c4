"""No enumeration through the e-mail flows (issue 12, "Must show"; docs/security.md, "Account
enumeration"): register (mandatory verification), reset and resend answer the same status,
headers and body for a known and an unknown address, spend the same password hashing on both
sides, and their rate limits (per IP, per address, per account) count before anything is looked
up, so a refusal does not tell either."""

from __future__ import annotations

import pytest
from django.contrib.auth.hashers import Argon2PasswordHasher

from apps.accounts.models import User
from apps.accounts.tests.email_support import REGISTER, RESEND, RESET, templates_sent
from apps.accounts.tests.factories import make_user
from apps.audit.models import AuditEvent
from apps.core.tests.helpers import assert_error, client_for

pytestmark = pytest.mark.django_db

PASSWORD = "N3w-passw0rd!"


def post(path: str, body: dict, ip: str = "198.51.100.7", token: str | None = None):
    return client_for(token, raise_request_exception=False, REMOTE_ADDR=ip).post(path, body, format="json")


def visible(response) -> tuple:
    return response.status_code, sorted(k for k in response.headers if k.lower() != "date")


@pytest.fixture
def hashes(monkeypatch) -> list[str]:
    """Every Argon2id hash computed, by password."""
    computed: list[str] = []
    real = Argon2PasswordHasher.encode

    def counting(self, password, salt):
        computed.append(password)
        return real(self, password, salt)

    monkeypatch.setattr(Argon2PasswordHasher, "encode", counting)
    return computed


@pytest.mark.usefixtures("mandatory")
def test_mandatory_register_answers_the_same_for_a_known_address(hashes):
    owner, _ = make_user("owner", email="owner@example.com")
    hashes.clear()
    known = post(REGISTER, {"username": "newbie1", "password": PASSWORD, "email": "Owner@Example.com"})
    hashed_known = len(hashes)
    unknown = post(REGISTER, {"username": "newbie2", "password": PASSWORD, "email": "fresh@example.com"})
    assert visible(known) == visible(unknown) and known.status_code == 202, (known.content, unknown.content)
    k, u = known.json()["user"], unknown.json()["user"]
    assert set(known.json()) == set(unknown.json()) == {"user"}
    assert set(k) == set(u)
    assert len(k["id"]) == len(u["id"])
    assert (k["role"], k["email_verified"], k["email"]) == ("pending", False, "Owner@example.com")
    assert (u["role"], u["email_verified"], u["email"]) == ("pending", False, "fresh@example.com")
    # The same hashing on both sides: one Argon2id hash of the password each.
    assert hashed_known == 1 and len(hashes) == 2
    # No account for the known address; its owner was told, the new address got its link.
    assert not User.objects.filter(username="newbie1").exists()
    assert User.objects.get(username="newbie2").email == "fresh@example.com"
    assert templates_sent("owner@example.com") == [
        "verify_email",
        "account_exists",
    ]  # its own sign-up, then this
    assert templates_sent("fresh@example.com") == ["verify_email"]
    owner.refresh_from_db()
    assert owner.email == "owner@example.com"
    assert AuditEvent.objects.filter(action="user.register", details__created=False).count() == 1


@pytest.mark.usefixtures("mandatory")
def test_the_username_tried_with_a_known_address_stays_taken():
    """Else registering the same name again with another address would tell the two apart."""
    make_user("owner", email="owner@example.com")
    assert (
        post(
            REGISTER, {"username": "newbie1", "password": PASSWORD, "email": "owner@example.com"}
        ).status_code
        == 202
    )
    assert (
        post(REGISTER, {"username": "newbie2", "password": PASSWORD, "email": "a@example.com"}).status_code
        == 202
    )
    for name in ("newbie1", "NEWBIE2"):
        again = post(REGISTER, {"username": name, "password": PASSWORD, "email": "b@example.com"})
        assert assert_error(again, 400, "invalid")["details"] == {"username": ["This username is taken."]}


def test_optional_register_with_a_known_address_tells_its_owner():
    make_user("owner", email="owner@example.com")
    r = post(REGISTER, {"username": "newbie", "password": PASSWORD, "email": "owner@example.com"})
    assert r.status_code == 201
    assert templates_sent("owner@example.com") == ["verify_email", "account_exists"]
    assert User.objects.get(username="newbie").email is None


def test_reset_answers_byte_identical_for_known_and_unknown(hashes):
    make_user("alice", email="alice@example.com")
    hashes.clear()
    known = post(RESET, {"email": "alice@example.com"})
    unknown = post(RESET, {"email": "nobody@example.com"})
    assert known.status_code == unknown.status_code == 202
    assert known.content == unknown.content
    assert visible(known) == visible(unknown)
    assert hashes == []
    assert templates_sent("alice@example.com")[-1] == "reset_password"
    assert templates_sent("nobody@example.com") == []


def test_resend_answers_byte_identical_whatever_there_is_to_send():
    _, unverified = make_user("alice", email="alice@example.com")
    _, without = make_user("bob")
    a = post(RESEND, {}, token=unverified.access)
    b = post(RESEND, {}, token=without.access)
    assert a.status_code == b.status_code == 202
    assert a.content == b.content and visible(a) == visible(b)


def test_reset_limit_per_address_counts_unknown_addresses_alike(settings):
    settings.RATELIMIT_ENABLE = True
    settings.RATELIMITS = {**settings.RATELIMITS, "password_reset_email": "2/h", "password_reset_ip": "100/h"}
    make_user("alice", email="alice@example.com")
    for email in ("alice@example.com", "nobody@example.com"):
        answers = [post(RESET, {"email": email}, ip=f"198.51.100.{i}") for i in range(3)]
        assert [r.status_code for r in answers] == [202, 202, 429], email
        assert_error(answers[2], 429, "rate_limited")
        # Case and domain case count as one address.
    refused = post(RESET, {"email": "ALICE@EXAMPLE.COM"}, ip="198.51.100.50")
    assert_error(refused, 429, "rate_limited")
    assert templates_sent("alice@example.com").count("reset_password") == 2


def test_reset_limit_per_ip(settings):
    settings.RATELIMIT_ENABLE = True
    settings.RATELIMITS = {**settings.RATELIMITS, "password_reset_ip": "2/h"}
    answers = [post(RESET, {"email": f"n{i}@example.com"}) for i in range(3)]
    assert [r.status_code for r in answers] == [202, 202, 429]
    assert post(RESET, {"email": "n9@example.com"}, ip="198.51.100.8").status_code == 202


def test_resend_limit_per_account(settings):
    settings.RATELIMIT_ENABLE = True
    settings.RATELIMITS = {**settings.RATELIMITS, "email_resend_user": "1/h"}
    _, pair = make_user("alice", email="alice@example.com")
    assert post(RESEND, {}, token=pair.access).status_code == 202
    assert_error(post(RESEND, {}, token=pair.access, ip="198.51.100.9"), 429, "rate_limited")
    assert templates_sent("alice@example.com") == ["verify_email", "verify_email"]
