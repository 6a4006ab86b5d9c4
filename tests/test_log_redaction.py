"""A token in a URL's query string never reaches a log line.

docs/api.md lets a WebSocket client authenticate with ``/ws/rooms/{id}/?token=<access token>``;
uvicorn's access log writes the full request line, and the app's own request line
(``synctv.request``, the only access log of ``web``) the path. Here the Procfile's ``ws``
(uvicorn) and ``web`` (gunicorn) commands run for real on the embedded default, a client
connects with ``?token=`` and sends HTTP requests carrying ``?token=``/``?code=``, and the whole
output of the process is searched for the secrets.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import websockets

from tests.procs import base_env, free_port, procfile_command, running, wait_http
from tests.procs import run as run_command

pytestmark = [pytest.mark.slow]
PASSWORD = "Corr3ct-horse"


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory):
    """One migrated embedded-default database for the module's processes."""
    folder = tmp_path_factory.mktemp("log-redaction")
    done = run_command("python manage.py migrate --noinput -v0", env=_env(folder, 0), timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    return folder


def _env(folder, port: int) -> dict:
    return base_env(
        SYNCTV_VAR_DIR=str(folder),
        PORT=str(port),
        RATELIMIT_ENABLE="false",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        CORS_ALLOWED_ORIGINS=f"http://127.0.0.1:{port}",
        # Django's own loggers at INFO too, so django.request lines would show a leak.
        LOG_LEVEL="INFO",
    )


def _account(base: str, username: str) -> tuple[str, str]:
    with httpx.Client(base_url=f"{base}/api/v1/", timeout=15) as client:
        r = client.post("auth/register", json={"username": username, "password": PASSWORD})
        assert r.status_code == 201, r.text
        access = r.json()["access"]
        r = client.post("rooms", json={"name": "logs"}, headers={"Authorization": f"Bearer {access}"})
        assert r.status_code == 201, r.text
        return access, r.json()["id"]


async def _connect_with_query_token(port: int, room_id: str, token: str) -> dict:
    url = f"ws://127.0.0.1:{port}/ws/rooms/{room_id}/?token={token}"
    async with websockets.connect(url, origin=f"http://127.0.0.1:{port}", open_timeout=10) as ws:
        return json.loads(await asyncio.wait_for(ws.recv(), timeout=10))


@pytest.mark.parametrize("process", ["ws", "web"])
def test_query_string_tokens_are_redacted_from_the_process_output(process, var_dir, tmp_path):
    port = free_port()
    env = _env(var_dir, port)
    log = tmp_path / f"{process}.log"
    base = f"http://127.0.0.1:{port}"
    oauth_code = "oauthcode-" + "q" * 24
    with running(procfile_command(process), env=env, log=log) as proc:
        wait_http(f"{base}/healthz", proc=proc, log=log, timeout=60)
        access, room_id = _account(base, f"logs_{process}")
        if process == "ws":
            hello = asyncio.run(_connect_with_query_token(port, room_id, access))
            assert hello["type"] == "hello", hello
        # HTTP with the secrets in the query string: 200, 401 (the API refuses the bad
        # token in the URL and Django logs the 4xx) and 404 (Django logs "Not Found").
        assert httpx.get(f"{base}/healthz?token={access}", timeout=10).status_code == 200
        assert httpx.get(f"{base}/api/v1/users/me?token={access}", timeout=10).status_code == 401
        r = httpx.get(f"{base}/oauth/nowhere/callback/?code={oauth_code}&state=s&token={access}", timeout=10)
        assert r.status_code in (200, 404), r.status_code
        # Wait until the last request's line is written (the order of the log is the order of
        # the requests), rather than for a fixed time: uvicorn's access line with the query
        # string redacted, or the app's request line (web), which writes the path alone.
        last = "state=s&token=[redacted]" if process == "ws" else f"/oauth/nowhere/callback/ {r.status_code}"
        deadline = time.monotonic() + 15
        while last not in log.read_text(errors="replace"):
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.05)
    output = log.read_text(errors="replace")
    leaks = [line[:200] for line in output.splitlines() if access in line or oauth_code in line]
    assert not leaks, "secrets in the log:\n" + "\n".join(leaks)
    assert access.split(".")[-1] not in output  # not even the signature part
    # The requests were logged (else the test would prove nothing).
    if process == "ws":
        assert "/healthz?token=[redacted]" in output, output[-3000:]
        assert "code=[redacted]&state=s&token=[redacted]" in output, output[-3000:]
        assert f"/ws/rooms/{room_id}/?token=[redacted]" in output, output[-3000:]
    else:
        assert "GET /healthz 200" in output and "GET /api/v1/users/me 401" in output, output[-3000:]
