"""Source trees and images for mount tests: small, varied, and checkable."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
from pathlib import Path

#: size of the one large file in :func:`make_tree`
BIG = 3 * 1024 * 1024 + 12345


def make_tree(root: Path, *, big: int = BIG) -> Path:
    """A tree with small files, one of a few MB, a symlink, an xattr and subdirectories."""
    rng = random.Random(4)
    root.mkdir(parents=True, exist_ok=True)
    (root / "hello.txt").write_text("hello, fuse\n")
    (root / "empty").write_bytes(b"")
    (root / "big.bin").write_bytes(rng.randbytes(big))
    deep = root / "sub" / "deeper" / "deepest"
    deep.mkdir(parents=True, exist_ok=True)
    for i in range(20):
        (root / "sub" / f"file{i:02d}.txt").write_text(f"file {i}\n" * (i + 1))
    (deep / "leaf.dat").write_bytes(rng.randbytes(70_000))
    os.symlink("hello.txt", root / "link")
    os.symlink("sub/deeper", root / "dirlink")
    os.setxattr(root / "hello.txt", "user.colour", b"blue")
    os.setxattr(root / "sub", "user.kind", b"directory")
    return root


def make_squashfs(src: Path, image: Path) -> Path:
    subprocess.run(
        ["mksquashfs", str(src), str(image), "-quiet", "-noappend", "-xattrs", "-no-progress"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return image


def digest_tree(root: Path) -> dict[str, str]:
    """relative path → a description (type, content hash, link target, xattrs) of each entry."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "link " + os.readlink(p)
                continue
            xattrs = sorted(
                (a, os.getxattr(p, a)) for a in os.listxattr(p) if a.startswith("user.")
            )
            if p.is_dir():
                out[rel] = f"dir {xattrs}"
            else:
                h = hashlib.sha256(p.read_bytes()).hexdigest()
                out[rel] = f"file {p.stat().st_size} {h} {xattrs}"
    return out
