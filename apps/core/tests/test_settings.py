"""Defaults that synctv/settings.py derives from other variables, read from a fresh run of the
module under a given environment (the running test settings stay as they are)."""

from __future__ import annotations

import base64
import runpy
import secrets

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

SETTINGS_FILE = settings.BASE_DIR / "synctv" / "settings.py"
ORIGIN_VARIABLES = ("CORS_ALLOWED_ORIGINS", "PUBLIC_URL", "PORT", "SYNCTV_ENV")


@pytest.fixture
def load(monkeypatch, tmp_path):
    """The settings module's values under ``env`` (nothing about origins set unless given)."""

    def run(**env: str) -> dict:
        for name in ORIGIN_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("SYNCTV_VAR_DIR", str(tmp_path / "var"))
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return runpy.run_path(str(SETTINGS_FILE))

    return run


def test_default_origins_follow_port_in_development(load):
    values = load(PORT="9000")
    assert values["PUBLIC_URL"] == "http://localhost:9000"
    assert values["CORS_ALLOWED_ORIGINS"] == ["http://localhost:9000", "http://127.0.0.1:9000"]
    assert values["CSRF_TRUSTED_ORIGINS"] == values["CORS_ALLOWED_ORIGINS"]


def test_default_origins_without_port_stay_on_8000(load):
    values = load()
    assert values["PUBLIC_URL"] == "http://localhost:8000"
    assert values["CORS_ALLOWED_ORIGINS"] == ["http://localhost:8000", "http://127.0.0.1:8000"]


@pytest.mark.parametrize(
    ("public_url", "origin"),
    [
        ("https://tv.example.com", "https://tv.example.com"),
        ("https://TV.example.com:443/watch/", "https://tv.example.com"),
        ("http://tv.example.com:8080/", "http://tv.example.com:8080"),
        ("http://[2001:db8::1]:9000", "http://[2001:db8::1]:9000"),
    ],
)
def test_default_origins_include_public_url_origin(load, public_url, origin):
    values = load(PORT="9000", PUBLIC_URL=public_url)
    assert values["CORS_ALLOWED_ORIGINS"] == [origin, "http://localhost:9000", "http://127.0.0.1:9000"]


def test_production_default_origin_is_public_url_only(load):
    values = load(
        SYNCTV_ENV="production",
        PORT="9000",
        PUBLIC_URL="https://tv.example.com/",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        SYNCTV_ENCRYPTION_KEY=base64.b64encode(secrets.token_bytes(32)).decode(),
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/unused",
        REDIS_URL="redis://127.0.0.1:6379/0",
    )
    assert values["CORS_ALLOWED_ORIGINS"] == ["https://tv.example.com"]


def test_unusable_public_url_adds_no_origin(load):
    values = load(PORT="9000", PUBLIC_URL="localhost:9000")
    assert values["CORS_ALLOWED_ORIGINS"] == ["http://localhost:9000", "http://127.0.0.1:9000"]


def test_explicit_origins_win(load):
    values = load(PORT="9000", CORS_ALLOWED_ORIGINS="https://a.example,https://b.example")
    assert values["CORS_ALLOWED_ORIGINS"] == ["https://a.example", "https://b.example"]


def test_streaming_secrets_follow_the_secret_key_unless_set(load):
    """Derived from DJANGO_SECRET_KEY, so Django, the worker and scripts/rtmp agree without another
    variable; distinct per purpose; an explicit value wins; nothing of the secret key shows."""
    key = secrets.token_urlsafe(50)
    first, second = load(DJANGO_SECRET_KEY=key), load(DJANGO_SECRET_KEY=key)
    assert first["RTMP_CALLBACK_SECRET"] == second["RTMP_CALLBACK_SECRET"]
    assert first["HLS_SIGNING_SECRET"] == second["HLS_SIGNING_SECRET"]
    assert first["RTMP_CALLBACK_SECRET"] != first["HLS_SIGNING_SECRET"]
    assert len(first["HLS_SIGNING_SECRET"]) >= 32 and key not in first["HLS_SIGNING_SECRET"]
    other = load(DJANGO_SECRET_KEY=secrets.token_urlsafe(50))
    assert other["RTMP_CALLBACK_SECRET"] != first["RTMP_CALLBACK_SECRET"]
    assert (
        load(DJANGO_SECRET_KEY=key, RTMP_CALLBACK_SECRET="chosen-secret")["RTMP_CALLBACK_SECRET"]
        == "chosen-secret"
    )


def test_rtmp_callback_networks_must_be_networks(load):
    assert load(RTMP_CALLBACK_NETWORKS="10.0.0.0/8,::1")["RTMP_CALLBACK_NETWORKS"] == ["10.0.0.0/8", "::1"]
    with pytest.raises(ImproperlyConfigured, match="RTMP_CALLBACK_NETWORKS"):
        load(RTMP_CALLBACK_NETWORKS="10.0.0.0/8,not-a-network")
