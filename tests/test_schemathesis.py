"""Schemathesis over /api/schema/ against a running server (README, "Test it"): cases generated
from the schema (coverage, fuzzing and stateful phases) by an anonymous and by an authenticated
caller. No answer may be a 5xx, carry an undocumented status or content type, or break the
schema documented for its status.

The authenticated run leaves out the three operations that end the caller's own sessions
(logout, logout-all, password change): after the first one every later case would be a 401.
The anonymous run calls them too. The seed is fixed, so a failure reproduces.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import httpx
import pytest

from tests.procs import base_env, free_port, running, wait_http
from tests.procs import run as run_command

pytestmark = [pytest.mark.slow]

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
SESSION_ENDING = r"^/api/v1/auth/(logout|logout-all|password/change)$"
PASSWORD = "Corr3ct-horse-battery"


def schemathesis() -> str:
    found = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")
    if not Path(found).exists():
        pytest.fail("schemathesis not found: it is in requirements-dev.txt")
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The embedded default (scripts/run's server) on a port of its own, without rate limits (the
    generator sends thousands of requests from one address)."""
    var = tmp_path_factory.mktemp("schemathesis-var")
    port = free_port()
    env = base_env(SYNCTV_VAR_DIR=str(var), PORT=str(port), RATELIMIT_ENABLE="false", LOG_LEVEL="WARNING")
    for step in ("migrate --noinput", "generate_jwt_keys"):
        done = run_command(f"python manage.py {step}", env=env, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
    log = var / "server.log"
    command = f"uvicorn synctv.asgi:application --host 127.0.0.1 --port {port} --log-level warning"
    with running(command, env=env, log=log) as proc:
        base = f"http://127.0.0.1:{port}"
        assert wait_http(f"{base}/healthz", proc=proc, log=log, timeout=60).status_code == 200
        yield base, env, var


def fuzz(base: str, env: dict, report: Path, *extra: str) -> dict:
    # From the report's folder: schemathesis keeps a cache in its working directory
    # (.schemathesis/), which would otherwise land in the checkout and change the next run.
    done = run_command(
        " ".join(
            [
                schemathesis(),
                "run",
                f"'{base}/api/schema/?format=json'",
                f"--url {base}",
                "--max-examples 20",
                "--seed 20261205",
                f"--checks {CHECKS}",
                "--report json",
                f"--report-json-path {report}",
                "--no-color",
                *extra,
            ]
        ),
        env=env,
        cwd=report.parent,
        timeout=600,
    )
    summary = json.loads(report.read_text()) if report.exists() else {}
    assert done.returncode == 0 and not summary.get("failures"), done.stdout[-6000:] + done.stderr[-2000:]
    return summary


def test_no_generated_case_gets_a_5xx_or_an_answer_the_schema_does_not_describe(server):
    base, env, var = server
    anonymous = fuzz(base, env, var / "anonymous.json")
    r = httpx.post(
        f"{base}/api/v1/auth/register", json={"username": "fuzzer", "password": PASSWORD}, timeout=10
    )
    assert r.status_code == 201, r.text
    token = r.json()["access"]
    authenticated = fuzz(
        base,
        env,
        var / "authenticated.json",
        f"-H 'Authorization: Bearer {token}'",
        f"--exclude-path-regex '{SESSION_ENDING}'",
    )
    for summary in (anonymous, authenticated):
        assert summary["complete"] and summary["test_cases"]["errored"] == 0, summary["test_cases"]
        assert summary["test_cases"]["with_failures"] == 0
        assert summary["operations"]["tested"] >= 40, summary["operations"]
    cases = [s["test_cases"]["generated"] for s in (anonymous, authenticated)]
    assert min(cases) >= 1000, cases
    print(f"[schemathesis] anonymous {cases[0]} cases, authenticated {cases[1]} cases, 0 failures")
