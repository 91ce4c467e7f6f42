"""The core must stay sans-I/O: no I/O or global-chance imports, no module-level random calls."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "src" / "sapwood" / "core"
FORBIDDEN_MODULES = {
    "asyncio", "socket", "time", "threading", "os", "selectors", "subprocess", "multiprocessing",
    "aiohttp", "httpx", "uvloop", "lmdb", "sqlite3", "signal", "datetime",
}
# random.Random (the class) is allowed: instances are injected. Module-level functions are not.
RANDOM_ALLOWED = {"Random"}


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FORBIDDEN_MODULES:
                    found.append(f"{path.name}:{node.lineno} imports {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            root = node.module.split(".")[0]
            if root in FORBIDDEN_MODULES:
                found.append(f"{path.name}:{node.lineno} imports from {node.module}")
            if root == "random":
                bad = [a.name for a in node.names if a.name not in RANDOM_ALLOWED]
                if bad:
                    found.append(f"{path.name}:{node.lineno} imports random.{', '.join(bad)}")
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "random"
            and node.attr not in RANDOM_ALLOWED
        ):
            found.append(f"{path.name}:{node.lineno} uses random.{node.attr}")
    return found


def test_core_modules_are_sans_io() -> None:
    files = sorted(CORE.rglob("*.py"))
    assert files, "no core modules found"
    problems = [v for f in files for v in _violations(f)]
    assert problems == []


def test_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nimport random\nx = random.random()\nfrom os import path\n")
    problems = _violations(bad)
    assert any("imports time" in p for p in problems)
    assert any("random.random" in p for p in problems)
    assert any("from os" in p for p in problems)
