"""The reference capture library under ``captures/``: the tree behind its read-only images, and
the summary of a capture that golden tests pin.

:func:`build_reference_tree` writes the small, fixed tree that read-only daemons (squashfuse)
serve in the reference captures: the same names, sizes and contents as the tree the writable
workload makes, plus a large directory, so every read-only step has something to work on.

:func:`summarize` reduces a capture to what a decoder change must not alter unnoticed: the
request count per opcode, the reply errors per opcode, and the workload steps it contains.
"""

from __future__ import annotations

import os
from pathlib import Path

from fusetrace.conform.report import summarize
from fusetrace.conform.steps import (
    FIXED_MTIME_NS,
    LARGE_DIR_ENTRIES,
    XATTR_NAME,
    XATTR_VALUE,
    data_pattern,
)

__all__ = ["build_reference_tree", "summarize"]


def build_reference_tree(dest: str | os.PathLike[str]) -> Path:
    """Write the reference tree into ``dest`` (created); every time stamp is fixed."""
    root = Path(dest)
    work = root / "reference"
    large = work / "large"
    large.mkdir(parents=True)
    (work / "data.bin").write_bytes(data_pattern())
    (work / "notes.txt").write_text("fusetrace reference tree\n")
    os.symlink("data.bin", work / "link")
    for i in range(LARGE_DIR_ENTRIES):
        (large / f"f{i:04d}").write_bytes(b"")
    try:
        os.setxattr(work / "data.bin", XATTR_NAME, XATTR_VALUE)
    except OSError:
        pass  # a backing filesystem without user xattrs: the image simply has none
    stamp = (FIXED_MTIME_NS, FIXED_MTIME_NS)
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in dirnames + filenames:
            os.utime(Path(dirpath) / name, ns=stamp, follow_symlinks=False)
    os.utime(root, ns=stamp)
    return root
