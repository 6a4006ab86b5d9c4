"""``manage.py healthcheck``: the readiness checks, with an exit code for scripts
(docs/operations.md, "Commands")."""

from __future__ import annotations

import json
from typing import Any

import httpx
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.core.health import run_checks


class Command(BaseCommand):
    help = (
        "Run the readiness checks (database, cache, Redis, channel layer) with this process's "
        "settings, or ask a running server's /readyz with --url; exit 0 when every check passes, "
        "1 when one fails (named in the output), 2 when the server cannot be asked."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--url",
            help="a running server's base address, e.g. http://127.0.0.1:8000: its /readyz decides",
        )
        parser.add_argument(
            "--host",
            help="the Host header to send with --url (one of ALLOWED_HOSTS; by default the URL's own)",
        )
        parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for --url (5)")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args: Any, url: str | None, host: str | None, timeout: float, **options: Any) -> None:
        checks = self._ask(url, host, timeout) if url else run_checks()
        failed = sorted(name for name, check in checks.items() if not check.get("ok"))
        if options["json"]:
            self.stdout.write(
                json.dumps({"status": "fail" if failed else "ok", "failed": failed, "checks": checks})
            )
        else:
            for name, check in checks.items():
                said = check.get("error") or check.get("note") or ""
                mark = "ok  " if check.get("ok") else "FAIL"
                self.stdout.write(f"{mark} {name}" + (f": {said}" if said else ""))
        if failed:
            # SystemExit, not CommandError: the output above already names what failed.
            raise SystemExit(1)

    def _ask(self, url: str, host: str | None, timeout: float) -> dict[str, dict]:
        address = url.rstrip("/") + "/readyz"
        try:
            response = httpx.get(address, timeout=timeout, headers={"Host": host} if host else None)
        except httpx.HTTPError as exc:
            raise CommandError(f"could not ask {address}: {exc}", returncode=2) from exc
        try:
            body = response.json() if response.status_code in (200, 503) else None
        except ValueError:
            body = None
        checks = body.get("checks") if isinstance(body, dict) else None
        if not isinstance(checks, dict):
            raise CommandError(
                f"{address} answered {response.status_code}, not a readiness report", returncode=2
            )
        return checks
