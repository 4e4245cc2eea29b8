"""How long a mount takes to appear, and an unmount to end, natively and recorded.

For each round, a daemon is started (natively: ``squashfuse_ll -f IMAGE MNT``; recorded:
``python -m fusetrace record -w CAPTURE MNT -- squashfuse_ll -f IMAGE {}``) and timed from
the start of the process until the mount is in /proc/self/mountinfo and a stat of the
mountpoint has returned (INIT answered): "appear". Then umount(2) is called and the time
until the started process has exited is "end". "CPU" is the user and system time of the
started process (the recorder: with the daemon it waited for), which a loaded machine
inflates less than wall time. Medians and ranges over the rounds.

    .venv/bin/python bench/bench_mount.py [--rounds N] [--daemon squashfuse_ll] [--compare DIR]

``--compare DIR`` also records with the fusetrace checkout in DIR (an older version, say),
the configurations taking turns round by round, so that a machine whose load changes
treats them alike.

Needs root, squashfuse_ll and mksquashfs.
"""

from __future__ import annotations

import argparse
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


def show(name: str, values: tuple[float, ...]) -> str:
    ms = sorted(v * 1000 for v in values)
    return f"{name} median {statistics.median(ms):.1f} ms (min {ms[0]:.1f}, max {ms[-1]:.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--daemon", default="squashfuse_ll")
    ap.add_argument("--compare", metavar="DIR", help="another fusetrace checkout to record with")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-mount-") as tmp:
        src = Path(tmp, "src")
        src.mkdir()
        (src / "a").write_text("a\n")
        image = Path(tmp, "img.sqfs")
        subprocess.run(["mksquashfs", str(src), str(image), "-quiet", "-noappend"], check=True)
        mnt = os.path.realpath(Path(tmp, "mnt"))
        os.mkdir(mnt)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        native = [args.daemon, "-f", str(image), mnt]
        recorded = [sys.executable, "-m", "fusetrace", "record", "-w", str(Path(tmp, "t.pcapng")),
                    mnt, "--", args.daemon, "-f", str(image), "{}"]  # fmt: skip
        configs = [("native", native, env), ("recorded", recorded, env)]
        if args.compare:
            other = dict(os.environ, PYTHONPATH=os.path.abspath(args.compare))
            configs.append((f"recorded with {args.compare}", recorded, other))
        results: dict[str, list[tuple[float, float, float]]] = {c[0]: [] for c in configs}
        for _ in range(args.rounds):
            for name, argv, config_env in configs:
                results[name].append(one_round(argv, mnt, config_env))
        for name, got in results.items():
            appear, end, cpu = zip(*got, strict=True)
            print(f"{name}: {show('appear', appear)}; {show('end', end)}; {show('CPU', cpu)}")


if __name__ == "__main__":
    main()
