"""Stream keys (apps.streaming.keys): shape, randomness, the keyed hash."""

from __future__ import annotations

from django.test import override_settings

from apps.streaming import keys


def test_a_key_is_sk_and_32_random_bytes_urlsafe():
    made = {keys.new_key() for _ in range(200)}
    assert len(made) == 200
    assert all(keys.looks_like_key(k) and len(k) == 46 for k in made)


def test_looks_like_key_refuses_everything_else():
    key = keys.new_key()
    for other in (None, 5, "", key[:-1], key + "A", "pk_" + key[3:], key[:10] + "+" + key[11:], key + "\n"):
        assert not keys.looks_like_key(other), other


def test_the_hash_is_keyed_by_the_server_secret():
    key = keys.new_key()
    stored = keys.key_hash(key)
    assert len(stored) == 64 and key not in stored
    assert keys.matches(key, stored) and not keys.matches(keys.new_key(), stored)
    with override_settings(SECRET_KEY="another-server-secret-" + "x" * 40):
        assert keys.key_hash(key) != stored and not keys.matches(key, stored)
