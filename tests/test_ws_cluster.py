"""Two (and more) real ``ws`` nodes sharing PostgreSQL and Redis: one room, members on different
nodes (docs/api.md, "WebSocket"; docs/architecture.md, "A playback change, end to end").

Chat, playback, kicks, bans, role changes, logout-all and site bans cross nodes; presence is
shared and a dead node's members expire; SIGTERM tells every socket ``server_shutdown``, keeps it
delivering while its client moves to another node (make before break) and exits once the last
one left; without a drain uvicorn closes them with 1012 at once; the playback state survives.
"""

from __future__ import annotations

import asyncio
import json
import signal
import statistics
import time

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from apps.permissions.flags import DEFAULT_MEMBER, Perm
from tests.wsclient import Api, close_all, cluster_fixture, dial, join, refused, report, run

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

PLAY_MEMBERS = DEFAULT_MEMBER | int(Perm.PLAY_CONTROL)


cluster = cluster_fixture("ws-cluster", "n1", "n2")


def _ids(hello: dict) -> set[str]:
    return {m["user_id"] for m in hello["members_online"]}


def test_chat_and_playback_cross_nodes(nodes):
    n1, n2 = nodes
    api1, api2 = Api(n1), Api(n2)
    alice, bob = api1.register("alice"), api2.register("bob")
    room = api1.create_room(alice, "movie night", member_permissions=PLAY_MEMBERS)
    api2.join(bob, room)

    async def scenario():
        a = await join(n1, room, alice)
        b = await join(n2, room, bob)
        # Presence is shared: bob's hello on n2 lists alice, who is on n1.
        assert _ids(b.hello) == {alice.id, bob.id}
        assert b.hello["member"]["role"] == "member" and b.hello["room"]["id"] == room["id"]
        assert isinstance(b.hello["server_time"], int)
        joined = await a.expect("member_joined", 2, where=lambda m: m["user"]["id"] == bob.id)
        assert joined["role"] == "member"

        # Chat n2 -> n1 (and back to the sender).
        sent = await b.send({"type": "chat", "text": "hello from n2"})
        got = await a.expect("chat", 2)
        assert got["user"] == {"id": bob.id, "username": "bob", "guest": False}
        assert got["text"] == "hello from n2" and isinstance(got["id"], int) and got["server_time"] > 0
        echo = await b.expect("chat", 2)
        assert echo["id"] == got["id"]
        chat_ms = (got["_t"] - sent) * 1000

        # Playback over the socket on n1 reaches n2: 20 changes, each timed.
        version = a.hello["playback"]["version"]
        samples = []
        for i in range(20):
            sent = await a.send(
                {"type": "playback", "position": float(i), "playing": False, "version": version}
            )
            want = version + 1
            frame = await b.expect("playback", 2, where=lambda m, want=want: m["version"] == want)
            assert frame["by"] == {"id": alice.id, "username": "alice", "guest": False}
            assert frame["position"] == float(i) and frame["playing"] is False and frame["server_time"] > 0
            samples.append((frame["_t"] - sent) * 1000)
            version = want
        await a.expect("playback", 2, where=lambda m: m["version"] == version)  # the sender hears it too

        # A stale version is refused with `conflict`, and nothing is broadcast.
        await a.send({"type": "playback", "playing": True, "version": version - 1, "ref": "stale"})
        err = await a.expect("error", 2, where=lambda m: m["ref"] == "stale")
        assert err["code"] == "conflict"

        # The REST PUT on n2 is the same service: both nodes' sockets get it, `by` is bob.
        await api2.acall(
            "PUT",
            f"rooms/{room['id']}/playback",
            who=bob,
            body={"playing": True, "rate": 1.5, "version": version},
            expect=200,
        )
        for ws in (a, b):
            frame = await ws.expect("playback", 2, where=lambda m: m["version"] == version + 1)
            assert frame["playing"] is True and frame["rate"] == 1.5 and frame["by"]["id"] == bob.id
        state = await api1.acall("GET", f"rooms/{room['id']}/playback", who=alice, expect=200)
        assert state.json()["version"] == version + 1 and state.json()["playing"] is True

        # sync answers the current state to the asker only.
        await b.send({"type": "sync"})
        synced = await b.expect("playback", 2, where=lambda m: m.get("sync") is True)
        assert synced["version"] == version + 1 and synced["rate"] == 1.5

        # Emoji and ready cross too.
        await a.send({"type": "emoji", "emoji": "<3"})
        emoji = await b.expect("emoji", 2)
        assert emoji["emoji"] == "&lt;3" and emoji["user"]["id"] == alice.id
        await b.send({"type": "ready", "ready": False})
        ready = await a.expect("member_ready", 2)
        assert ready["user"]["id"] == bob.id and ready["ready"] is False

        # ping/pong carries the server clock.
        pong = await b.ping()
        assert abs(pong["server_time"] - time.time() * 1000) < 5000

        await close_all(a, b)
        return chat_ms, samples

    chat_ms, samples = run(scenario())
    report("cross-node chat (n2 -> n1)", f"{chat_ms:.1f} ms")
    report(
        "cross-node playback (WS n1 -> socket n2), 20 samples",
        f"p50 {statistics.median(samples):.1f} ms, max {max(samples):.1f} ms",
    )
    assert statistics.median(samples) < 250, samples


def test_kick_and_ban_via_rest_on_n1_close_sockets_on_n2(nodes):
    n1, n2 = nodes
    api1 = Api(n1)
    owner, carol, dave = api1.register("kowner"), api1.register("carol"), api1.register("dave")
    room = api1.create_room(owner, "kick room")
    api1.join(carol, room)
    api1.join(dave, room)

    async def scenario():
        o = await join(n1, room, owner)
        c = await join(n2, room, carol)
        d = await join(n2, room, dave)
        d2 = await join(n1, room, dave, label="dave@n1")  # a second socket, on the other node

        started = time.monotonic()
        await api1.acall("POST", f"rooms/{room['id']}/members/{carol.id}/kick", who=owner, expect=204)
        answered = time.monotonic()
        kicked = await c.expect("kicked", 1)
        assert kicked["reason"] == "kicked"
        assert await c.wait_closed(1) == 4403
        kick_ms = (c.closed_at - started) * 1000
        assert c.closed_at - answered <= 1.0
        assert c.types()[-1] == "kicked"  # nothing after the notice

        await api1.acall(
            "POST",
            f"rooms/{room['id']}/members/{dave.id}/ban",
            who=owner,
            body={"reason": "spam"},
            expect=204,
        )
        for ws in (d, d2):
            assert (await ws.expect("kicked", 1))["reason"] == "banned"
            assert await ws.wait_closed(1) == 4403
        # The others stay: the owner's socket still answers and saw no kick.
        await o.ping()
        assert "kicked" not in o.types()
        # A banned member cannot come back on either node.
        for node in (n1, n2):
            frame, code = await refused(node, room["id"], dave.access)
            assert (frame["code"], code) == ("connection_refused", 4403)
        await close_all(o)
        return kick_ms

    kick_ms = run(scenario())
    report("kick via REST on n1 -> socket on n2 closed 4403", f"{kick_ms:.1f} ms after the request started")


def test_role_change_reaches_both_nodes_and_applies_to_the_live_socket(nodes):
    n1, n2 = nodes
    api1 = Api(n1)
    owner, erin, fred = api1.register("rowner"), api1.register("erin"), api1.register("fred")
    room = api1.create_room(owner, "roles")
    api1.join(erin, room)
    api1.join(fred, room)

    async def scenario():
        o = await join(n1, room, owner)
        e = await join(n2, room, erin)
        f = await join(n1, room, fred)
        # A plain member may not control playback...
        await e.send({"type": "playback", "playing": True, "ref": 1})
        assert (await e.expect("error", 2, where=lambda m: m["ref"] == 1))["code"] == "permission_denied"

        await api1.acall(
            "PATCH", f"rooms/{room['id']}/members/{erin.id}", who=owner, body={"role": "admin"}, expect=200
        )
        for ws in (o, e, f):
            updated = await ws.expect("member_updated", 1)
            assert updated["member"]["user"]["id"] == erin.id and updated["member"]["role"] == "admin"

        # ...an admin may, on the same socket, as soon as its node has re-read the member.
        deadline = time.monotonic() + 3
        ref = 2
        while True:
            await e.send({"type": "playback", "playing": True, "ref": ref})
            frame = await e.next(2)
            while frame["type"] not in ("playback", "error"):
                frame = await e.next(2)
            if frame["type"] == "playback":
                assert frame["by"]["id"] == erin.id and frame["playing"] is True
                break
            assert frame["code"] == "permission_denied" and time.monotonic() < deadline, frame
            ref += 1
            await asyncio.sleep(0.1)
        await o.expect("playback", 2)
        await close_all(o, e, f)

    run(scenario())


def test_logout_all_closes_the_socket_on_the_other_node(nodes):
    n1, n2 = nodes
    api1 = Api(n1)
    owner, gus = api1.register("lowner"), api1.register("gus")
    room = api1.create_room(owner, "sessions")
    api1.join(gus, room)

    async def scenario():
        o = await join(n1, room, owner)
        g = await join(n2, room, gus)
        started = time.monotonic()
        await api1.acall("POST", "auth/logout-all", who=gus, expect=204)
        answered = time.monotonic()
        kicked = await g.expect("kicked", 1)
        assert kicked["reason"] == "session_ended"
        assert await g.wait_closed(1) == 4401
        assert g.closed_at - answered <= 1.0
        # The token is dead for new sockets too; other users are untouched.
        _frame, code = await refused(n1, room["id"], gus.access)
        assert code == 4401
        await o.ping()
        assert "kicked" not in o.types()
        await close_all(o)
        return (g.closed_at - started) * 1000

    ms = run(scenario())
    report("logout-all via REST on n1 -> socket on n2 closed 4401", f"{ms:.1f} ms")


def test_site_ban_by_command_closes_sockets_on_every_node(cluster, nodes):
    n1, n2 = nodes
    api1 = Api(n1)
    owner, hank = api1.register("bowner"), api1.register("hank")
    room = api1.create_room(owner, "site ban")
    api1.join(hank, room)

    async def scenario():
        o = await join(n1, room, owner)
        h1 = await join(n1, room, hank, label="hank@n1")
        h2 = await join(n2, room, hank, label="hank@n2")
        result = await asyncio.to_thread(cluster.manage, "ban_user hank --reason abuse")
        done = time.monotonic()
        assert "banned hank" in result.stdout
        for ws in (h1, h2):
            assert (await ws.expect("kicked", 1))["reason"] == "banned"
            assert await ws.wait_closed(1) == 4403
            assert ws.closed_at - done <= 1.0
        frame, code = await refused(n2, room["id"], hank.access)
        assert code == 4403 and "banned" in frame["message"]
        await o.ping()
        await close_all(o)
        return max(h1.closed_at, h2.closed_at) - done

    lag = run(scenario())
    report(
        "ban_user command -> sockets closed 4403",
        f"{lag * 1000:.0f} ms after the command exited (<=0: before)",
    )


def test_presence_across_nodes_and_a_dead_node_expires(cluster, nodes):
    n1, n2 = nodes
    (n3,) = cluster.start("n3")
    api1 = Api(n1)
    owner, ivy, jack = api1.register("powner"), api1.register("ivy"), api1.register("jack")
    room = api1.create_room(owner, "presence")
    api1.join(ivy, room)
    api1.join(jack, room)

    async def scenario():
        o = await join(n1, room, owner)
        i = await join(n3, room, ivy)
        assert _ids(i.hello) == {owner.id, ivy.id}
        await o.expect("member_joined", 2, where=lambda m: m["user"]["id"] == ivy.id)
        j = await join(n2, room, jack)
        assert _ids(j.hello) == {owner.id, ivy.id, jack.id}  # ivy is on n3, jack on n2

        n3.signal(signal.SIGKILL)  # no goodbye: the node just vanishes
        killed = time.monotonic()
        n3.wait_exit(10)
        await i.wait_closed(10)
        left = await o.expect("member_left", 25, where=lambda m: m["user"]["id"] == ivy.id)
        await j.expect("member_left", 2, where=lambda m: m["user"]["id"] == ivy.id)
        gone_after = left["_t"] - killed
        assert gone_after <= 21.0, gone_after
        # Announced once per user, and a new hello no longer lists ivy.
        late = await join(n2, room, jack, label="jack-again")
        assert _ids(late.hello) == {owner.id, jack.id}
        await asyncio.sleep(0.3)
        assert [m["user"]["id"] for m in o.frames if m["type"] == "member_left"] == [ivy.id]
        await close_all(o, j, late)
        return gone_after

    gone_after = run(scenario(), timeout=60)
    report("dead node (SIGKILL) -> member_left on the live nodes", f"{gone_after:.1f} s")


def test_sigterm_without_a_drain_sends_server_shutdown_then_1012_and_keeps_playback(cluster, nodes):
    """WS_DRAIN_SECONDS=0: the notice says ``drain_ms: 0`` and the sockets close at once."""
    n1, _ = nodes
    (n4,) = cluster.start("n4", WS_DRAIN_SECONDS="0")
    api1 = Api(n1)
    owner = api1.register("sowner")
    others = [api1.register(f"sterm{i}") for i in range(3)]
    room = api1.create_room(owner, "shutdown")
    for who in others:
        api1.join(who, room)

    async def scenario():
        watcher = await join(n1, room, owner, label="owner@n1")
        doomed = [await join(n4, room, who) for who in others]
        doomed.append(await join(n4, room, owner, label="owner@n4"))
        version = doomed[-1].hello["playback"]["version"]
        await doomed[-1].send(
            {"type": "playback", "playing": False, "position": 42.5, "rate": 1.25, "version": version}
        )
        await watcher.expect("playback", 2, where=lambda m: m["version"] == version + 1)

        n4.signal(signal.SIGTERM)
        for ws in doomed:
            assert await ws.wait_closed(15) == 1012, (ws.label, ws.close_code, ws.types())
            assert ws.types()[-1] == "server_shutdown", ws.types()
            notice = ws.frames[-1]
            assert notice["reconnect_after_ms"] > 0 and notice["message"] and notice["server_time"] > 0
            assert notice["drain_ms"] == 0
        assert n4.wait_exit(15) in (0, -signal.SIGTERM), n4.log_tail()  # uvicorn re-raises the signal

        # The state set before the shutdown is still there, read from the other node.
        state = (await api1.acall("GET", f"rooms/{room['id']}/playback", who=owner, expect=200)).json()
        assert state["version"] == version + 1
        assert (state["playing"], state["position"], state["rate"]) == (False, 42.5, 1.25)
        # The live node is unaffected, and the users that were only on n4 are announced gone.
        await watcher.ping()
        for who in others:
            await watcher.saw("member_left", 5, where=lambda m, who=who: m["user"]["id"] == who.id)
        await close_all(watcher)

    run(scenario(), timeout=60)


def test_sigterm_drains_while_clients_move_and_the_node_exits_once_they_left(cluster, nodes):
    """Another node is live: the stopping node keeps its sockets open and delivering, refuses new
    handshakes with 503 before the upgrade, and exits as soon as the last socket has moved, long
    before WS_DRAIN_SECONDS. A member who moves is never announced gone (the new socket opens
    before the old one closes)."""
    n1, _ = nodes
    (n5,) = cluster.start("n5", WS_DRAIN_SECONDS="60")
    api1 = Api(n1)
    owner, movers, room = api1.room_with_members("drain", 3)

    async def scenario():
        watcher = await join(n1, room, owner, label="owner@n1")
        doomed = {who.username: await join(n5, room, who) for who in movers}
        version = watcher.hello["playback"]["version"]
        stopped_at = time.monotonic()
        n5.signal(signal.SIGTERM)
        for ws in doomed.values():
            notice = await ws.expect("server_shutdown", 5)
            assert notice["drain_ms"] == 60_000, notice
            assert 0 < notice["reconnect_window_ms"] <= 30_000, notice
        ready = await asyncio.to_thread(httpx.get, f"{n5.http}/readyz", timeout=5)
        assert ready.status_code == 503 and ready.json()["failed"] == ["accepting"], ready.text
        # Still delivering: a change made on the other node reaches the draining sockets.
        body = {"playing": True, "position": 12.0, "rate": 1.0, "version": version}
        api1.call("PUT", f"rooms/{room['id']}/playback", who=owner, body=body, expect=200)
        for ws in doomed.values():
            await ws.expect("playback", 5, where=lambda m: m["version"] == version + 1)
        # A new handshake on the stopping node: HTTP 503 before the upgrade (the front tries
        # the next node), with the API's error body.
        with pytest.raises(InvalidStatus) as refusal:
            await dial(n5.ws_url(room["id"]), token=movers[0].access)
        response = refusal.value.response
        assert response.status_code == 503 and response.headers["Retry-After"] == "1"
        assert json.loads(response.body)["error"]["details"]["cause"] == "server_restarting"
        # Make before break: the new socket on n1, then the old one closed.
        for who in movers:
            again = await join(n1, room, who, label=f"{who.username}@n1")
            assert again.hello["playback"]["version"] == version + 1
            await doomed[who.username].close()
            doomed[who.username] = again
        assert await asyncio.to_thread(n5.wait_exit, 10) in (0, -signal.SIGTERM), n5.log_tail()
        exited_after = time.monotonic() - stopped_at
        await watcher.ping()
        await asyncio.sleep(0.6)  # a roster batch (0.5 s) would have carried a departure by now
        gone = [m for m in watcher.frames if m["type"] in ("member_left", "members_changed")]
        assert not [m for m in gone if m["type"] == "member_left" or m.get("left")], gone
        await close_all(watcher, *doomed.values())
        return exited_after

    exited_after = run(scenario(), timeout=60)
    assert exited_after < 15, exited_after
    report("drain: SIGTERM -> exit once 3 sockets moved (WS_DRAIN_SECONDS=60)", f"{exited_after:.1f} s")
