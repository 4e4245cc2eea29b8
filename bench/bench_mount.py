"""How long a mount takes to appear, and an unmount to end, natively and recorded.

For each round, a daemon is started (natively: ``squashfuse_ll -f IMAGE MNT``; recorded
through the /dev/fd/N hand-off: ``python -m fusetrace record -w CAPTURE MNT --
squashfuse_ll -f IMAGE {}``; recorded through the seccomp hand-off, the daemon mounting as
natively: ``... -- squashfuse_ll -f IMAGE MNT``) and timed from the start of the process
until the mount is in /proc/self/mountinfo and a stat of the mountpoint has returned (INIT
answered): "appear". Then umount(2) is called and the time until the started process has
exited is "end". "CPU" is the user and system time of the started process (the recorder:
with the daemon it waited for), which a loaded machine inflates less than wall time.
Medians and ranges over the rounds. The interpreter's own start-up is measured too, as
the floor a recorder cannot go below: ``python -S -c pass``, ``python -c pass`` and
``python -c "import click"``.

    .venv/bin/python bench/bench_mount.py [--rounds N] [--daemon squashfuse_ll] [--compare DIR]
        [--handoff fd|seccomp|both]

``--compare DIR`` also records with the fusetrace checkout in DIR (an older version, say),
the configurations taking turns round by round, so that a machine whose load changes
treats them alike.

The checkouts are byte-compiled first (``compileall``): an installed fusetrace has its
modules compiled, while a checkout run with PYTHONDONTWRITEBYTECODE set compiles every
module at every start (some 40 ms no user pays).

Needs root, squashfuse_ll and mksquashfs.
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fusetrace.proxy import mount as mounts  # noqa: E402


def wait_mounted(mnt: str, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while mounts.find_mount(mnt) is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"no mount on {mnt} (exit {proc.poll()})")
        time.sleep(0.0005)
    os.stat(mnt)


def one_round(argv: list[str], mnt: str, env: dict[str, str]) -> tuple[float, float, float]:
    t0 = time.monotonic()
    # cwd "/": python -m puts the working directory first on sys.path
    proc = subprocess.Popen(
        argv, env=env, cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_mounted(mnt, proc, t0 + 30)
        appear = time.monotonic() - t0
        t1 = time.monotonic()
        mounts.sys_umount(mnt)
        _pid, _status, usage = os.wait4(proc.pid, 0)
        end = time.monotonic() - t1
        proc.returncode = 0
        cpu = usage.ru_utime + usage.ru_stime
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        entry = mounts.find_mount(mnt)
        if entry is not None:
            mounts.release(mnt, entry.conn)
    return appear, end, cpu


def floor(argv: list[str], rounds: int) -> tuple[float, ...]:
    """Wall times of a bare interpreter command, ``rounds`` times."""
    times = []
    for _ in range(rounds):
        t0 = time.monotonic()
        subprocess.run(argv, cwd="/", check=True)
        times.append(time.monotonic() - t0)
    return tuple(times)


def show(name: str, values: tuple[float, ...]) -> str:
    ms = sorted(v * 1000 for v in values)
    return f"{name} median {statistics.median(ms):.1f} ms (min {ms[0]:.1f}, max {ms[-1]:.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--daemon", default="squashfuse_ll")
    ap.add_argument("--compare", metavar="DIR", help="another fusetrace checkout to record with")
    ap.add_argument("--handoff", choices=["fd", "seccomp", "both"], default="both")
    args = ap.parse_args()
    checkouts = [str(ROOT)] + ([os.path.abspath(args.compare)] if args.compare else [])
    for checkout in checkouts:
        compileall.compile_dir(Path(checkout, "fusetrace"), quiet=1)
    py = sys.executable
    for name, argv in (
        ("python -S -c pass", [py, "-S", "-c", "pass"]),
        ("python -c pass", [py, "-c", "pass"]),
        ("python -c 'import click'", [py, "-c", "import click"]),
    ):
        print(f"{name}: {show('wall', floor(argv, args.rounds))}")
    with tempfile.TemporaryDirectory(prefix="bench-mount-") as tmp:
        src = Path(tmp, "src")
        src.mkdir()
        (src / "a").write_text("a\n")
        image = Path(tmp, "img.sqfs")
        subprocess.run(["mksquashfs", str(src), str(image), "-quiet", "-noappend"], check=True)
        mnt = os.path.realpath(Path(tmp, "mnt"))
        os.mkdir(mnt)
        native = [args.daemon, "-f", str(image), mnt]
        configs: list[tuple[str, list[str], dict[str, str]]] = [
            ("native", native, dict(os.environ))
        ]
        handoffs = ["fd", "seccomp"] if args.handoff == "both" else [args.handoff]
        for checkout in checkouts:
            env = dict(os.environ, PYTHONPATH=checkout)
            label = "" if checkout == str(ROOT) else f" with {checkout}"
            for handoff in handoffs:
                where = "{}" if handoff == "fd" else mnt
                recorded = [py, "-m", "fusetrace", "record", "-w", str(Path(tmp, "t.pcapng")),
                            mnt, "--", args.daemon, "-f", str(image), where]  # fmt: skip
                configs.append((f"recorded ({handoff}){label}", recorded, env))
        results: dict[str, list[tuple[float, float, float]]] = {c[0]: [] for c in configs}
        for _ in range(args.rounds):
            for name, argv, config_env in configs:
                results[name].append(one_round(argv, mnt, config_env))
        for name, got in results.items():
            appear, end, cpu = zip(*got, strict=True)
            print(f"{name}: {show('appear', appear)}; {show('end', end)}; {show('CPU', cpu)}")


if __name__ == "__main__":
    main()
