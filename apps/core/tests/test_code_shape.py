"""The code-health limits (docs/architecture.md, "Code shape"): no module under apps/ over 500
lines and no function over 60, migrations aside. Held by a test so a change that grows a module
past them fails CI instead of being found by the next reader."""

import ast
from pathlib import Path

import pytest

APPS = Path(__file__).resolve().parents[2]
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def _modules() -> list[Path]:
    return sorted(p for p in APPS.rglob("*.py") if "migrations" not in p.relative_to(APPS).parts)


def _long_functions(path: Path, root: Path = APPS.parent) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [
        f"{path.relative_to(root)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]


def test_the_scan_sees_the_apps():
    # A wrong root would find nothing and pass whatever the code looks like.
    names = {p.relative_to(APPS).as_posix() for p in _modules()}
    assert {"rooms/consumers.py", "core/events.py", "accounts/models.py"} <= names


def test_no_module_over_500_lines():
    long = [
        f"{p.relative_to(APPS.parent)} ({n} lines)"
        for p in _modules()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    ]
    assert not long, "split these modules by concern: " + ", ".join(long)


def test_no_function_over_60_lines():
    long = [entry for p in _modules() for entry in _long_functions(p)]
    assert not long, "name the steps of these functions: " + ", ".join(long)


@pytest.mark.parametrize(
    ("source", "expected"),
    [("def f():\n" + "    x = 1\n" * 60 + "    return x\n", 1), ("def f():\n    return 1\n", 0)],
)
def test_a_long_function_is_found(tmp_path, source, expected):
    path = tmp_path / "probe.py"
    path.write_text(source, encoding="utf-8")
    assert len(_long_functions(path, root=tmp_path)) == expected
