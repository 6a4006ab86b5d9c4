"""Audit actions are a closed list (apps.audit.actions.AuditAction): every one is written by some
code, no call passes a bare string, and audit_record refuses anything not on the list.

Read from the source (apps/, synctv/; tests do not count): every call of ``audit_record`` (the
``action=`` argument) and of a service's ``_audit`` helper (its first argument).
"""

from __future__ import annotations

import ast

import pytest

from apps.audit.actions import AuditAction
from apps.audit.chain import verify_chain
from apps.audit.models import AuditChainHead, AuditEvent
from apps.audit.services import audit_record
from apps.core.context import Origin
from apps.core.tests.helpers import ROOT, server_modules

WRITERS = {"audit_record": "action", "_audit": 0}  # function -> where its action goes
ORIGIN = Origin(ip="192.0.2.7", user_agent="test")


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _called_name(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _action_argument(call: ast.Call, where: str | int) -> ast.expr | None:
    if isinstance(where, int):
        return call.args[where] if len(call.args) > where else None
    return next((kw.value for kw in call.keywords if kw.arg == where), None)


def _function_around(call: ast.Call, parents) -> ast.AST:
    node: ast.AST = call
    while node in parents and not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        node = parents[node]
    return node


def _typed_parameter(name: str, call: ast.Call, parents) -> bool:
    """``name`` is a parameter of the function around ``call``, annotated ``AuditAction``."""
    function = _function_around(call, parents)
    if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
        return False
    arguments = function.args
    every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
    return any(
        arg.arg == name and arg.annotation is not None and ast.unparse(arg.annotation) == "AuditAction"
        for arg in every
    )


def _assigned_values(name: str, call: ast.Call, parents) -> list[ast.expr]:
    """What ``name`` is assigned in the function around ``call``."""
    node = _function_around(call, parents)
    return [
        assign.value
        for assign in ast.walk(node)
        if isinstance(assign, ast.Assign)
        and any(isinstance(target, ast.Name) and target.id == name for target in assign.targets)
    ]


def _leaves(expr: ast.expr, call: ast.Call, parents) -> list[ast.expr]:
    """The expressions an action can come from: through ``a if c else b`` and local names."""
    if isinstance(expr, ast.IfExp):
        return _leaves(expr.body, call, parents) + _leaves(expr.orelse, call, parents)
    if isinstance(expr, ast.Name) and expr.id != "AuditAction":
        values = _assigned_values(expr.id, call, parents)
        if values:
            return [leaf for value in values for leaf in _leaves(value, call, parents)]
        if _typed_parameter(expr.id, call, parents):
            return []  # a helper passing its ``action: AuditAction`` on: its own callers are checked
    return [expr]


def _is_member(expr: ast.expr) -> bool:
    return (
        isinstance(expr, ast.Attribute)
        and isinstance(expr.value, ast.Name)
        and expr.value.id == "AuditAction"
        and expr.attr in AuditAction.__members__
    )


def audit_calls() -> list[tuple[str, ast.Call, list[ast.expr]]]:
    found = []
    for path in server_modules():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        parents = _parents(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or _called_name(node) not in WRITERS:
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            argument = _action_argument(node, WRITERS[_called_name(node)])
            if argument is None:
                found.append((where, node, [ast.Constant(value=None)]))  # no action given: refused below
            else:
                found.append((where, node, _leaves(argument, node, parents)))
    return found


def test_audit_calls_are_found():
    calls = audit_calls()
    assert len(calls) >= 30
    assert {where.split(":")[0] for where, _call, _leaves in calls} >= {
        "apps/accounts/services/sessions.py",
        "apps/accounts/services/users.py",
        "apps/accounts/services/moderation.py",
        "apps/rooms/services/rooms.py",
        "apps/rooms/services/membership.py",
        "apps/rooms/services/playlist.py",
        "apps/rooms/services/playback.py",
    }


def test_no_audit_call_passes_a_bare_string():
    """Every action argument is an AuditAction member, directly or through a local name or a
    conditional; a helper may pass on a parameter annotated ``AuditAction`` (``_audit``)."""
    bad = []
    for where, call, leaves in audit_calls():
        bad += [f"{where}: {ast.unparse(leaf)}" for leaf in leaves if not _is_member(leaf)]
    assert not bad, bad


def test_every_action_is_written_somewhere():
    used = {leaf.attr for _where, _call, leaves in audit_calls() for leaf in leaves if _is_member(leaf)}
    unused = sorted(set(AuditAction.__members__) - used)
    assert not unused, f"no code records {unused}: remove them or record them"


def test_the_values_are_the_strings_stored_before():
    """Stored rows and the hash chain hold these strings: a renamed value would orphan them."""
    assert len(AuditAction) == 56  # 41, issue 12: e-mail (3) and OAuth2 (3); issue 13: streams (8); purge (1)
    assert len(set(AuditAction)) == len(AuditAction.__members__)  # no alias
    assert AuditAction.ROOM_CREATE == "room.create" and AuditAction.TOKENS_REVOKE_ALL == "tokens.revoke_all"
    assert all(action.value.count(".") == 1 and action.value.islower() for action in AuditAction)


@pytest.mark.django_db
def test_audit_record_refuses_an_unknown_action():
    with pytest.raises(ValueError, match=r"room\.explode"):
        audit_record(action="room.explode", origin=ORIGIN)  # type: ignore[arg-type]
    assert not AuditEvent.objects.exists()
    assert not AuditChainHead.objects.filter(seq__gt=0).exists()


@pytest.mark.django_db
def test_audit_record_stores_the_plain_string_and_the_chain_holds():
    event = audit_record(action=AuditAction.USER_CREATE_ROOT, origin=ORIGIN)
    stored = AuditEvent.objects.get(pk=event.pk)
    assert type(event.action) is str and stored.action == "user.create_root"
    assert verify_chain() == (1, None)
