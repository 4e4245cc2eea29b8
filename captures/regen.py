#!/usr/bin/env python3
"""Regenerate the reference capture library: run `fusetrace conform -w` against each daemon.

Usage (as root, from the repository root):

    .venv/bin/python captures/regen.py [NAME ...]

NAME is one of the captures below (default: all). For each it writes captures/NAME.pcapng
(the capture), NAME.summary.json (the decoded summary the golden test pins), NAME.junit.xml
and NAME.txt (the conformance report as produced by the run). Run the tests afterwards:
a changed summary is a behaviour change to review (new kernel, new daemon version).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from fusetrace.conform.library import build_reference_tree  # noqa: E402
from fusetrace.conform.session import check_capture  # noqa: E402

#: frames are cut at this length: file data is cut, but whole READDIR(PLUS) replies (up to
#: 32 KiB here) are kept, so the lookup counts they carry can still be checked
SNAPLEN = "33000"


def squashfuse(tmp: Path, mnt: Path) -> list[str]:
    tree = build_reference_tree(tmp / "tree")
    image = tmp / "reference.sqfs"
    subprocess.run(
        ["mksquashfs", str(tree), str(image), "-quiet", "-noappend", "-no-progress",
         "-mkfs-time", "0", "-all-time", "0", "-all-root", "-xattrs", "-processors", "1"],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return ["squashfuse_ll", "-f", str(image), str(mnt)]


def overlay(tmp: Path, mnt: Path) -> list[str]:
    for d in ("lower", "upper", "work"):
        (tmp / d).mkdir(parents=True)
    (tmp / "lower" / "hello.txt").write_text("hello\n")
    opts = f"lowerdir={tmp / 'lower'},upperdir={tmp / 'upper'},workdir={tmp / 'work'}"
    return ["fuse-overlayfs", "-f", "-o", opts, str(mnt)]


def passthrough(tmp: Path, mnt: Path) -> list[str]:
    (tmp / "src").mkdir()
    script = ROOT / "tests" / "support" / "passthroughfs.py"
    return [sys.executable, str(script), str(tmp / "src"), str(mnt)]


CAPTURES = {
    # read-only: the full workload (1,000-entry directory in the image)
    "squashfuse_ll": (["--snaplen", SNAPLEN], squashfuse),
    # writable: a 100-entry large directory keeps the capture well under 1 MB
    "fuse-overlayfs": (["--snaplen", SNAPLEN, "--large-dir", "100"], overlay),
    "pyfuse3-passthrough": (["--snaplen", SNAPLEN, "--large-dir", "50"], passthrough),
}


def regen(name: str) -> None:
    options, make = CAPTURES[name]
    with tempfile.TemporaryDirectory(prefix=f"fusetrace-regen-{name}.") as t:
        tmp = Path(t)
        mnt = tmp / "mnt"
        mnt.mkdir()
        daemon = make(tmp, mnt)
        capture = HERE / f"{name}.pcapng"
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        argv = [sys.executable, "-m", "fusetrace", "conform", *options,
                "-w", str(capture), "--format", "junit", "--output",
                str(HERE / f"{name}.junit.xml"),
                str(mnt), "--", *daemon]  # fmt: skip
        with open(HERE / f"{name}.txt", "w") as out:
            proc = subprocess.run(argv, env=env, stdout=out, cwd=ROOT)
        print(f"{name}: conform exit status {proc.returncode}", file=sys.stderr)
        # the paths of the scratch directory vary: make the kept reports stable
        for suffix in (".txt", ".junit.xml"):
            path = HERE / f"{name}{suffix}"
            path.write_text(path.read_text().replace(str(tmp), "$TMP"))
        os.chmod(capture, 0o644)
    analysis, findings, kernel = check_capture(str(capture), [])
    summary = analysis.summary()
    summary["error_findings"] = sorted(f.rule for f in findings if f.severity.label == "error")
    (HERE / f"{name}.summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{name}: {capture.stat().st_size} bytes, kernel {kernel}", file=sys.stderr)


def main() -> None:
    names = sys.argv[1:] or list(CAPTURES)
    for name in names:
        if name not in CAPTURES:
            sys.exit(f"unknown capture {name}; known: {', '.join(CAPTURES)}")
        program = "squashfuse_ll" if name == "squashfuse_ll" else "fuse-overlayfs"
        if name != "pyfuse3-passthrough" and shutil.which(program) is None:
            sys.exit(f"{program} is not installed")
        regen(name)


if __name__ == "__main__":
    main()
