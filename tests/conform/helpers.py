"""Daemons and images the conform tests mount (mount hygiene: tests.support.mount)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fusetrace.conform.library import build_reference_tree

ROOT = Path(__file__).resolve().parents[2]
PASSTHROUGH = ROOT / "tests" / "support" / "passthroughfs.py"

needs_fuse = pytest.mark.mount


def have(program: str) -> bool:
    return shutil.which(program) is not None


def overlay_argv(base: Path, mnt: Path | str) -> list[str]:
    """fuse-overlayfs over a one-file lower tree; ``mnt`` may be ``{}``."""
    for d in ("lower", "upper", "work"):
        (base / d).mkdir(parents=True, exist_ok=True)
    (base / "lower" / "hello.txt").write_text("hello\n")
    opts = f"lowerdir={base / 'lower'},upperdir={base / 'upper'},workdir={base / 'work'}"
    return ["fuse-overlayfs", "-f", "-o", opts, str(mnt)]


def build_image(dest: Path) -> Path:
    """The reference squashfs image (deterministic: fixed times, owners, tree)."""
    dest.mkdir(parents=True, exist_ok=True)
    tree = build_reference_tree(dest / "tree")
    image = dest / "reference.sqfs"
    subprocess.run(
        ["mksquashfs", str(tree), str(image), "-quiet", "-noappend", "-no-progress",
         "-mkfs-time", "0", "-all-time", "0", "-all-root", "-xattrs", "-processors", "1"],
        check=True,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return image


def squashfuse_argv(image: Path, mnt: Path | str) -> list[str]:
    return ["squashfuse_ll", "-f", str(image), str(mnt)]


def passthrough_argv(source: Path, mnt: Path | str) -> list[str]:
    source.mkdir(parents=True, exist_ok=True)
    return [sys.executable, str(PASSTHROUGH), str(source), str(mnt)]


def have_pyfuse3() -> bool:
    try:
        import pyfuse3  # noqa: F401
    except ImportError:
        return False
    return PASSTHROUGH.exists()


def can_mount() -> bool:
    return os.geteuid() == 0 and os.path.exists("/dev/fuse")
