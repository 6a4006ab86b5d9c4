"""``manage.py healthcheck`` (docs/operations.md, "Commands"): the readiness checks with an exit
code, in this process or against a running server's /readyz."""

from __future__ import annotations

import json
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import CommandError, call_command, load_command_class
from django.test import override_settings

from apps.core.redis import _client_for
from tests.procs import ROOT, base_env, free_port

pytestmark = pytest.mark.django_db(transaction=True)

BROKEN_REDIS = "redis://127.0.0.1:1/0"


def healthcheck(*args: str) -> str:
    out = StringIO()
    call_command("healthcheck", *args, stdout=out)
    return out.getvalue()


def test_every_check_passes_here_and_it_says_so():
    text = healthcheck()
    assert [line.split()[:2] for line in text.splitlines()] == [
        ["ok", "database"],
        ["ok", "cache"],
        ["ok", "redis" + (":" if "embedded" in text else "")],
        ["ok", "channel_layer"],
        ["ok", "accepting"],
    ]
    report = json.loads(healthcheck("--json"))
    assert report["status"] == "ok" and report["failed"] == []
    assert set(report["checks"]) == {"database", "cache", "redis", "channel_layer", "accepting"}


@pytest.mark.redis
def test_a_failing_dependency_is_named_and_exits_1():
    out = StringIO()
    _client_for.cache_clear()
    try:
        with override_settings(REDIS_URL=BROKEN_REDIS), pytest.raises(SystemExit) as exited:
            call_command("healthcheck", stdout=out)
    finally:
        _client_for.cache_clear()
    assert exited.value.code == 1
    failing = [line for line in out.getvalue().splitlines() if line.startswith("FAIL")]
    assert len(failing) == 1 and failing[0].startswith("FAIL redis: ") and "onnect" in failing[0]


def test_url_asks_a_running_servers_readyz(live_server):
    report = json.loads(healthcheck("--url", live_server.url, "--json"))
    assert report["status"] == "ok", report
    assert report["checks"]["database"]["ok"] is True


def test_host_is_the_host_header_sent(live_server):
    """A production server answers only the names in ALLOWED_HOSTS: --host sends one of them."""
    with override_settings(ALLOWED_HOSTS=["synctv.example"]):
        with pytest.raises(CommandError, match="answered 400") as refused:
            healthcheck("--url", live_server.url)
        assert refused.value.returncode == 2
        report = json.loads(healthcheck("--url", live_server.url, "--host", "synctv.example", "--json"))
    assert report["status"] == "ok"


def test_a_server_that_does_not_answer_or_answers_something_else_is_exit_2(live_server):
    with pytest.raises(CommandError, match="could not ask") as refused:
        healthcheck("--url", f"http://127.0.0.1:{free_port()}", "--timeout", "2")
    assert refused.value.returncode == 2
    with pytest.raises(CommandError, match="answered 404") as wrong:
        healthcheck("--url", f"{live_server.url}/no-such-place")
    assert wrong.value.returncode == 2


def test_the_exit_codes_reach_a_script(tmp_path):
    """As a container's HEALTHCHECK or a shell script runs it: its exit status (here on the
    embedded default, in a folder of its own)."""
    env = base_env(SYNCTV_VAR_DIR=str(tmp_path))
    ok = subprocess.run([sys.executable, "manage.py", "healthcheck"], cwd=ROOT, env=env, capture_output=True)
    assert ok.returncode == 0, ok.stderr.decode()
    down = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "healthcheck",
            "--url",
            f"http://127.0.0.1:{free_port()}",
            "--timeout",
            "1",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
    )
    assert down.returncode == 2 and b"could not ask" in down.stderr


def test_help_says_what_it_checks_and_the_exit_codes():
    command = load_command_class("apps.core", "healthcheck")
    text = " ".join(command.create_parser("manage.py", "healthcheck").format_help().split())
    assert "readiness checks" in text and "--url" in text and "exit 0" in text and "--json" in text
