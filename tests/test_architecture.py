"""The shape the code promises (docs/architecture.md): the core never imports the wiring, the turn
fits on a screen, no function grows past a screen, no two modules share a name."""
from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ("bot", "knowledge")
MAX_FUNCTION_LINES = 60
MAX_TURN_LINES = 250


def _modules(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def test_the_core_never_imports_the_wiring_or_the_evals():
    bad = [f"{p.relative_to(ROOT)} imports {m}" for p in _modules(*CORE) for m in _imports(p)
           if m.split(".")[0] in ("integrations", "evals", "flask", "slack_bolt", "slack_sdk", "smtplib")]
    assert not bad, "the core (bot/, knowledge/) must not import adapters: " + "; ".join(bad)


def test_no_function_is_longer_than_a_screen():
    long = []
    for p in _modules("bot", "integrations"):
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{p.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: " + "; ".join(long)


def test_the_turn_fits_on_a_screen():
    n = len((ROOT / "bot" / "turn.py").read_text(encoding="utf-8").splitlines())
    assert n < MAX_TURN_LINES, f"bot/turn.py has {n} lines; keep it under {MAX_TURN_LINES} (steps live in their own modules)"


def test_no_two_modules_share_a_name():
    names = Counter(p.stem for p in _modules("bot", "knowledge", "integrations", "evals") if p.stem != "__init__")
    assert not [n for n, c in names.items() if c > 1], f"modules sharing a name: {[n for n, c in names.items() if c > 1]}"
