"""``auth/email/resend`` without a login (docs/accounts.md, "E-mail addresses"): with
``ACCOUNT_EMAIL_VERIFICATION=mandatory`` a pending account cannot log in, so ``{email}`` asks
for a new link without one. The answer is byte for byte the same whatever the address is
(unknown, verified, unverified, pending); a link goes out only to an account holding the address
unverified; the limits count per IP and per hashed address before anything is looked up. The
form without a body stays what it was: the caller's own address, with a login."""

from __future__ import annotations

import json

import pytest
from allauth.account.models import EmailAddress

from apps.accounts.models import Role, User
from apps.accounts.tests.email_support import LOGIN, RESEND, VERIFY, key_from, templates_sent, texts
from apps.accounts.tests.factories import PASSWORD, create_user, make_user
from apps.accounts.tests.test_email_enumeration import post, visible
from apps.core.tests.helpers import assert_error, client_for
from apps.mail.models import OutboundEmail

pytestmark = pytest.mark.django_db


def ask(email, ip: str = "198.51.100.7"):
    return post(RESEND, {"email": email}, ip=ip)


@pytest.fixture
def limits(settings):
    """Limits on (the test settings turn them off), every one of them generous unless a test
    narrows it."""
    settings.RATELIMIT_ENABLE = True
    settings.RATELIMITS = {
        **settings.RATELIMITS,
        "email_resend_ip": "100/h",
        "email_resend_email": "100/h",
        "email_resend_user": "100/h",
    }
    return settings


@pytest.mark.usefixtures("mandatory")
def test_a_pending_account_gets_a_new_link_without_logging_in():
    r = client_for().post(
        "/api/v1/auth/register",
        {"username": "pat", "password": PASSWORD, "email": "pat@example.com"},
        format="json",
    )
    assert r.status_code == 202 and r.json()["user"]["role"] == "pending"
    login = {"username": "pat", "password": PASSWORD}
    assert_error(
        client_for(raise_request_exception=False).post(LOGIN, login, format="json"), 403, "account_pending"
    )

    answer = ask("PAT@example.com")
    assert answer.status_code == 202, answer.content
    assert templates_sent("pat@example.com") == ["verify_email", "verify_email"]
    key = key_from(texts("pat@example.com", "verify_email")[-1], "verify-email")
    assert client_for().post(VERIFY, {"key": key}, format="json").status_code == 200
    assert User.objects.get(username="pat").role == Role.USER
    assert client_for().post(LOGIN, login, format="json").status_code == 200


def _accounts_of_every_kind() -> None:
    """verified@, unverified@, pending@ (mandatory, unverified), banned@ (unverified)."""
    verified, _ = make_user("vera", email="verified@example.com")
    EmailAddress.objects.filter(user=verified).update(verified=True)
    User.objects.filter(pk=verified.pk).update(email_verified=True)
    make_user("uma", email="unverified@example.com")
    create_user("penny", role=Role.PENDING, email="pending@example.com")
    banned, _ = make_user("bart", email="banned@example.com")
    User.objects.filter(pk=banned.pk).update(role=Role.BANNED)


@pytest.mark.usefixtures("mandatory")
def test_the_answer_is_byte_identical_for_every_kind_of_address():
    _accounts_of_every_kind()
    before = {row.to: templates_sent(row.to) for row in OutboundEmail.objects.all()}
    addresses = [
        "nobody@example.com",
        "verified@example.com",
        "unverified@example.com",
        "pending@example.com",
        "banned@example.com",
    ]
    answers = {address: ask(address) for address in addresses}
    first = answers["nobody@example.com"]
    assert first.status_code == 202
    for address, answer in answers.items():
        assert (answer.content, visible(answer)) == (first.content, visible(first)), address
    assert json.loads(first.content) == {
        "detail": "If your address awaits verification, a new link is on its way."
    }
    # A link only where an account holds the address unverified (a banned account is not mailed).
    sent = {a: templates_sent(a)[len(before.get(a, [])) :] for a in addresses}
    assert sent == {
        "nobody@example.com": [],
        "verified@example.com": [],
        "unverified@example.com": ["verify_email"],
        "pending@example.com": ["verify_email"],
        "banned@example.com": [],
    }
    # The pending account had no address row (written directly): the resend made it.
    assert EmailAddress.objects.filter(email="pending@example.com", verified=False).exists()


def test_the_link_goes_through_the_mail_queue_after_commit(django_capture_on_commit_callbacks):
    """As the reset's mail: rendered and queued in the request, sent by the task after commit."""
    make_user("uma", email="unverified@example.com")
    queued = OutboundEmail.objects.count()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert ask("unverified@example.com").status_code == 202
    assert OutboundEmail.objects.count() == queued + 1
    assert len(callbacks) == 1  # the task is handed the row only once the request's changes commit


def test_without_verification_nothing_is_sent(settings):
    settings.ACCOUNT_EMAIL_VERIFICATION = "none"
    make_user("uma", email="unverified@example.com")
    assert ask("unverified@example.com").status_code == 202
    assert templates_sent("unverified@example.com") == []


# --- the form without a body: as it was -----------------------------------------------------------


def test_the_form_without_a_body_still_needs_a_login_and_sends_to_the_caller():
    _, pair = make_user("alice", email="alice@example.com")
    assert_error(post(RESEND, {}), 401)
    assert_error(client_for(raise_request_exception=False).post(RESEND), 401)
    assert post(RESEND, {}, token=pair.access).status_code == 202
    assert templates_sent("alice@example.com") == ["verify_email", "verify_email"]


def test_a_bad_token_is_still_refused_even_with_an_address():
    make_user("uma", email="unverified@example.com")
    r = post(RESEND, {"email": "unverified@example.com"}, token="not.a.token")
    assert_error(r, 401)
    assert templates_sent("unverified@example.com") == ["verify_email"]


def test_a_logged_in_caller_naming_an_address_uses_the_public_form():
    _, pair = make_user("alice", email="alice@example.com")
    make_user("uma", email="unverified@example.com")
    r = post(RESEND, {"email": "unverified@example.com"}, token=pair.access)
    assert r.status_code == 202
    assert templates_sent("unverified@example.com") == ["verify_email", "verify_email"]
    assert templates_sent("alice@example.com") == ["verify_email"]


# --- limits ---------------------------------------------------------------------------------------------


def test_the_limit_per_address_counts_unknown_addresses_alike(limits):
    limits.RATELIMITS = {**limits.RATELIMITS, "email_resend_email": "2/h"}
    make_user("uma", email="unverified@example.com")
    for email in ("unverified@example.com", "nobody@example.com"):
        answers = [ask(email, ip=f"198.51.100.{i}") for i in range(3)]
        assert [r.status_code for r in answers] == [202, 202, 429], email
        assert_error(answers[2], 429, "rate_limited")
    # Case and domain case count as one address.
    assert_error(ask("UNVERIFIED@EXAMPLE.COM", ip="198.51.100.50"), 429, "rate_limited")
    assert templates_sent("unverified@example.com") == ["verify_email"] * 3


def test_the_limit_per_ip_covers_both_forms(limits):
    limits.RATELIMITS = {**limits.RATELIMITS, "email_resend_ip": "2/h"}
    _, pair = make_user("alice", email="alice@example.com")
    assert ask("n1@example.com").status_code == 202
    assert post(RESEND, {}, token=pair.access).status_code == 202
    assert_error(ask("n2@example.com"), 429, "rate_limited")
    assert_error(post(RESEND, {}, token=pair.access), 429, "rate_limited")
    # Another address is another count.
    assert ask("n3@example.com", ip="198.51.100.8").status_code == 202


def test_the_address_and_ip_limits_are_counted_before_the_lookup(limits, django_assert_num_queries):
    """A refused request reads nothing about accounts: the refusal cannot depend on them."""
    limits.RATELIMITS = {**limits.RATELIMITS, "email_resend_email": "1/h"}
    make_user("uma", email="unverified@example.com")
    assert ask("unverified@example.com").status_code == 202
    with django_assert_num_queries(0):
        assert_error(ask("unverified@example.com"), 429, "rate_limited")


# --- bad input ------------------------------------------------------------------------------------------


BAD_BODIES = {
    "int": {"email": 12345678},
    "float": {"email": 1.5},
    "true": {"email": True},
    "null": {"email": None},
    "list": {"email": ["unverified@example.com"]},
    "object": {"email": {"x": "unverified@example.com"}},
    "empty": {"email": ""},
    "blank": {"email": "   "},
    "not_an_address": {"email": "no-at-sign"},
    "too_long": {"email": "a" * 250 + "@example.com"},
    "huge": {"email": "a" * 100_000 + "@example.com"},
    "nul_byte": {"email": "un\x00verified@example.com"},
    "lone_surrogate": {"email": "un\ud800verified@example.com"},
    "newline": {"email": "unverified\n@example.com"},
    "extra_field": {"email": "unverified@example.com", "username": "uma"},
    "only_junk": {"junk": 1},
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_bad_input_is_400_in_the_error_format(case):
    make_user("uma", email="unverified@example.com")
    queued = OutboundEmail.objects.count()
    raw = json.dumps(BAD_BODIES[case])
    r = client_for(raise_request_exception=False).generic(
        "POST", RESEND, raw, content_type="application/json"
    )
    error = assert_error(r, 400, "invalid")
    wanted = set(BAD_BODIES[case]) - {"email"} or {"email"}
    assert set(error["details"]) == wanted, error
    assert OutboundEmail.objects.count() == queued


@pytest.mark.parametrize(
    "raw", ['{"email": ', "[{}]", '"a@example.com"', "null", "[" * 100_000, b"\xff\xfe{}"]
)
def test_bodies_that_are_not_an_object_are_400(raw):
    r = client_for(raise_request_exception=False).generic(
        "POST", RESEND, raw, content_type="application/json"
    )
    assert_error(r, 400, "invalid")
