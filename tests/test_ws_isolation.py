"""What must never cross: refused connections, one room's events in another room, and whatever a
client throws at the socket (docs/api.md, "WebSocket": bad frames get an ``error`` and change nothing).

Two real ``ws`` nodes, a scratch PostgreSQL database and a private redis-server.
"""

from __future__ import annotations

import asyncio
import json
import random
import time

import pytest
import websockets

from apps.permissions.flags import BASIC_BITS, DEFAULT_MEMBER, Perm
from apps.rooms.messages import CLIENT_TYPES
from tests.wsclient import (
    Api,
    close_all,
    cluster_fixture,
    db_scalar,
    dial,
    join,
    refused,
    report,
    run,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

PLAY_MEMBERS = DEFAULT_MEMBER | int(Perm.PLAY_CONTROL)


cluster = cluster_fixture("ws-isolation", "n1", "n2")


# --- refusals ---------------------------------------------------------------------------------------


def test_who_may_not_connect(nodes):
    n1, n2 = nodes
    api = Api(n1)
    owner, outsider, leaver = api.register("gowner"), api.register("outsider"), api.register("leaver")
    room_a = api.create_room(owner, "A", allow_guests=True)
    room_b = api.create_room(owner, "B", allow_guests=True)
    api.join(leaver, room_a)
    guest = api.guest(room_a, "visitor")
    logged_out = api.register("loggedout")
    api.join(logged_out, room_a)
    api.call("POST", "auth/logout", who=logged_out, body={"refresh": logged_out.refresh}, expect=204)

    async def scenario():
        cases = [
            ("outsider", n1, room_a["id"], outsider.access, {}, 4403),
            ("no token", n2, room_a["id"], None, {}, 4401),
            ("garbage bearer", n1, room_a["id"], "not.a.jwt", {}, 4401),
            ("garbage ?token=", n2, room_a["id"], "garbage", {"via_query": True}, 4401),
            ("tampered token", n1, room_a["id"], owner.access[:-4] + "AAAA", {}, 4401),
            ("logged-out token", n2, room_a["id"], logged_out.access, {}, 4401),
            ("logged-out token, unknown room", n1, "NoSuchRoom000000", logged_out.access, {}, 4401),
            ("unknown room", n1, "NoSuchRoom000000", owner.access, {}, 4404),
            ("overlong room id", n2, "x" * 200, owner.access, {}, 4404),
            ("NUL in room id", n1, "a%00b", owner.access, {}, 4404),
            ("guest of A on B", n2, room_b["id"], guest.access, {}, 4403),
        ]
        for label, node, room_id, token, kwargs, code in cases:
            frame, closed = await refused(node, room_id, token, **kwargs)
            assert frame["type"] == "error" and frame["code"] == "connection_refused", (label, frame)
            assert frame["message"] and frame["server_time"] > 0, (label, frame)
            assert closed == code, (label, closed, frame)

        # A disallowed (or opaque) Origin fails the handshake itself.
        malformed = ("http://localhost:8000.evil.example", "http://localhost:99999", "http://[::1")
        for origin in ("http://evil.example", "null", "https://localhost:8000", *malformed):
            with pytest.raises(websockets.InvalidStatus) as info:
                await dial(n1.ws_url(room_a["id"]), token=owner.access, origin=origin)
            assert info.value.response.status_code == 403, origin

        # The allowed ways in: bearer subprotocol (answered with synctv.v1), ?token=, a guest in its room.
        ws = await join(n1, room_a, owner)
        assert ws.conn.subprotocol == "synctv.v1"
        via_query = await join(n2, room_a, leaver, via_query=True)
        g = await join(n2, room_a, guest)
        assert g.hello["member"]["role"] == "guest"
        # A member who left is an outsider again.
        await api.acall("POST", f"rooms/{room_a['id']}/leave", who=leaver, expect=204)
        assert (await via_query.expect("kicked", 2))["reason"] == "left"
        assert await via_query.wait_closed(2) == 4403
        frame, code = await refused(n1, room_a["id"], leaver.access)
        assert code == 4403
        await close_all(ws, g)

    run(scenario())


def test_an_unmatched_path_is_refused_4404_without_a_traceback(nodes):
    """Issue 10 finding 12: a path no route matches answered 500 with a logged traceback."""
    n1, _n2 = nodes
    owner = Api(n1).register("pathprobe")
    paths = ("/ws/rooms/..%2f..%2fx/", "/ws/rooms/a/b/", "/ws/rooms/", "/ws/elsewhere/")

    async def scenario():
        for path in paths:
            ws = await dial(f"ws://127.0.0.1:{n1.port}{path}", token=owner.access, label=path)
            frame = await ws.next(10)
            assert frame["type"] == "error" and frame["code"] == "connection_refused", (path, frame)
            assert await ws.wait_closed(5) == 4404, path

    before = n1.log.read_text(errors="replace")
    run(scenario())
    logged = n1.log.read_text(errors="replace")[len(before) :]
    assert "Traceback" not in logged and "No route found" not in logged, logged[-3000:]


# --- no leaks between rooms ---------------------------------------------------------------------------


def test_a_member_of_room_a_hears_nothing_of_room_b(nodes):
    n1, n2 = nodes
    api1, api2 = Api(n1), Api(n2)
    alice, bob, carol, dave = (api1.register(n) for n in ("lalice", "lbob", "lcarol", "ldave"))
    room_a = api1.create_room(alice, "room A")
    room_b = api1.create_room(alice, "room B", member_permissions=PLAY_MEMBERS)
    api1.join(bob, room_a)
    for who in (carol, dave):
        api1.join(who, room_b)

    async def scenario():
        # Listening in A: alice (a member of both rooms) on both nodes, bob (A only) on n2.
        watchers = [
            await join(n1, room_a, alice, label="alice@A@n1"),
            await join(n2, room_a, alice, label="alice@A@n2"),
            await join(n2, room_a, bob, label="bob@A@n2"),
        ]
        await asyncio.sleep(0.3)  # the watchers' own presence announcements
        marks = [len(w.frames) for w in watchers]
        started = time.monotonic()

        # Everything that can happen in B, on both nodes, from sockets and REST.
        alice_b = await join(n1, room_b, alice, label="alice@B@n1")
        carol_b = await join(n2, room_b, carol, label="carol@B@n2")
        dave_b = await join(n1, room_b, dave, label="dave@B@n1")
        await alice_b.send({"type": "chat", "text": "secret of B"})
        await carol_b.send({"type": "chat", "text": "B only"})
        await carol_b.send({"type": "emoji", "emoji": "x"})
        await carol_b.send({"type": "ready", "ready": False})
        await carol_b.send({"type": "playback", "playing": True, "position": 7.0})
        await api2.acall("PUT", f"rooms/{room_b['id']}/playback", who=alice, body={"rate": 2.0}, expect=200)
        await api1.acall(
            "PATCH", f"rooms/{room_b['id']}/members/{carol.id}", who=alice, body={"role": "admin"}, expect=200
        )
        await api2.acall("PATCH", f"rooms/{room_b['id']}", who=alice, body={"name": "room B2"}, expect=200)
        await api1.acall(
            "POST",
            f"rooms/{room_b['id']}/movies",
            who=alice,
            body={"name": "m", "url": "https://example.com/m.mp4"},
            expect=201,
        )
        await api1.acall("POST", f"rooms/{room_b['id']}/members/{dave.id}/kick", who=alice, expect=204)
        await dave_b.wait_closed(2)
        await carol_b.close()

        # B really happened: alice's socket in B heard all of it.
        for kind in (
            "chat",
            "emoji",
            "member_ready",
            "playback",
            "member_updated",
            "room_updated",
            "playlist",
        ):
            await alice_b.saw(kind, 3)
        await alice_b.saw("member_left", 3, where=lambda m: m["user"]["id"] == carol.id)

        # A sentinel in A proves the watchers are alive and that everything before it was delivered.
        await watchers[0].send({"type": "chat", "text": "sentinel A"})
        for w in watchers:
            await w.saw("chat", 3, where=lambda m: m["text"] == "sentinel A")
        await asyncio.sleep(max(0.0, 3.0 - (time.monotonic() - started)))  # a few seconds in all

        for w, mark in zip(watchers, marks, strict=True):
            extra = w.frames[mark:]
            assert [(m["type"], m.get("text")) for m in extra] == [("chat", "sentinel A")], (w.label, extra)
            blob = json.dumps(extra)
            assert room_b["id"] not in blob and carol.id not in blob and dave.id not in blob
        await close_all(alice_b, *watchers)

    run(scenario())


# --- fuzz ----------------------------------------------------------------------------------------------


def _corpus(rng: random.Random, room_version: int) -> list[tuple[str | bytes, str]]:
    """(frame, expected error code). None of these is a valid message that could change anything."""
    big = 10**400
    frames: list[tuple[str | bytes, str]] = []

    def add(frame, code="invalid"):
        frames.append((frame, code))

    def word(n=8):
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz_-.$ÄΩ😀") for _ in range(rng.randint(1, n)))

    # Not JSON at all, or not a JSON object.
    for raw in [
        "",
        " ",
        "{",
        "}",
        "{'type': 'ping'}",
        '{"type": "ping",}',
        '{"type": "ping"',
        "undefined",
        "ping",
        "\ufeff{}",
        "/* */{}",
        '{"type": "ping"}{"type": "ping"}',
        "null",
        "true",
        "0",
        "-1",
        '"ping"',
        "[]",
        '[{"type": "ping"}]',
        "NaN",
        "Infinity",
        "-Infinity",
    ]:
        add(raw)
    # Non-finite and absurd numbers.
    for value in [
        "NaN",
        "Infinity",
        "-Infinity",
        "1e400",
        "-1e400",
        "1e309",
        str(big),
        str(-big),
        "1" * 5000,
    ]:
        add(f'{{"type": "ping", "t": {value}}}')
        add(f'{{"type": "playback", "position": {value}}}')
        add(f'{{"type": "playback", "rate": {value}}}')
        add(f'{{"type": "playback", "version": {value}}}')
        add(f'{{"type": "ping", "ref": {value}}}')
    # Deep nesting, within and beyond the frame limit.
    add("[" * 100000)
    add("[" * 30000)
    add('{"type": "ping", "t": ' + "[" * 30000 + "]" * 30000 + "}")
    add('{"type": "chat", "text": ' + '{"a": ' * 10000 + "1" + "}" * 10000 + "}")
    # Frames over 64 KiB (characters or bytes).
    add(json.dumps({"type": "chat", "text": "a" * 70000}))
    add(json.dumps({"type": "chat", "text": "é" * 40000}, ensure_ascii=False))
    add(json.dumps({"type": "ping", "ref": "r" * 70000}))
    add(json.dumps({"type": "ping", "pad": "p" * 66000}))
    # Binary frames.
    add(b"")
    add(b"\x00\xff\x10")
    add(json.dumps({"type": "ping"}).encode())
    # Missing / unknown / wrongly typed `type`.
    for payload in [
        {},
        {"t": 1},
        {"text": "hi"},
        {"type": None},
        {"type": 1},
        {"type": True},
        {"type": ["ping"]},
        {"type": {"ping": 1}},
        {"type": ""},
        {"type": "PING"},
        {"type": "ping "},
        {"type": "hello"},
        {"type": "error"},
        {"type": "kicked"},
        {"type": "server_shutdown"},
        {"type": "_member_removed", "user_id": "x"},
        {"type": "_sessions_revoked"},
        {"type": "on_ping"},
        {"type": "__class__"},
        {"type": "member_updated", "member": {}},
    ]:
        add(json.dumps(payload))
    # Right type, wrong fields: extras, missing, wrong types, bool where a number goes, bounds.
    for payload in [
        {"type": "ping", "t": 1, "extra": 1},
        {"type": "ping", "t": "1"},
        {"type": "ping", "t": True},
        {"type": "ping", "t": [1]},
        {"type": "ping", "t": {}},
        {"type": "ping", "ref": -1},
        {"type": "ping", "ref": 2**53 + 1},
        {"type": "ping", "ref": 1.5},
        {"type": "ping", "ref": True},
        {"type": "ping", "ref": ["r"]},
        {"type": "ping", "ref": "r" * 65},
        {"type": "sync", "x": None},
        {"type": "sync", "full": True},
        {"type": "chat"},
        {"type": "chat", "text": ""},
        {"type": "chat", "text": 5},
        {"type": "chat", "text": True},
        {"type": "chat", "text": ["hi"]},
        {"type": "chat", "text": None},
        {"type": "chat", "text": "x" * 2001},
        {"type": "chat", "text": "hi", "user": "admin"},
        {"type": "chat", "text": "hi", "room": "elsewhere"},
        {"type": "chat", "text": "a\u0000b"},
        {"type": "chat", "text": "\ud800"},
        {"type": "emoji"},
        {"type": "emoji", "emoji": ""},
        {"type": "emoji", "emoji": "x" * 17},
        {"type": "emoji", "emoji": 1},
        {"type": "emoji", "emoji": "\u0000"},
        {"type": "ready"},
        {"type": "ready", "ready": 1},
        {"type": "ready", "ready": "true"},
        {"type": "ready", "ready": None},
        {"type": "ready", "ready": True, "extra": 0},
        {"type": "playback", "playing": 1},
        {"type": "playback", "playing": "yes"},
        {"type": "playback", "position": True},
        {"type": "playback", "position": "10"},
        {"type": "playback", "position": [1]},
        {"type": "playback", "rate": False},
        {"type": "playback", "rate": 0},
        {"type": "playback", "rate": 0.1},
        {"type": "playback", "rate": 100},
        {"type": "playback", "rate": -1},
        {"type": "playback", "version": True},
        {"type": "playback", "version": -1},
        {"type": "playback", "version": 1.5},
        {"type": "playback", "version": "0"},
        {"type": "playback", "version": 2**62 + 1},
        {"type": "playback", "movie_id": 5},
        {"type": "playback", "movie_id": "nosuchmovie"},
        {"type": "playback", "movie_id": "x" * 33},
        {"type": "playback", "movie_id": "\u0000"},
        {"type": "playback", "playing": True, "by": "someone"},
        {"type": "playback", "playing": True, "server_time": 0},
    ]:
        add(json.dumps(payload))
    add('{"type": "ping", "type": "chat"}')  # duplicate key: the last wins, and chat needs text
    add('{"type": "ping", "ref": "\\udfff"}')  # a lone surrogate where it would be echoed back
    add('{"type": "chat", "text": "\\ud83d", "ref": "\\ud83d"}')
    add(json.dumps({"type": "playback", "playing": True, "version": room_version + 1000}), "conflict")
    # Random variants for volume: unknown types, truncations, junk, wrong-typed and extra fields.
    valid = [
        {"type": "ping", "t": 1},
        {"type": "chat", "text": "hello"},
        {"type": "playback", "playing": True, "version": 0},
        {"type": "ready", "ready": True},
    ]
    wrong = {
        "t": ["1", [], {}, True, False],
        "text": [0, 1.5, [], {}, False, ""],
        "playing": [0, 1, "true", [], {}],
        "version": [-1, 1.5, "1", True, [], 2**63],
        "ready": ["no", 0, 1, [], {}],
    }
    while len(frames) < 3000:
        pick = rng.randrange(5)
        if pick == 0:
            kind = word()
            add(json.dumps({"type": kind if kind not in CLIENT_TYPES else kind + "!", "t": rng.random()}))
        elif pick == 1:
            text = json.dumps(rng.choice(valid))
            add(text[: rng.randrange(1, len(text) - 1)])
        elif pick == 2:
            add("".join(chr(rng.randrange(1, 0x2FF)) for _ in range(rng.randint(1, 40))))
        elif pick == 3:
            base = dict(rng.choice(valid))
            key = rng.choice([k for k in base if k != "type"])
            base[key] = rng.choice(wrong[key])
            add(json.dumps(base))
        else:
            base = dict(rng.choice(valid))
            base["x_" + word()] = rng.choice([None, 1, "x", [], {}])
            add(json.dumps(base))
    return frames


def test_fuzzed_frames_get_an_error_each_and_change_nothing(cluster, nodes):
    n1, n2 = nodes
    api = Api(n1)
    fuzzer = api.register("fuzzer")
    # Members may do what the fuzzer (the creator) may, so every account gets the same answers.
    room = api.create_room(fuzzer, "fuzz", member_permissions=BASIC_BITS)
    # A user has at most MAX_SOCKETS_PER_USER_ROOM sockets in a room on a node: the sockets are
    # spread over 5 accounts, 4 each per node (and the fuzzer's anchor, its fifth on n1).
    accounts = [fuzzer, *(api.register(f"fuzzer{i}") for i in range(4))]
    for who in accounts[1:]:
        api.join(who, room)
    before = api.playback(fuzzer, room)
    corpus = _corpus(random.Random(20240601), before["version"])
    sockets_per_node = 20  # 40 sockets: 75 frames each, within the per-socket frame allowance
    count_sent = len(corpus)

    async def fuzz_one(ws, frames):
        for i, (frame, _) in enumerate(frames):
            await ws.send(frame)
            if i >= 30:  # past most of the burst allowance, stay under 20 frames/s
                await asyncio.sleep(1 / 17)
        await ws.send({"type": "ping", "t": 7})
        replies = []
        while True:
            message = await ws.next(30)
            if message["type"] == "pong":
                break
            if message["type"] == "member_joined":  # another account's socket arriving: not a reply
                continue
            replies.append(message)
        return replies

    async def scenario():
        anchor = await join(n1, room, fuzzer, label="anchor")
        sockets = []
        for i in range(sockets_per_node):
            who = accounts[i % len(accounts)]
            sockets.append(await join(n1, room, who, label=f"fuzz{i}@n1"))
            sockets.append(await join(n2, room, who, label=f"fuzz{i}@n2"))
        shares = [corpus[i :: len(sockets)] for i in range(len(sockets))]
        started = time.monotonic()
        results = await asyncio.gather(
            *(fuzz_one(ws, share) for ws, share in zip(sockets, shares, strict=True))
        )
        elapsed = time.monotonic() - started

        codes: dict[str, int] = {}
        for share, replies, ws in zip(shares, results, sockets, strict=True):
            assert len(replies) == len(share), (ws.label, len(replies), len(share), replies[-3:])
            for (frame, expected), reply in zip(share, replies, strict=True):
                assert reply["type"] == "error", (ws.label, str(frame)[:200], reply)
                assert reply["code"] in (expected, "rate_limited"), (str(frame)[:200], reply)
                assert isinstance(reply["message"], str) and reply["server_time"] > 0
                codes[reply["code"]] = codes.get(reply["code"], 0) + 1
        # Every consumer is alive and answers; nothing reached the room.
        for ws in sockets:
            await ws.ping()
            assert ws.close_code is None
        await anchor.ping()
        assert [t for t in anchor.types() if t not in ("hello", "member_joined", "pong")] == []
        await close_all(anchor, *sockets)
        return elapsed, codes

    elapsed, codes = run(scenario(), timeout=90)
    report("fuzz", f"{count_sent} frames over 40 sockets in {elapsed:.1f} s, replies by code {codes}")
    assert codes.get("rate_limited", 0) < count_sent * 0.05, codes
    after = api.playback(fuzzer, room)
    assert after["version"] == before["version"]
    assert (after["playing"], after["position"], after["rate"], after["movie_id"]) == (
        before["playing"],
        before["position"],
        before["rate"],
        before["movie_id"],
    )
    assert (
        db_scalar(
            cluster.database_url, "SELECT count(*) FROM rooms_chatmessage WHERE room_id = %s", room["id"]
        )
        == 0
    )
    for node in nodes:  # both processes are still up, and nothing failed inside them
        assert node.proc.poll() is None
        assert Api(node).client.get("/healthz").status_code == 200
        assert "Traceback" not in node.log.read_text(errors="replace"), node.log_tail()


def test_the_frame_allowance_answers_rate_limited_and_keeps_the_socket(nodes):
    n1, _ = nodes
    api = Api(n1)
    flood = api.register("flooder")
    room = api.create_room(flood, "flood")

    async def scenario():
        ws = await join(n1, room, flood)
        for _ in range(120):
            await ws.send("not json")
        codes = [(await ws.expect("error", 5))["code"] for _ in range(120)]
        assert codes.count("invalid") >= 40 and codes.count("rate_limited") >= 40, codes
        assert set(codes) == {"invalid", "rate_limited"}
        await asyncio.sleep(0.3)
        await ws.ping()  # allowance refilled; the socket was never closed
        assert ws.close_code is None
        await close_all(ws)

    run(scenario())


def test_a_client_that_leaves_with_answers_on_their_way_costs_no_error(nodes):
    """Pings, then the connection dropped at once (a moved socket, a closed tab): the pongs find
    the client gone. Nothing is logged as a failure and the node serves on."""
    n1, _ = nodes
    api = Api(n1)
    leaver = api.register("quitter")
    room = api.create_room(leaver, "leaving")
    before = n1.log.read_text(errors="replace").count("room consumer failed")

    async def scenario():
        for _ in range(5):
            ws = await join(n1, room, leaver)
            for t in range(30):
                await ws.send({"type": "ping", "t": t})
            ws.conn.transport.abort()  # no close frame: gone
            await ws.wait_closed(5)
        again = await join(n1, room, leaver)
        await again.ping()
        await close_all(again)

    run(scenario())
    time.sleep(0.5)
    log = n1.log.read_text(errors="replace")
    assert log.count("room consumer failed") == before, log[-3000:]
