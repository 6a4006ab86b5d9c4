"""One log line per socket lifetime (docs/operations.md, "Logs"): when a socket closes, its room,
its user, how long it was open and the close code; a socket refused before its accept writes none
(its refusal is logged as such)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator

from apps.accounts.tests.factories import TEST_ORIGIN, make_user
from apps.rooms import services
from apps.rooms.tests.inprocess_ws import ws_scope


@pytest.mark.django_db(transaction=True)
def test_a_socket_writes_one_line_when_it_closes(local_hub):
    from synctv.asgi import application  # sets Django's logging up again: caplog would miss it

    records: list[logging.LogRecord] = []
    collect = logging.Handler(logging.INFO)
    collect.emit = records.append  # type: ignore[method-assign]
    socket_log = logging.getLogger("synctv.socket")
    socket_log.addHandler(collect)

    creator, tokens = make_user()
    room = services.room_create(creator=creator, name="logged", origin=TEST_ORIGIN)

    async def run():
        socket = ApplicationCommunicator(application, ws_scope(room.pk, tokens.access))
        await socket.send_input({"type": "websocket.connect"})
        assert (await socket.receive_output(timeout=10))["type"] == "websocket.accept"
        await asyncio.sleep(0.2)
        await socket.send_input({"type": "websocket.disconnect", "code": 1001})
        await socket.wait(timeout=5)

        refused = ApplicationCommunicator(application, ws_scope(room.pk, "not-a-token"))
        await refused.send_input({"type": "websocket.connect"})
        while (await refused.receive_output(timeout=10))["type"] != "websocket.close":
            pass
        await refused.send_input({"type": "websocket.disconnect", "code": 4401})
        await refused.wait(timeout=5)

    try:
        async_to_sync(run)()  # sync_to_async work on this thread, with the test's connection
    finally:
        socket_log.removeHandler(collect)
    [line] = records
    assert (line.room_id, line.user_id, line.close_code) == (room.pk, creator.pk, 1001)
    assert 0.2 <= line.duration_s < 10
    assert line.getMessage().startswith("socket closed 1001 after ")
