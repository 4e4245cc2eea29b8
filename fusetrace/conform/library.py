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
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fusetrace.conform.workload import (
    FIXED_MTIME_NS,
    LARGE_DIR_ENTRIES,
    XATTR_NAME,
    XATTR_VALUE,
    data_pattern,
    errno_name,
)


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


def summarize(
    requests: Iterable[tuple[str, int | None]], steps: Iterable[str] = ()
) -> dict[str, Any]:
    """Summary of a capture from (opcode name, reply errno or None) per request.

    ``errno`` is positive (``2`` for ENOENT), ``0`` for success, ``None`` when the request got
    no reply (FORGET, or the capture ended first).
    """
    counts: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    unanswered: Counter[str] = Counter()
    for name, err in requests:
        counts[name] += 1
        if err is None:
            unanswered[name] += 1
        elif err:
            errors[f"{name} {errno_name(err)}"] += 1
    return {
        "requests": sum(counts.values()),
        "opcodes": dict(sorted(counts.items())),
        "errors": dict(sorted(errors.items())),
        "unanswered": dict(sorted(unanswered.items())),
        "steps": list(steps),
    }
