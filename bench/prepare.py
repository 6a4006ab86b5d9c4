"""bench/run step: seed the JWT key store, create the bench user, mint its access token.

Runs with the production environment bench/run exports. Prints one JSON object:
{"access": ..., "username": ..., "user_id": ..., "kid": ...} and writes the verifying key
(PEM) to the path given as argv[1] so the bare-floor project verifies the same token.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "synctv.settings")

import django  # noqa: E402

django.setup()

from apps.accounts import services  # noqa: E402
from apps.accounts.keystore import ensure_signing_key  # noqa: E402
from apps.core.context import Origin  # noqa: E402


def main() -> None:
    pem_path = Path(sys.argv[1])
    row = ensure_signing_key()
    pem_path.write_text(row.public_pem)
    username = os.environ.get("BENCH_USERNAME", "bench_user")
    # A password that passes the password rule (3 of 4 classes, >= 8 chars).
    password = os.environ.get("BENCH_PASSWORD") or f"Bench-{secrets.token_hex(8)}"
    user, pair = services.user_register(
        username=username,
        password=password,
        email=f"{username}@bench.invalid",
        origin=Origin(ip="127.0.0.1", user_agent="bench/prepare"),
    )
    if pair is None:
        sys.exit("bench user is pending review (ACCOUNT_REVIEW_REQUIRED?); cannot get a token")
    print(
        json.dumps(
            {
                "access": pair.access,
                "username": user.username,
                "password": password,
                "user_id": user.pk,
                "kid": row.kid,
            }
        )
    )


if __name__ == "__main__":
    main()
