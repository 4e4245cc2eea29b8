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


def module_path(name: str) -> Path | None:
    """fusetrace.x.y -> fusetrace/x/y.py (or its package's __init__.py)."""
    parts = name.split(".")
    if parts[0] != "fusetrace":
        return None
    base = ROOT.joinpath(*parts)
    if base.with_suffix(".py").exists():
        return base.with_suffix(".py")
    if (base / "__init__.py").exists():
        return base / "__init__.py"
    return None


def full_imports(path: Path) -> set[str]:
    """Dotted names of everything ``path`` imports (``from a import b`` gives ``a`` and
    ``a.b``: b may be a module), outside ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def reachable_banned(path: Path) -> dict[str, list[str]]:
    """Banned modules reachable from ``path`` through fusetrace's own imports, each with the
    chain of fusetrace modules that leads to it."""
    found: dict[str, list[str]] = {}
    seen: set[Path] = set()
    todo: list[tuple[Path, list[str]]] = [(path, [str(path.relative_to(ROOT))])]
    while todo:
        here, chain = todo.pop()
        if here in seen:
            continue
        seen.add(here)
        for name in sorted(full_imports(here)):
            top = name.split(".")[0]
            if top in BANNED:
                found.setdefault(top, chain)
            nxt = module_path(name)
            if nxt is not None and nxt not in seen:
                todo.append((nxt, [*chain, str(nxt.relative_to(ROOT))]))
            # importing fusetrace.a.b runs fusetrace/a/__init__.py too
            parts = name.split(".")
            for i in range(1, len(parts)):
                pkg = module_path(".".join(parts[:i]))
                if pkg is not None and pkg not in seen:
                    todo.append((pkg, [*chain, str(pkg.relative_to(ROOT))]))
    return found


#: known impure imports of modules listed as pure, each with the work that removes it
KNOWN_IMPURE: set[str] = set()


@pytest.mark.parametrize("path", pure_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_pure_modules_do_no_io(path: Path) -> None:
    assert not imported_modules(path) & BANNED


@pytest.mark.parametrize("path", pure_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_pure_modules_reach_no_io_through_other_modules(path: Path) -> None:
    """Design.md §2: directly or through another module."""
    found = reachable_banned(path)
    rel = str(path.relative_to(PACKAGE))
    if rel in KNOWN_IMPURE:
        assert found, f"{rel} is pure now: drop it from KNOWN_IMPURE"
        pytest.xfail(f"known: {rel} reaches {sorted(found)} via {found[sorted(found)[0]]}")
    assert not found, {k: " -> ".join(v) for k, v in found.items()}


def test_the_transitive_check_follows_imports() -> None:
    """cli/conform.py imports no os itself but reaches it (conform/session.py mounts and
    starts processes): the check must see it, with the chain of modules that leads there."""
    path = PACKAGE / "cli" / "conform.py"
    assert "os" not in imported_modules(path)
    found = reachable_banned(path)
    assert "os" in found and found["os"][0] == "fusetrace/cli/conform.py"
    assert len(found["os"]) > 1


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


#: modules without a test file of their own, and why
NO_TEST_FILE = {
    "__main__.py": "the `python -m fusetrace` entry point; tests/cli run it as a subprocess",
}


def test_every_module_has_a_test_file() -> None:
    """The mirror the other way: fusetrace/x/y.py needs tests/x/test_y.py (a package's
    __init__.py needs none; its modules have theirs)."""
    missing = []
    for module in sorted(PACKAGE.rglob("*.py")):
        rel = module.relative_to(PACKAGE)
        if rel.name == "__init__.py" or str(rel) in NO_TEST_FILE:
            continue
        test = ROOT / "tests" / rel.parent / f"test_{rel.stem}.py"
        if not test.exists() and not (ROOT / "tests" / rel.parent / rel.stem).is_dir():
            missing.append(f"{rel} (tests/{rel.parent / f'test_{rel.stem}.py'})")
    assert not missing, f"modules without a test file: {missing}"
