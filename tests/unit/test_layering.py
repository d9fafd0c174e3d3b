"""The rooms of the house and what each may import (docs/architecture.md): a lower room never imports a
higher one, Ray stays in deployments/ and serve_app.py, scripts never import tests, and unit test modules
never import each other."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ["common", "protocol", "speech", "llm", "agents", "deployments", "serve_app"]  # lowest first
RAY_FREE = ["common", "protocol", "speech", "llm", "agents"]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def files_of(room: str) -> list[Path]:
    return [ROOT / "serve_app.py"] if room == "serve_app" else sorted((ROOT / room).rglob("*.py"))


def test_every_room_exists():
    assert all(files_of(room) for room in LAYERS), [room for room in LAYERS if not files_of(room)]


def test_no_room_imports_a_higher_one():
    upward = []
    for level, room in enumerate(LAYERS):
        higher = LAYERS[level + 1:]
        for path in files_of(room):
            for name in imported_modules(path):
                if name.split(".")[0] in higher:
                    upward.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not upward, upward


def test_the_core_is_ray_free():
    found = [f"{path.relative_to(ROOT)} imports {name}" for room in RAY_FREE for path in files_of(room)
             for name in imported_modules(path) if name.split(".")[0] == "ray"]
    assert not found, found


def test_scripts_do_not_import_tests():
    found = [f"{path.relative_to(ROOT)} imports {name}" for path in sorted((ROOT / "scripts").glob("*.py"))
             for name in imported_modules(path) if name.split(".")[0] == "tests"]
    assert not found, found


def test_unit_test_modules_do_not_import_each_other():
    """What unit tests share lives in tests/unit/helpers.py (or harness/), never in another test module."""
    found = [f"{path.relative_to(ROOT)} imports {name}" for path in sorted((ROOT / "tests" / "unit").glob("*.py"))
             for name in imported_modules(path) if name.split(".")[-1].startswith("test_")]
    assert not found, found
