"""The password rule of docs/security.md (8-128 characters, 3 of 4 classes, messages that say
which rule failed) and Argon2id 19456 KiB / t=2 / p=1 hashes, older hashes upgraded on login."""

from __future__ import annotations

import re

import argon2
import pytest
from django.conf import settings
from django.contrib.auth import password_validation
from django.contrib.auth.hashers import check_password, identify_hasher, make_password
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from apps.accounts.models import User
from apps.accounts.validators import PasswordPolicyValidator

ARGON2ID_PREFIX = "argon2$argon2id$v=19$m=19456,t=2,p=1$"

UPPER, LOWER, DIGIT, SPECIAL = "an uppercase letter", "a lowercase letter", "a digit", "a special character"
ALL_CLASSES = (UPPER, LOWER, DIGIT, SPECIAL)

# (password, error codes expected, classes it lacks when too simple)
RULE_TABLE = [
    # length
    pytest.param("Ab1!", {"password_too_short"}, None, id="4-chars"),
    pytest.param("Ab1!xyz", {"password_too_short"}, None, id="7-chars"),
    pytest.param("Ab1!xyzw", set(), None, id="8-chars-ok"),
    pytest.param("Ab1!" + "x" * 124, set(), None, id="128-chars-ok"),
    pytest.param("Ab1!" + "x" * 125, {"password_too_long"}, None, id="129-chars"),
    pytest.param("Ab1!" * 256, {"password_too_long"}, None, id="1024-chars"),
    pytest.param("", {"password_too_short", "password_too_simple"}, ALL_CLASSES, id="empty"),
    # classes: exactly 3 of 4 passes, in every combination
    pytest.param("abcdEFGH12", set(), None, id="upper-lower-digit"),
    pytest.param("abcdEFGH!?", set(), None, id="upper-lower-special"),
    pytest.param("abcd1234!?", set(), None, id="lower-digit-special"),
    pytest.param("ABCD1234!?", set(), None, id="upper-digit-special"),
    pytest.param("aB3$aB3$aB3$", set(), None, id="all-four"),
    pytest.param("correct horse 1", set(), None, id="space-is-special"),
    pytest.param("ÄÖÜäöü12", set(), None, id="non-ascii-letters-count"),
    # fewer than 3 classes
    pytest.param("abcdefghij", {"password_too_simple"}, (UPPER, DIGIT, SPECIAL), id="lower-only"),
    pytest.param("ABCDEFGHIJ", {"password_too_simple"}, (LOWER, DIGIT, SPECIAL), id="upper-only"),
    pytest.param("1234567890", {"password_too_simple"}, (UPPER, LOWER, SPECIAL), id="digits-only"),
    pytest.param("!@#$%^&*()", {"password_too_simple"}, (UPPER, LOWER, DIGIT), id="special-only"),
    pytest.param("abcdEFGHIJ", {"password_too_simple"}, (DIGIT, SPECIAL), id="upper-lower"),
    pytest.param("abcd123456", {"password_too_simple"}, (UPPER, SPECIAL), id="lower-digit"),
    pytest.param("1234!@#$%^", {"password_too_simple"}, (UPPER, LOWER), id="digit-special"),
    pytest.param("ABCD!@#$%^", {"password_too_simple"}, (LOWER, DIGIT), id="upper-special"),
    # several rules at once: every failure is reported
    pytest.param(
        "abc", {"password_too_short", "password_too_simple"}, (UPPER, DIGIT, SPECIAL), id="short-simple"
    ),
    pytest.param(
        "a" * 129, {"password_too_long", "password_too_simple"}, (UPPER, DIGIT, SPECIAL), id="long-simple"
    ),
]


def _lacks(message: str) -> set[str]:
    match = re.search(r"it lacks (.+)\.$", message)
    assert match, message
    return set(match.group(1).split(" and "))


def _check_messages(codes_and_messages: list[tuple[str, str]], codes: set[str], lacks) -> None:
    assert {code for code, _ in codes_and_messages} == codes
    for code, message in codes_and_messages:
        if code == "password_too_short":
            assert "too short" in message and "at least 8" in message
        elif code == "password_too_long":
            assert "too long" in message and "at most 128" in message
        elif code == "password_too_simple":
            assert "at least 3 of" in message
            assert _lacks(message) == set(lacks), message


@pytest.mark.parametrize(("password", "codes", "lacks"), RULE_TABLE)
def test_validator_table(password, codes, lacks):
    validator = PasswordPolicyValidator()
    if not codes:
        validator.validate(password)
        return
    with pytest.raises(ValidationError) as info:
        validator.validate(password)
    _check_messages([(e.code, e.messages[0]) for e in info.value.error_list], codes, lacks)


def test_validator_is_the_configured_rule():
    """Django's validate_password (what the services call) runs exactly this rule."""
    validators = password_validation.get_default_password_validators()
    assert [type(v) for v in validators] == [PasswordPolicyValidator]
    with pytest.raises(ValidationError):
        password_validation.validate_password("abcdefghij")
    assert "8 to 128 characters" in PasswordPolicyValidator().get_help_text()


@pytest.mark.django_db
@pytest.mark.parametrize(("password", "codes", "lacks"), RULE_TABLE)
def test_register_applies_the_rule(password, codes, lacks):
    api = APIClient(raise_request_exception=False)
    r = api.post("/api/v1/auth/register", {"username": "newbie", "password": password}, format="json")
    if not codes:
        assert r.status_code == 201, r.content
        user = User.objects.get(username="newbie")
        assert user.check_password(password)
        return
    assert r.status_code == 400, r.content
    error = r.json()["error"]
    assert error["code"] == "invalid"
    assert not User.objects.filter(username="newbie").exists()
    messages = error["details"]["password"]
    if password == "":
        assert messages == ["This field may not be blank."]  # refused before the rule runs
        return
    # Each failed rule is a message of its own; the summary message names the first.
    assert len(messages) == len(codes)
    by_code = []
    for message in messages:
        if "too short" in message:
            by_code.append(("password_too_short", message))
        elif "too long" in message:
            by_code.append(("password_too_long", message))
        else:
            by_code.append(("password_too_simple", message))
    _check_messages(by_code, codes, lacks)
    assert error["message"].startswith("password: ")


@pytest.mark.django_db
def test_password_change_applies_the_rule(api):
    from apps.accounts.tests.factories import PASSWORD, make_user

    user, pair = make_user()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {pair.access}")
    r = api.post(
        "/api/v1/auth/password/change",
        {"old_password": PASSWORD, "new_password": "abcdefghij"},
        format="json",
    )
    assert r.status_code == 400
    [message] = r.json()["error"]["details"]["new_password"]
    assert _lacks(message) == {UPPER, DIGIT, SPECIAL}
    old_hash = user.password
    user.refresh_from_db()
    assert user.password == old_hash


# --- the stored hash -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_registration_stores_argon2id_19456_2_1(api):
    r = api.post("/api/v1/auth/register", {"username": "newbie", "password": "Ab1!xyzw"}, format="json")
    assert r.status_code == 201
    stored = User.objects.get(username="newbie").password
    assert stored.startswith(ARGON2ID_PREFIX), stored
    params = argon2.extract_parameters(stored[len("argon2") :])
    assert (params.type, params.memory_cost, params.time_cost, params.parallelism) == (
        argon2.Type.ID,
        19456,
        2,
        1,
    )
    assert params.salt_len >= 16
    # It is a real Argon2id hash of the password, checkable without Django.
    assert argon2.PasswordHasher().verify(stored[len("argon2") :], "Ab1!xyzw")
    assert "Ab1!xyzw" not in stored


def test_make_password_uses_argon2id_with_random_salt():
    first, second = make_password("Ab1!xyzw"), make_password("Ab1!xyzw")
    assert first.startswith(ARGON2ID_PREFIX) and second.startswith(ARGON2ID_PREFIX)
    assert first != second  # random salt
    assert settings.PASSWORD_HASHERS[0] == "apps.accounts.hashers.Argon2idHasher"


# --- older hashes are upgraded on the next successful login -------------------------------------

PASSWORD = "Upgr4de-me!"


def _argon2(type_: argon2.Type, memory_cost: int, time_cost: int, parallelism: int) -> str:
    hasher = argon2.PasswordHasher(
        time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism, type=type_
    )
    return "argon2" + hasher.hash(PASSWORD)


OLD_HASHES = {
    "pbkdf2_sha256": lambda: make_password(PASSWORD, hasher="pbkdf2_sha256"),
    "scrypt": lambda: make_password(PASSWORD, hasher="scrypt"),
    "django_argon2_default": lambda: make_password(PASSWORD, hasher="argon2"),
    "argon2id_more_memory": lambda: _argon2(argon2.Type.ID, 65536, 2, 1),
    "argon2id_less_memory": lambda: _argon2(argon2.Type.ID, 8192, 2, 1),
    "argon2id_t3": lambda: _argon2(argon2.Type.ID, 19456, 3, 1),
    "argon2id_p2": lambda: _argon2(argon2.Type.ID, 19456, 2, 2),
    "argon2i_same_costs": lambda: _argon2(argon2.Type.I, 19456, 2, 1),
}


@pytest.mark.django_db
@pytest.mark.parametrize("kind", OLD_HASHES)
def test_old_hash_is_upgraded_on_login(api, kind):
    old = OLD_HASHES[kind]()
    assert not old.startswith(ARGON2ID_PREFIX)
    assert check_password(PASSWORD, old)  # still verifies
    user = User.objects.create(username="oldtimer", password=old)

    # A wrong password does not touch the stored hash.
    r = api.post("/api/v1/auth/login", {"username": "oldtimer", "password": "Wr0ng-pass!"}, format="json")
    assert r.status_code == 401
    user.refresh_from_db()
    assert user.password == old

    r = api.post("/api/v1/auth/login", {"username": "oldtimer", "password": PASSWORD}, format="json")
    assert r.status_code == 200, r.content
    user.refresh_from_db()
    assert user.password.startswith(ARGON2ID_PREFIX), user.password
    assert user.password != old
    assert identify_hasher(user.password).algorithm == "argon2"
    # The upgraded hash is of the same password: logging in again works and changes nothing.
    upgraded = user.password
    r = api.post("/api/v1/auth/login", {"username": "oldtimer", "password": PASSWORD}, format="json")
    assert r.status_code == 200
    user.refresh_from_db()
    assert user.password == upgraded


@pytest.mark.django_db
def test_current_hash_is_not_rewritten_on_login(api):
    current = make_password(PASSWORD)
    User.objects.create(username="fresh", password=current)
    r = api.post("/api/v1/auth/login", {"username": "fresh", "password": PASSWORD}, format="json")
    assert r.status_code == 200
    assert User.objects.get(username="fresh").password == current


@pytest.mark.django_db
@pytest.mark.parametrize(
    "stored",
    ["md5$salt$0123456789abcdef", "!unusable", "", "bcrypt$whatever"],
)
def test_unknown_or_broken_stored_hash_is_a_plain_401(api, stored):
    User.objects.create(username="broken", password=stored)
    api = APIClient(raise_request_exception=False)
    r = api.post("/api/v1/auth/login", {"username": "broken", "password": PASSWORD}, format="json")
    assert r.status_code == 401, r.content
    assert r.json()["error"]["code"] == "invalid_credentials"
    assert User.objects.get(username="broken").password == stored
