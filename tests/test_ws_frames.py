"""The hub's direct frame writes (apps.rooms.hub.direct_protocol) on real ``ws`` processes.

Under the Procfile's command (uvicorn, websockets-sansio, per-message deflate off) the hub builds
an event's frame once and writes it to every socket's transport itself: these tests prove that
path is the one taken (the node's own counters, logged at shutdown) and that every member still
gets every event, intact and in the room's order, mixed with the replies to its own frames. On a
node that negotiates per-message deflate, deflated sockets must take the ordinary ASGI send (and
still get everything) while the others in the same room keep the direct path.
"""

from __future__ import annotations

import asyncio
import re
import signal

import pytest

from tests.procs import procfile_command
from tests.wsclient import WS, Api, Node, close_all, cluster_fixture, join, run

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

STATS = re.compile(r"hub: (\d+) frames delivered \((\d+) written directly\)")
DEFLATE_OFF = "--ws-per-message-deflate false"
ROOM_EVENTS = ("playback", "chat", "emoji")


cluster = cluster_fixture("ws-frames")


def stop_and_read_stats(node: Node) -> tuple[int, int]:
    """SIGTERM the node (the hub logs its counters when it announces the shutdown)."""
    node.signal(signal.SIGTERM)
    assert node.wait_exit(20) in (0, -signal.SIGTERM), node.log_tail()
    found = STATS.findall(node.log.read_text(errors="replace"))
    assert found, f"no hub stats in the log of {node.name}:\n{node.log_tail()}"
    delivered, direct = map(int, found[-1])
    return delivered, direct


def room_events(ws: WS) -> list[tuple]:
    """The room's events as this socket saw them, in arrival order."""
    out = []
    for f in ws.frames:
        if f["type"] == "playback" and not f.get("sync"):
            out.append(("playback", f["version"], f["position"]))
        elif f["type"] == "chat" and not f.get("history"):
            out.append(("chat", f["id"], f["text"]))
        elif f["type"] == "emoji":
            out.append(("emoji", f["user"]["id"], f["emoji"]))
    return out


async def drive(driver: WS, talkers: list[WS], listeners: list[WS], *, changes: int) -> None:
    """Playback changes as fast as the driver can send them, chat and emoji from the talkers,
    and pings from every listener in between (their replies share the sockets with the hub)."""
    start = driver.hello["playback"]["version"]
    for i in range(changes):
        await driver.send({"type": "playback", "position": float(i), "playing": i % 2 == 0})
        if i % 4 == 0:
            who = talkers[(i // 4) % len(talkers)]
            await who.send({"type": "chat", "text": f"c{i} <&> ✓ " + "x" * (i * 40)})  # small and >125 B
            await who.send({"type": "emoji", "emoji": "🎉"})
        if i % 3 == 0:
            await asyncio.gather(*(ws.ping() for ws in listeners))
    last = start + changes
    for ws in [driver, *listeners]:
        await ws.saw("playback", 10, where=lambda m: m.get("version") == last)
    await asyncio.sleep(0.3)  # the last chat and emoji frames


def assert_same_room_order(sockets: list[WS], *, changes: int, version0: int) -> list[tuple]:
    reference = room_events(sockets[0])
    versions = [e[1] for e in reference if e[0] == "playback"]
    assert versions == list(range(version0 + 1, version0 + changes + 1)), versions
    # (a playing state's position is extrapolated to the event's server_time: a few ms on)
    assert [round(e[2]) for e in reference if e[0] == "playback"] == list(range(changes))
    texts = [e[2] for e in reference if e[0] == "chat"]
    assert texts == [f"c{i} &lt;&amp;&gt; ✓ " + "x" * (i * 40) for i in range(0, changes, 4)]
    for ws in sockets[1:]:
        assert room_events(ws) == reference, ws.label
    for ws in sockets:
        pongs = [f for f in ws.frames if f["type"] == "pong"]
        assert len({p["t"] for p in pongs}) == len(pongs)
    return reference


def test_room_events_are_written_directly_and_arrive_in_order(cluster):
    n1, n2 = cluster.start("fast1", "fast2", LOG_LEVEL="INFO")
    owner, members, room = Api(n1).room_with_members("f", 6)
    changes = 24

    async def scenario():
        driver = await join(n1, room, owner, label="driver@n1", compression=None)
        listeners = [
            await join(n1 if i % 2 else n2, room, who, compression=None) for i, who in enumerate(members)
        ]
        everyone = [driver, *listeners]
        version0 = driver.hello["playback"]["version"]
        await drive(driver, listeners[:3], listeners, changes=changes)
        reference = assert_same_room_order(everyone, changes=changes, version0=version0)
        assert len(reference) == changes + 2 * len(range(0, changes, 4))
        await close_all(*everyone)  # else the first node to stop drains them (WS_DRAIN_SECONDS)
        return len(reference)

    events = run(scenario(), timeout=90)
    # Per node: every room event to each of its sockets (driver + 3 members on n1, 3 on n2),
    # all through the direct path.
    for node, local in ((n1, 4), (n2, 3)):
        delivered, direct = stop_and_read_stats(node)
        assert direct >= events * local, (node.name, delivered, direct, events)
        assert direct <= delivered


def test_deflated_sockets_take_the_asgi_send_next_to_direct_ones(cluster):
    command = procfile_command("ws")
    assert DEFLATE_OFF in command, "the Procfile's ws line changed: update this test"
    (node,) = cluster.start(
        "deflate", command=command.replace(DEFLATE_OFF, "--ws-per-message-deflate true"), LOG_LEVEL="INFO"
    )
    owner, members, room = Api(node).room_with_members("d", 4)
    changes = 12

    async def scenario():
        driver = await join(node, room, owner, label="driver", compression=None)
        deflated = [await join(node, room, who, label=f"deflated{i}") for i, who in enumerate(members[:2])]
        plain = [
            await join(node, room, who, label=f"plain{i}", compression=None)
            for i, who in enumerate(members[2:])
        ]
        assert all(ws.conn.protocol.extensions for ws in deflated)  # deflate was negotiated
        assert not any(ws.conn.protocol.extensions for ws in (driver, *plain))
        everyone = [driver, *deflated, *plain]
        version0 = driver.hello["playback"]["version"]
        await drive(driver, plain + deflated, [*deflated, *plain], changes=changes)
        events = len(assert_same_room_order(everyone, changes=changes, version0=version0))
        await close_all(*everyone)
        return events

    events = run(scenario(), timeout=90)
    delivered, direct = stop_and_read_stats(node)
    assert direct >= events * 3, (delivered, direct, events)  # driver + 2 plain sockets
    assert delivered - direct >= events * 2, (delivered, direct, events)  # the 2 deflated ones
