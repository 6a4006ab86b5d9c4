"""Redis restarted under two live ``ws`` nodes (docs/security.md, "When Redis is down"; a room hub
must re-subscribe on reconnect): the processes stay up and answer, open sockets survive, and events
cross nodes again within seconds of Redis coming back (empty, as after a real restart)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from apps.permissions.flags import DEFAULT_MEMBER, Perm
from tests.wsclient import Api, close_all, cluster_fixture, join, report, run

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

RECOVERY_LIMIT = 10.0


cluster = cluster_fixture("ws-redis", "n1", "n2")


def test_sockets_hear_each_other_again_after_a_redis_restart(cluster):
    n1, n2 = cluster.nodes[:2]
    api1, api2 = Api(n1), Api(n2)
    alice, bob = api1.register("ralice"), api1.register("rbob")
    carol, dave = api1.register("rcarol"), api1.register("rdave")
    room = api1.create_room(alice, "outage", member_permissions=DEFAULT_MEMBER | int(Perm.PLAY_CONTROL))
    for who in (bob, carol, dave):
        api1.join(who, room)
    path = f"rooms/{room['id']}/playback"

    async def health_watch(stop: asyncio.Event, failures: list):
        async with httpx.AsyncClient(timeout=2) as client:
            while not stop.is_set():
                for node in (n1, n2):
                    try:
                        r = await client.get(f"{node.http}/healthz")
                        if r.status_code != 200:
                            failures.append((node.name, r.status_code))
                    except httpx.HTTPError as exc:
                        failures.append((node.name, repr(exc)))
                await asyncio.sleep(0.2)

    async def scenario():
        a = await join(n1, room, alice)
        b = await join(n2, room, bob)
        c = await join(n2, room, carol)
        d = await join(n2, room, dave)
        await b.send({"type": "chat", "text": "before"})
        await a.expect("chat", 2, where=lambda c: c["text"] == "before")

        stop, failures = asyncio.Event(), []
        watcher = asyncio.create_task(health_watch(stop, failures))

        cluster.redis.kill()
        down_at = time.monotonic()
        await asyncio.sleep(1.0)
        # During the outage: sockets stay open and answer; REST writes still work (the database
        # is the truth), and a node's own sockets still hear its own events.
        await a.ping()
        await b.ping()
        state = (await api1.acall("PUT", path, who=alice, body={"position": 5.0}, expect=200)).json()
        await a.expect("playback", 3, where=lambda m: m["version"] == state["version"])
        # Moderation during the outage, on n1, about sockets on n2: the events cannot cross now.
        await api1.acall("POST", f"rooms/{room['id']}/members/{carol.id}/kick", who=alice, expect=204)
        await api1.acall("POST", "auth/logout-all", who=dave, expect=204)
        await asyncio.sleep(max(0.0, 3.0 - (time.monotonic() - down_at)))
        assert a.close_code is None and b.close_code is None

        await asyncio.to_thread(cluster.redis.start)
        back_at = time.monotonic()
        # The playback change made during the outage on n1 never reached n2: once n2 is back on
        # Redis it tells its sockets the room's current state, without waiting for a new change.
        told = await b.expect(
            "playback", RECOVERY_LIMIT + 2, where=lambda m: m["version"] == state["version"]
        )
        assert told["position"] >= 5.0 and told.get("by") is None, told
        report("Redis restart -> the outage's playback change told on n2", f"{told['_t'] - back_at:.2f} s")
        # Change playback on n1 until bob's socket on n2 hears it (each attempt is a new version).
        attempt = 0
        heard = None
        while heard is None:
            attempt += 1
            assert time.monotonic() - back_at < RECOVERY_LIMIT + 2, (
                f"nothing crossed after {attempt} attempts"
            )
            state = (
                await api1.acall("PUT", path, who=alice, body={"position": float(attempt)}, expect=200)
            ).json()
            try:
                heard = await b.expect("playback", 0.5, where=lambda m, v=state["version"]: m["version"] == v)
            except AssertionError:
                continue
        recovery = heard["_t"] - back_at
        assert recovery <= RECOVERY_LIMIT, recovery
        assert heard["by"]["id"] == alice.id and heard["position"] == float(attempt)

        # What was decided while Redis was down is not lost: n2's sockets re-check once it is back.
        assert await c.wait_closed(RECOVERY_LIMIT) == 4403, c.types()
        assert c.types()[-1] == "kicked"
        assert await d.wait_closed(RECOVERY_LIMIT) == 4401, d.types()
        assert d.frames[-1] == {**d.frames[-1], "type": "kicked", "reason": "session_ended"}
        report("Redis restart -> kick made during the outage applied", f"{c.closed_at - back_at:.2f} s")

        # And the other way, over the sockets only: chat n2 -> n1, playback WS n1 -> n2.
        await b.send({"type": "chat", "text": "after"})
        await a.expect("chat", 3, where=lambda c: c["text"] == "after")
        await a.send({"type": "playback", "playing": True, "version": state["version"]})
        await b.expect("playback", 3, where=lambda m: m["version"] == state["version"] + 1)
        # Presence is rebuilt in the empty Redis by the heartbeats (every 5 s; the first one after
        # the restart may still fail on a stale pooled connection): a newcomer sees both again.
        while True:
            again = await join(n2, room, bob, label="bob-again")
            online = {m["user_id"] for m in again.hello["members_online"]}
            await close_all(again)
            if online == {alice.id, bob.id} or time.monotonic() - back_at > 12:
                break
            await asyncio.sleep(0.5)
        assert online == {alice.id, bob.id}
        presence_back = time.monotonic() - back_at

        stop.set()
        await watcher
        assert failures == [], failures
        async with httpx.AsyncClient(timeout=5) as client:
            for node in (n1, n2):
                deadline = time.monotonic() + 5
                while (await client.get(f"{node.http}/readyz")).status_code != 200:
                    assert time.monotonic() < deadline, f"{node.name} not ready after Redis came back"
                    await asyncio.sleep(0.2)
        await close_all(a, b)
        return recovery, attempt, presence_back

    recovery, attempts, presence_back = run(scenario(), timeout=90)
    report(
        "Redis restart -> cross-node event delivered again",
        f"{recovery:.2f} s after Redis answered ({attempts} tries)",
    )
    report("Redis restart -> presence complete again", f"<= {presence_back:.1f} s")
    for node in (n1, n2):
        assert node.proc.poll() is None, node.log_tail()
    assert api2.playback(bob, room)["playing"] is True


def test_the_first_events_after_a_quick_redis_restart_are_not_lost(cluster):
    """A restart between two events (no failed call in between to notice it): the first
    publish on each node meets a pooled connection the old server closed."""
    n1, n2 = cluster.nodes[:2]
    api1 = Api(n1)
    owner, eve, finn = api1.register("qowner"), api1.register("qeve"), api1.register("qfinn")
    room = api1.create_room(owner, "quick restart")
    api1.join(eve, room)
    api1.join(finn, room)

    async def scenario():
        o = await join(n1, room, owner)
        e = await join(n2, room, eve)
        f = await join(n2, room, finn)
        await e.send({"type": "chat", "text": "warm"})
        await o.expect("chat", 2, where=lambda c: c["text"] == "warm")
        await api1.acall("GET", f"rooms/{room['id']}/playback", who=owner, expect=200)

        cluster.redis.kill()
        await asyncio.to_thread(cluster.redis.start)
        await asyncio.sleep(1.5)  # the hubs notice and re-subscribe (first retry after 0.2 s)

        # One event each way, sent once: socket chat n2 -> n1, REST kick on n1 -> socket on n2.
        await e.send({"type": "chat", "text": "first after restart"})
        await o.expect("chat", 3, where=lambda c: c["text"] == "first after restart")
        await api1.acall("POST", f"rooms/{room['id']}/members/{finn.id}/kick", who=owner, expect=204)
        assert (await f.expect("kicked", 3))["reason"] == "kicked"
        assert await f.wait_closed(2) == 4403
        await close_all(o, e)

    run(scenario(), timeout=60)
