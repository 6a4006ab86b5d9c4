"""The JWT key store: RS256 key pairs in the database, cached in each process.

Every node reads the same rows, so ``rotate_jwt_keys`` on one node reaches the others without a
restart: a node re-reads the set every JWT_KEYSET_REFRESH_SECONDS, and at once (at most once a
second) when it meets a ``kid`` it does not know.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import functools
import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from apps.accounts.models import SigningKey
from apps.core import crypto

logger = logging.getLogger(__name__)

MISS_RELOAD_INTERVAL = 1.0

# Set by ``KeyStore.offline()``: the caller runs on an event loop, where the database may not be read.
_offline: contextvars.ContextVar[bool] = contextvars.ContextVar("keystore_offline", default=False)


class KeysNotLoaded(Exception):
    """Within ``KeyStore.offline()``: the keys must be (re)read from the database first."""


@dataclass(frozen=True)
class LoadedKey:
    kid: str
    public_key: rsa.RSAPublicKey
    private_key: rsa.RSAPrivateKey | None  # only the signing key is decrypted


def generate_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=settings.JWT_RSA_KEY_BITS)


def private_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(key: rsa.RSAPublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def kid_for(public_key: rsa.RSAPublicKey) -> str:
    """RFC 7638-style thumbprint: the same key always gets the same kid on every node."""
    numbers = public_key.public_numbers()

    def b64(n: int) -> str:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    canonical = f'{{"e":"{b64(numbers.e)}","kty":"RSA","n":"{b64(numbers.n)}"}}'
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def _embedded_private_key_file() -> Path:
    """The embedded default's key pair, generated once under var/."""
    path = settings.VAR_DIR / "jwt_private.pem"
    if not path.exists():
        settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
        key = generate_private_key()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path
        with os.fdopen(fd, "wb") as fh:
            fh.write(private_pem(key))
        (settings.VAR_DIR / "jwt_public.pem").write_text(public_pem(key.public_key()))
    return path


@functools.lru_cache(maxsize=8)
def _load_pem_private_key(pem: bytes):
    """Parsing an RSA private key checks it and costs ~30 ms; the same PEM parses once."""
    return serialization.load_pem_private_key(pem, password=None)


def _seed_private_key() -> rsa.RSAPrivateKey:
    """The first key: from JWT_PRIVATE_KEY_FILE if given, var/ in development, else a new one."""
    path = settings.JWT_PRIVATE_KEY_FILE
    if not path and not settings.PRODUCTION:
        path = str(_embedded_private_key_file())
    if not path:
        return generate_private_key()
    key = _load_pem_private_key(Path(path).read_bytes())
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path} is not an RSA private key")
    if settings.JWT_PUBLIC_KEY_FILE:
        given = serialization.load_pem_public_key(Path(settings.JWT_PUBLIC_KEY_FILE).read_bytes())
        if public_pem(given) != public_pem(key.public_key()):  # type: ignore[arg-type]
            raise ValueError("JWT_PUBLIC_KEY_FILE does not match JWT_PRIVATE_KEY_FILE")
    return key


def _store(key: rsa.RSAPrivateKey, *, signing: bool) -> SigningKey:
    kid = kid_for(key.public_key())
    return SigningKey.objects.create(
        kid=kid,
        public_pem=public_pem(key.public_key()),
        private_key_encrypted=crypto.encrypt(private_pem(key), associated_data=kid.encode()),
        is_signing=signing,
    )


def verification_window() -> timedelta:
    """How long a retired key must keep verifying: the longest token life, plus leeway."""
    return max(settings.JWT_ACCESS_LIFETIME, settings.JWT_REFRESH_LIFETIME) + timedelta(
        seconds=settings.JWT_LEEWAY_SECONDS
    )


def verifiable_keys_queryset():
    cutoff = timezone.now() - verification_window()
    return SigningKey.objects.filter(Q(retired_at__isnull=True) | Q(retired_at__gt=cutoff))


def ensure_signing_key() -> SigningKey:
    """Return the signing key row, creating the first one if the store is empty.

    Two nodes starting together may both try; the one-signing-key constraint lets one win and
    the other reads the winner's row.
    """
    row = SigningKey.objects.filter(is_signing=True).first()
    if row is not None:
        return row
    key = _seed_private_key()
    try:
        with transaction.atomic():
            row = _store(key, signing=True)
        logger.info("JWT key store seeded with key %s", row.kid)
        return row
    except IntegrityError:
        return SigningKey.objects.get(is_signing=True)


def rotate_signing_key() -> tuple[SigningKey, SigningKey | None]:
    """Make a new signing key; the old one only verifies from now on. Returns (new, old)."""
    with transaction.atomic():
        old = SigningKey.objects.select_for_update().filter(is_signing=True).first()
        if old is not None:
            old.is_signing = False
            old.retired_at = timezone.now()
            old.save(update_fields=["is_signing", "retired_at"])
        new = _store(generate_private_key(), signing=True)
    keystore.invalidate()
    return new, old


class KeyStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, LoadedKey] = {}
        self._signing_kid: str | None = None
        self._loaded_at = 0.0
        self._last_miss_reload = 0.0

    def invalidate(self) -> None:
        self._loaded_at = 0.0

    def _load(self) -> None:
        ensure_signing_key()
        keys: dict[str, LoadedKey] = {}
        signing_kid = None
        for row in verifiable_keys_queryset():
            public_key = serialization.load_pem_public_key(row.public_pem.encode())
            private_key = None
            if row.is_signing:
                previous = self._keys.get(row.kid)
                if previous is not None and previous.private_key is not None:
                    private_key = previous.private_key  # decrypting and parsing costs ~1 ms
                else:
                    raw = crypto.decrypt(bytes(row.private_key_encrypted), associated_data=row.kid.encode())
                    private_key = _load_pem_private_key(raw)
                signing_kid = row.kid
            keys[row.kid] = LoadedKey(row.kid, public_key, private_key)  # type: ignore[arg-type]
        self._keys, self._signing_kid = keys, signing_kid
        self._loaded_at = time.monotonic()

    @contextlib.contextmanager
    def offline(self):
        """Within it, a lookup that would read the database (the set is due for its refresh, or a
        ``kid`` it does not hold may be new) raises KeysNotLoaded instead: verify there on an
        event loop, and again on a database thread when it raises."""
        reset = _offline.set(True)
        try:
            yield
        finally:
            _offline.reset(reset)

    def _fresh(self) -> None:
        if time.monotonic() - self._loaded_at > settings.JWT_KEYSET_REFRESH_SECONDS:
            if _offline.get():
                raise KeysNotLoaded()
            with self._lock:
                if time.monotonic() - self._loaded_at > settings.JWT_KEYSET_REFRESH_SECONDS:
                    self._load()

    def signing_key(self) -> LoadedKey:
        self._fresh()
        return self._keys[self._signing_kid]  # type: ignore[index]

    def verifying_key(self, kid: str) -> rsa.RSAPublicKey | None:
        self._fresh()
        found = self._keys.get(kid)
        if found is None and time.monotonic() - self._last_miss_reload > MISS_RELOAD_INTERVAL:
            if _offline.get():
                raise KeysNotLoaded()
            # Perhaps another node rotated a moment ago: look once, not on every bad token.
            with self._lock:
                self._last_miss_reload = time.monotonic()
                self._load()
            found = self._keys.get(kid)
        return found.public_key if found else None

    def jwks(self) -> dict:
        from jwt.algorithms import RSAAlgorithm

        self._fresh()
        keys = []
        for loaded in self._keys.values():
            jwk = RSAAlgorithm.to_jwk(loaded.public_key, as_dict=True)
            jwk.update({"kid": loaded.kid, "use": "sig", "alg": "RS256"})
            keys.append(jwk)
        return {"keys": keys}


keystore = KeyStore()
