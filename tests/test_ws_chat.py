"""Chat over real sockets on two nodes: escaped once, sensitive words masked, the length limit,
the per-user flood limit, and the last 50 messages replayed after ``hello``
(docs/security.md, "Checks on what comes in" and "Limits"; docs/api.md, "WebSocket")."""

from __future__ import annotations

import asyncio
import time

import pytest

from apps.permissions.flags import DEFAULT_MEMBER, Perm
from tests.wsclient import Api, close_all, cluster_fixture, db_scalar, join, run

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

ADD_WORD = (
    'shell -c "from apps.rooms.models import SensitiveWord;'
    " from apps.rooms.moderation import words_changed;"
    " SensitiveWord.objects.create(word='darnit'); words_changed()\""
)


cluster = cluster_fixture("ws-chat", "n1", "n2")


def _rows(cluster, room) -> list[str]:
    import psycopg

    with psycopg.connect(cluster.database_url) as conn:
        rows = conn.execute(
            "SELECT text FROM rooms_chatmessage WHERE room_id = %s ORDER BY id", (room["id"],)
        )
        return [r[0] for r in rows]


def test_chat_is_escaped_and_sensitive_words_masked_on_every_node(cluster, nodes):
    n1, n2 = nodes
    api = Api(n1)
    owner, mia = api.register("cowner"), api.register("mia")
    room = api.create_room(owner, "chat")
    api.join(mia, room)
    cluster.manage(ADD_WORD)  # an operator adds a word while the nodes run

    sent_text = "<b>bold</b> & \"q\" 'x' DarNit!"
    expected = "&lt;b&gt;bold&lt;/b&gt; &amp; &quot;q&quot; &#x27;x&#x27; ******!"

    async def scenario():
        o = await join(n1, room, owner)
        m = await join(n2, room, mia)
        # Nodes re-read the word list within a few seconds of the change: retry until masked.
        deadline = time.monotonic() + 8
        while True:
            await m.send({"type": "chat", "text": sent_text})
            got = await o.expect("chat", 2)
            if got["text"] == expected or time.monotonic() > deadline:
                break
            await asyncio.sleep(1.1)  # stay inside the per-user chat allowance
        assert got["text"] == expected
        assert (await m.expect("chat", 2, where=lambda c: c["id"] == got["id"]))["text"] == expected
        # Escaped once: what is stored and replayed is exactly what was broadcast.
        late = await join(n1, room, owner, label="late")
        await late.ping()  # the history precedes the pong
        history = [f for f in late.frames if f["type"] == "chat"]
        assert history[-1]["text"] == expected and history[-1]["history"] is True
        assert _rows(cluster, room)[-1] == expected
        await close_all(o, m, late)

    run(scenario())


def test_chat_length_limit(cluster, nodes):
    n1, _ = nodes
    api = Api(n1)
    owner = api.register("lenowner")
    room = api.create_room(owner, "length")

    async def scenario():
        ws = await join(n1, room, owner)
        await ws.send({"type": "chat", "text": "y" * 2001, "ref": "long"})
        err = await ws.expect("error", 2)
        assert (err["code"], err["ref"]) == ("invalid", "long") and "2000" in err["message"]
        await ws.send({"type": "chat", "text": "z" * 2000})
        assert (await ws.expect("chat", 2))["text"] == "z" * 2000
        await close_all(ws)

    run(scenario())
    assert _rows(cluster, room) == ["z" * 2000]


def test_chat_flood_is_rate_limited_per_user(cluster, nodes):
    n1, _ = nodes
    api = Api(n1)
    owner, noisy = api.register("fowner"), api.register("noisy")
    room = api.create_room(owner, "flood")
    api.join(noisy, room)

    async def scenario():
        o = await join(n1, room, owner)
        a = await join(n1, room, noisy, label="noisy-1")
        b = await join(n1, room, noisy, label="noisy-2")
        for i in range(8):
            await a.send({"type": "chat", "text": f"spam {i}", "ref": i})
        replies = [await a.next(2) for _ in range(8)]
        replies = [r for r in replies if r["type"] in ("chat", "error")]
        while len(replies) < 8:
            r = await a.next(2)
            if r["type"] in ("chat", "error"):
                replies.append(r)
        accepted = [r for r in replies if r["type"] == "chat"]
        limited = [r for r in replies if r["type"] == "error"]
        assert 5 <= len(accepted) <= 6, replies
        assert all(r["code"] == "rate_limited" for r in limited) and len(limited) >= 2
        assert {r["ref"] for r in limited} <= set(range(8))
        # The allowance is the user's, not the socket's: the second socket is limited too.
        await b.send({"type": "chat", "text": "from my other tab", "ref": "b"})
        assert (await b.expect("error", 2, where=lambda e: e["ref"] == "b"))["code"] == "rate_limited"
        # Someone else is not affected, and the flooder may talk again a second later.
        await o.send({"type": "chat", "text": "I can talk"})
        await b.expect("chat", 2, where=lambda c: c["text"] == "I can talk")
        await asyncio.sleep(1.1)
        await b.send({"type": "chat", "text": "calm now"})
        await o.expect("chat", 2, where=lambda c: c["text"] == "calm now")
        # The sockets survived the flood.
        await a.ping()
        await close_all(o, a, b)
        return len(accepted)

    accepted = run(scenario())
    assert len(_rows(cluster, room)) == accepted + 2


def test_late_joiner_gets_the_last_50_messages_in_order(cluster, nodes):
    n1, n2 = nodes
    api = Api(n1)
    owner = api.register("howner")
    talkers = [api.register(f"talker{i}") for i in range(11)]  # 5 each: within the burst allowance
    room = api.create_room(owner, "history")
    for who in talkers:
        api.join(who, room)

    async def scenario():
        o = await join(n1, room, owner)
        sockets = [await join(n1 if i % 2 else n2, room, who) for i, who in enumerate(talkers)]
        for n in range(55):
            ws = sockets[n // 5]
            await ws.send({"type": "chat", "text": f"msg-{n:02d}"})
            await o.expect(
                "chat", 3, where=lambda c, n=n: c["text"] == f"msg-{n:02d}"
            )  # one at a time: a known order
        await close_all(*sockets)

        late = await join(n2, room, owner, label="late")
        await late.ping()
        chats = [f for f in late.frames if f["type"] == "chat"]
        assert [c["text"] for c in chats] == [f"msg-{n:02d}" for n in range(5, 55)]
        assert all(c["history"] is True for c in chats)
        assert [c["id"] for c in chats] == sorted(c["id"] for c in chats)
        assert late.frames[1 : 1 + 50] == chats  # right after hello, before anything else
        assert chats[0]["user"]["username"] == "talker1" and chats[-1]["user"]["username"] == "talker10"
        assert all(c["server_time"] > 0 for c in chats)
        await close_all(o, late)

    run(scenario())
    assert (
        db_scalar(
            cluster.database_url, "SELECT count(*) FROM rooms_chatmessage WHERE room_id = %s", room["id"]
        )
        == 55
    )


def test_hello_and_history_come_first_even_in_a_busy_room(cluster, nodes):
    """Room events published while a socket is connecting are held back until its hello and
    history have been sent (and are not repeated when hello or the history already hold them)."""
    n1, n2 = nodes
    api = Api(n1)
    owner = api.register("busyowner")
    chatters = [api.register(f"busy{i}") for i in range(4)]
    # 16 viewer sockets over 4 accounts: a user has at most MAX_SOCKETS_PER_USER_ROOM per node.
    viewers = [api.register(f"busyviewer{k}") for k in range(4)]
    room = api.create_room(owner, "busy", member_permissions=DEFAULT_MEMBER | int(Perm.PLAY_CONTROL))
    for who in (*chatters, *viewers):
        api.join(who, room)

    async def scenario():
        driver = await join(n1, room, owner, label="driver")
        talk = [await join(n2, room, who) for who in chatters]
        for i, ws in enumerate(talk):
            await ws.send({"type": "chat", "text": f"old {i}"})
            await driver.expect("chat", 2, where=lambda c, i=i: c["text"] == f"old {i}")
        stop = asyncio.Event()

        async def churn():  # playback and chat changes, all the time, from both nodes
            n = 0
            while not stop.is_set():
                await driver.send({"type": "playback", "position": float(n)})
                if n % 8 == 0:
                    await talk[(n // 8) % len(talk)].send({"type": "chat", "text": f"live {n}"})
                n += 1
                await asyncio.sleep(1 / 15)

        task = asyncio.create_task(churn())
        joined = []
        try:
            for i in range(16):
                who = viewers[i % len(viewers)]
                ws = await join(n1 if i % 2 else n2, room, who, label=f"viewer{i}")
                joined.append(ws)
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await task
        for ws in joined:
            await ws.ping()
            frames = ws.frames
            assert frames[0]["type"] == "hello"
            count = next(i for i, f in enumerate(frames[1:]) if not f.get("history"))
            history, rest = frames[1 : 1 + count], frames[1 + count :]
            assert [f["text"] for f in history[:4]] == [f"old {i}" for i in range(4)], [
                f["type"] for f in frames[:6]
            ]
            assert all(f["text"].startswith("live") for f in history[4:])
            assert not any(f.get("history") for f in rest)  # the history is all together, first
            version = frames[0]["playback"]["version"]
            versions = [f["version"] for f in rest if f["type"] == "playback"]
            assert all(v > version for v in versions) and versions == sorted(versions), (version, versions)
            chat_ids = [f["id"] for f in frames if f["type"] == "chat"]
            assert chat_ids == sorted(set(chat_ids))  # in order, none twice
        await close_all(driver, *talk, *joined)

    run(scenario(), timeout=60)
