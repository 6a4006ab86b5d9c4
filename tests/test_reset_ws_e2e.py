# ruff: noqa: F811
"""A password reset closes the user's open WebSocket with 4401, end to end on the real services
(issue 12, "Must show"; docs/accounts.md, the reset's confirm): a `ws` node (the Procfile's
command: uvicorn on synctv.asgi, its hub on the run's Redis), the real Celery worker on the Redis
broker, and a real SMTP server on loopback (aiosmtpd). The reset link is read from the message
the SMTP server received; nothing is taken from the database or an outbox.

apps/accounts/tests/test_email_reset.py has the in-process version (local hub, no Redis)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from apps.accounts.tests.email_support import NEW_PASSWORD, key_from
from tests.mailserver import celery_worker, smtp_server  # noqa: F401 (fixtures)
from tests.procs import free_port, procfile_command, running, wait_http
from tests.secretscan import find_secrets
from tests.wsclient import ORIGIN, PASSWORD, Account, Api, Node, join

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def ws_node(celery_worker, tmp_path):
    """A `ws` node on the worker's services (test database, Redis, broker, keys), its links and
    allowed origin on wsclient's ORIGIN."""
    port = free_port()
    env = {
        **celery_worker.env,
        "PORT": str(port),
        "PUBLIC_URL": ORIGIN,
        "RATELIMIT_ENABLE": "false",
        "LOG_LEVEL": "INFO",
        "SYNCTV_NODE_ID": f"reset-e2e-{port}",
    }
    log = tmp_path / f"ws-{uuid.uuid4().hex[:6]}.log"
    with running(procfile_command("ws"), env=env, log=log) as proc:
        node = Node("ws", port, proc, log)
        r = wait_http(f"{node.http}/healthz", proc=proc, log=log, timeout=60)
        assert r.status_code == 200, r.text
        yield node


def register_with_address(api: Api, username: str, email: str) -> Account:
    body = {"username": username, "password": PASSWORD, "email": email}
    r = api.call("POST", "auth/register", body=body, expect=201).json()
    return Account(r["user"]["id"], username, r["access"], r["refresh"])


def test_a_reset_from_the_delivered_link_closes_an_open_socket_with_4401(ws_node, celery_worker, smtp_server):
    api = Api(ws_node)
    address = "grace@example.com"
    grace = register_with_address(api, "grace", address)
    smtp_server.wait_for(1)  # the verification link (optional verification)
    room = api.create_room(grace, "movie night")

    async def scenario() -> tuple[int | None, str]:
        ws = await join(ws_node, room, grace, label="grace")
        await ws.ping()
        await api.acall("POST", "auth/password/reset", body={"email": address}, expect=202)
        delivered = await asyncio.to_thread(smtp_server.wait_for, 2)
        (reset,) = [m for m in delivered if "/reset-password/?key=" in m.text]
        assert reset.rcpt_tos == [address]
        key = key_from(reset.text, "reset-password")
        assert ws.close_code is None  # still open: only the confirm ends the sessions
        body = {"key": key, "password": NEW_PASSWORD}
        await api.acall("POST", "auth/password/reset/confirm", body=body, expect=200)
        return await ws.wait_closed(10), key

    try:
        code, key = asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        api.close()
    assert code == 4401, ws_node.log_tail()
    # The old token is refused; the new password logs in.
    check = Api(ws_node)
    try:
        check.call("GET", "users/me", who=grace, expect=401)
        check.call("POST", "auth/login", body={"username": "grace", "password": NEW_PASSWORD}, expect=200)
    finally:
        check.close()
    # Neither process logged the key, the link or anything else secret.
    for output in (celery_worker.output(), ws_node.log.read_text(errors="replace")):
        assert key not in output
        assert find_secrets(output.splitlines()) == []
