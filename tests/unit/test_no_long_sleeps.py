"""The house rule, kept: no test sleeps a second or more (wait on a condition with tests.processes.wait_until,
or inject the clock). Scans every .py file under tests/ for calls of `sleep` (time.sleep, asyncio.sleep, ...)
whose duration is known from the source: a number, or a module constant (literals, arithmetic of other
constants, `float(os.environ.get("X", default))` taken at its default)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
LIMIT_S = 1.0


def _value(node: ast.expr, constants: dict[str, float]) -> float | None:
    """The number `node` stands for, or None when the source does not say."""
    match node:
        case ast.Constant(value=bool()):
            return None
        case ast.Constant(value=int() | float() as number):
            return float(number)
        case ast.Constant(value=str() as text):
            try:
                return float(text)
            except ValueError:
                return None
        case ast.Name(id=name):
            return constants.get(name)
        case ast.UnaryOp(op=ast.USub(), operand=operand):
            inner = _value(operand, constants)
            return None if inner is None else -inner
        case ast.BinOp(left=left, op=op, right=right):
            a, b = _value(left, constants), _value(right, constants)
            if a is None or b is None:
                return None
            if isinstance(op, ast.Add):
                return a + b
            if isinstance(op, ast.Sub):
                return a - b
            if isinstance(op, ast.Mult):
                return a * b
            if isinstance(op, ast.Div) and b:
                return a / b
            return None
        case ast.Call(func=ast.Name(id="float" | "int"), args=[arg]):
            return _value(arg, constants)
        case ast.Call(func=ast.Attribute(attr="get"), args=[_, default]):  # os.environ.get("X", default)
            return _value(default, constants)
    return None


def _constants(tree: ast.Module) -> dict[str, float]:
    constants: dict[str, float] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            target, value = stmt.targets[0].id, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
            target, value = stmt.target.id, stmt.value
        else:
            continue
        number = _value(value, constants)
        if number is not None:
            constants[target] = number
    return constants


def long_sleeps(source: str, name: str = "<source>") -> list[str]:
    """`file:line: sleep(...)` for each sleep of LIMIT_S or more in `source`."""
    tree = ast.parse(source, name)
    constants = _constants(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        if called != "sleep":
            continue
        seconds = _value(node.args[0], constants)
        if seconds is not None and seconds >= LIMIT_S:
            found.append((node.lineno, f"{name}:{node.lineno}: {ast.unparse(node)} ({seconds:g} s)"))
    return [text for _, text in sorted(found)]


def test_the_scanner_finds_long_sleeps_and_passes_short_ones() -> None:
    source = (
        "import asyncio, os, time\n"
        "OUTAGE_S = float(os.environ.get('BGTASKS_OUTAGE_S', 3.0 + 1.5))\n"
        "SHORT = 0.05\n"
        "time.sleep(1.0)\n"
        "await asyncio.sleep(30)\n"
        "time.sleep(OUTAGE_S)\n"
        "time.sleep(0.2)\n"
        "time.sleep(SHORT * 10)\n"
        "time.sleep(SHORT * 20)\n"
        "time.sleep(interval)\n"
    )
    found = long_sleeps(source)
    assert [line.split(":")[1] for line in found] == ["4", "5", "6", "9"], found


def test_no_test_sleeps_a_second_or_more() -> None:
    found = [hit for path in sorted(TESTS.rglob("*.py")) if ".venv" not in path.parts
             for hit in long_sleeps(path.read_text(), str(path.relative_to(TESTS.parent)))]
    assert found == [], "sleeps of a second or more (wait on a condition instead):\n" + "\n".join(found)
