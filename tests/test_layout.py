"""The package's shape: pure packages do no I/O, and tests mirror the package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "fusetrace"

#: design.md §2: these import nothing that does I/O or reads the clock.
PURE = [
    "protocol",
    "tracker",
    "capture/pcapng.py",
    "replay/engine.py",
    "replay/matching.py",
    "replay/codec.py",
    "conform/report.py",
    "conform/steps.py",
    "conform/coverage.py",
]
BANNED = {"os", "socket", "subprocess", "time", "rich", "asyncio", "threading", "select"}


def pure_files() -> list[Path]:
    files: list[Path] = []
    for entry in PURE:
        path = PACKAGE / entry
        if path.is_dir():
            files.extend(sorted(path.rglob("*.py")))
        elif path.exists():
            files.append(path)
    return files


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", pure_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_pure_modules_do_no_io(path: Path) -> None:
    assert not imported_modules(path) & BANNED


def test_there_are_pure_modules_to_check() -> None:
    assert len(pure_files()) >= 3


def test_every_test_file_mirrors_a_module() -> None:
    """tests/x/test_y.py belongs to fusetrace/x/y.py (or to the package fusetrace/x/y/);
    tests/x/test_x.py to the package's own __init__.py."""
    strays = []
    for test in sorted((ROOT / "tests").rglob("test_*.py")):
        rel = test.relative_to(ROOT / "tests")
        if len(rel.parts) == 1:
            continue  # project-wide tests (this file, man pages)
        stem = rel.name[len("test_") : -len(".py")]
        pkg = PACKAGE.joinpath(*rel.parts[:-1])
        if not pkg.is_dir():
            strays.append(str(rel))
            continue
        own_init = stem == pkg.name and (pkg / "__init__.py").exists()
        if not ((pkg / f"{stem}.py").exists() or (pkg / stem).is_dir() or own_init):
            strays.append(str(rel))
    assert not strays, f"tests that mirror no module: {strays}"
