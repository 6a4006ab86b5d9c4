"""The real-time vocabulary (apps.core.events): every event type is produced and handled, events
are built only by their builders, and the wire format is what clients already read.

"Produced" and "handled" are read from the source, not from a run: a builder call somewhere in
the server's code (apps/, synctv/; tests do not count), a ``case "type":`` (or ``type ===``) in
the page's scripts under static/js for a public event, a comparison with the type in the room
consumer for an internal one. Adding an event without its handler, or a handler for an event
nothing sends, fails here.
"""

from __future__ import annotations

import ast
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from apps.core import events
from apps.core.tests.helpers import ROOT, server_modules

CONSUMER = ROOT / "apps" / "rooms" / "consumers.py"
ROSTER = ROOT / "apps" / "rooms" / "roster.py"  # acts on _presence, which never reaches a socket
SCRIPTS = ROOT / "static" / "js"
BUILDERS = {kind.builder: kind.type for kind in events.VOCABULARY.values()}


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _builder_calls(tree: ast.Module) -> set[str]:
    """Builders called in a module: ``events.x(...)``, or ``x(...)`` imported from apps.core.events."""
    imported = {
        alias.asname or alias.name: alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "apps.core.events"
        for alias in node.names
    }
    called = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "events":
            called.add(func.attr)
        elif isinstance(func, ast.Name) and func.id in imported:
            called.add(imported[func.id])
    return called


def produced() -> dict[str, set[str]]:
    """Event type -> the modules that call its builder."""
    where: dict[str, set[str]] = {}
    events_module = Path(events.__file__).resolve()
    for path in server_modules():
        if path.resolve() == events_module:
            continue
        for builder in _builder_calls(_tree(path)) & set(BUILDERS):
            where.setdefault(BUILDERS[builder], set()).add(str(path.relative_to(ROOT)))
    return where


def handled_by_scripts() -> set[str]:
    types = set()
    for path in sorted(SCRIPTS.rglob("*.js")):
        text = path.read_text(encoding="utf-8")
        types |= set(re.findall(r"""\bcase\s+["']([A-Za-z_]+)["']\s*:""", text))
        types |= set(re.findall(r"""\.type\s*===?\s*["']([A-Za-z_]+)["']""", text))
    return types


def handled_by_consumer() -> set[str]:
    """Internal types the consumer (or the hub's rosters) compares an event's type with."""
    found = set()
    for node in (*ast.walk(_tree(CONSUMER)), *ast.walk(_tree(ROSTER))):
        if isinstance(node, ast.Compare):
            for operand in (node.left, *node.comparators):
                if isinstance(operand, ast.Constant) and isinstance(operand.value, str):
                    if operand.value.startswith("_"):
                        found.add(operand.value)
    return found


# --- produced == handled -------------------------------------------------------------------------


def test_the_vocabulary_has_public_internal_and_reserved_types():
    assert {"hello", "playback", "chat", "error", "kicked", "server_shutdown"} <= events.PUBLIC
    assert events.INTERNAL == {"_member_removed", "_room_closed", "_sessions_revoked", "_presence"}
    assert set(events.RESERVED) == set()  # publisher_changed is sent by failover (apps/streaming)
    assert not events.PUBLIC & events.INTERNAL and not events.PUBLIC & set(events.RESERVED)


def test_every_public_event_is_produced_and_handled_by_the_page():
    made, handled = produced(), handled_by_scripts()
    not_produced = sorted(events.PUBLIC - set(made))
    assert not not_produced, f"no server code calls the builder of {not_produced}"
    not_handled = sorted(events.PUBLIC - handled)
    assert not not_handled, f"no case in static/js for {not_handled}"


def test_every_internal_event_is_produced_and_handled_by_the_consumer():
    made, handled = produced(), handled_by_consumer()
    assert events.INTERNAL <= set(made), sorted(events.INTERNAL - set(made))
    assert handled == events.INTERNAL, (
        f"handled but never produced: {sorted(handled - events.INTERNAL)}; "
        f"produced but not handled: {sorted(events.INTERNAL - handled)}"
    )


def test_reserved_events_are_handled_but_not_produced_yet():
    """``publisher_changed`` waits for live streams. Once something sends it, it is no longer
    reserved: take its ``reserved=`` note off in apps.core.events."""
    made, handled = produced(), handled_by_scripts()
    for kind in events.RESERVED:
        assert kind in handled, kind
        assert kind not in made, f"{kind} is produced by {made[kind]}: it is not reserved any more"


def test_events_are_built_only_by_their_builders():
    """No ``{"type": "<an event type>", ...}`` written by hand outside apps.core.events."""
    events_module = Path(events.__file__).resolve()
    by_hand = []
    for path in server_modules():
        if path.resolve() == events_module:
            continue
        for node in ast.walk(_tree(path)):
            if not isinstance(node, ast.Dict):
                continue
            for key, value in zip(node.keys, node.values, strict=True):
                if (
                    isinstance(key, ast.Constant)
                    and key.value == "type"
                    and isinstance(value, ast.Constant)
                    and value.value in events.VOCABULARY
                ):
                    by_hand.append(f"{path.relative_to(ROOT)}:{node.lineno} {value.value}")
    assert not by_hand, by_hand


def test_each_builder_builds_its_own_type():
    for node in ast.walk(_tree(Path(events.__file__))):
        if not isinstance(node, ast.FunctionDef) or node.name not in BUILDERS:
            continue
        kinds = {
            value.value
            for inner in ast.walk(node)
            if isinstance(inner, ast.Dict)
            for key, value in zip(inner.keys, inner.values, strict=True)
            if isinstance(key, ast.Constant) and key.value == "type" and isinstance(value, ast.Constant)
        }
        assert kinds == {BUILDERS[node.name]}, (node.name, kinds)


# --- the wire format ------------------------------------------------------------------------------
# Byte for byte what the dicts written by hand produced before apps.core.events (key order
# included: clients and tests read these frames).


def wire(event) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False, default=str)


ALICE = {"id": "u1", "username": "alice", "guest": False}
VIEW = {
    "movie_id": "m1",
    "playing": True,
    "position": 12.5,
    "rate": 1.0,
    "updated_at": datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
    "version": 7,
    "server_time": datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC),
    "server_time_ms": 1767323046000,
}
STATE = (
    '"movie_id":"m1","playing":true,"position":12.5,"rate":1.0,"updated_at":1767323045678,'
    '"version":7,"server_time":1767323046000'
)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            events.playback(state=events.playback_state(VIEW), by=ALICE),
            '{"type":"playback",' + STATE + ',"by":{"id":"u1","username":"alice","guest":false}}',
        ),
        (
            events.playback(state=events.playback_state(VIEW), by=None, sync=True),
            '{"type":"playback",' + STATE + ',"by":null,"sync":true}',
        ),
        (
            events.hello(
                member={"role": "member"},
                room={"id": "r1"},
                playback=events.playback_state(VIEW),
                members_online=[],
            ),
            '{"type":"hello","member":{"role":"member"},"room":{"id":"r1"},"playback":{'
            + STATE
            + '},"members_online":[]}',
        ),
        (events.pong(t=1.5), '{"type":"pong","t":1.5}'),
        (
            events.chat(id=3, user=ALICE, text="hi"),
            '{"type":"chat","id":3,"user":{"id":"u1","username":"alice","guest":false},"text":"hi"}',
        ),
        (
            events.chat(id=3, user=ALICE, text="hi", written_at_ms=5),
            '{"type":"chat","id":3,"user":{"id":"u1","username":"alice","guest":false},"text":"hi",'
            '"history":true,"server_time":5}',
        ),
        (events.emoji(user=ALICE, emoji="x"), '{"type":"emoji","user":' + wire(ALICE) + ',"emoji":"x"}'),
        (events.playlist(), '{"type":"playlist"}'),
        (
            events.member_joined(user=ALICE, role="member"),
            '{"type":"member_joined","user":' + wire(ALICE) + ',"role":"member"}',
        ),
        (
            events.member_joined(user=ALICE, role="admin", ready=False),
            '{"type":"member_joined","user":' + wire(ALICE) + ',"role":"admin","ready":false}',
        ),
        (events.member_left(user=ALICE), '{"type":"member_left","user":' + wire(ALICE) + "}"),
        (
            events.member_updated(member={"role": "admin"}),
            '{"type":"member_updated","member":{"role":"admin"}}',
        ),
        (
            events.member_ready(user=ALICE, ready=True),
            '{"type":"member_ready","user":' + wire(ALICE) + ',"ready":true}',
        ),
        (events.room_updated(room={"id": "r1"}), '{"type":"room_updated","room":{"id":"r1"}}'),
        (events.kicked(reason="banned"), '{"type":"kicked","reason":"banned"}'),
        (events.error("invalid", "no", None), '{"type":"error","code":"invalid","message":"no","ref":null}'),
        (
            events.error("connection_refused", "full", 4, close_code=4429),
            '{"type":"error","code":"connection_refused","message":"full","ref":4,"details":{"close_code":4429}}',
        ),
        (
            events.server_shutdown(message="bye", reconnect_after_ms=2000, reconnect_window_ms=500),
            '{"type":"server_shutdown","message":"bye","reconnect_after_ms":2000,"reconnect_window_ms":500,"drain_ms":0,"reason":"restart"}',
        ),
        (
            events.members_changed(joined=[{"user_id": "u1"}], left=["u2"], count=7),
            '{"type":"members_changed","joined":[{"user_id":"u1"}],"left":["u2"],"count":7}',
        ),
        (
            events.members_page(members=[], next=None, count=0),
            '{"type":"members_page","members":[],"next":null,"count":0}',
        ),
        (
            events.presence_changed(version=3, joined=[], left=["u1"]),
            '{"type":"_presence","v":3,"joined":[],"left":["u1"]}',
        ),
        (
            events.member_removed(user_id="u1", reason="kicked"),
            '{"type":"_member_removed","user_id":"u1","reason":"kicked"}',
        ),
        (events.room_closed(reason="room_deleted"), '{"type":"_room_closed","reason":"room_deleted"}'),
        (events.sessions_revoked(), '{"type":"_sessions_revoked"}'),
    ],
)
def test_the_wire_format_is_unchanged(event, expected):
    assert wire(event) == expected
