"""Where the proxies' CPU goes on large reads, sampled side by side.

Every configuration named is mounted at once over fuse-overlayfs (as in bench_record.py's
workload r), each with a file of M MiB whose daemon-side copy is in the page cache. While R
rounds of reads go round the configurations in pieces (bench_record.py --interleave),
``perf record -e cpu-clock`` samples every proxy process (fusetrace, the relay) at once, so
that each is sampled under the same conditions: on a virtual machine the time a copy takes
swings several-fold within seconds, which separate profiles catch unevenly. No hardware
counters are needed.

Prints, per configuration and thread, the samples (CPU time at the sampling rate) and the
symbols most of them fall in, side by side; a thread that reads /dev/fuse (the requests'
loop) or writes it (the replies') says so. ``--against CHECKOUT`` adds ``recorded null`` and
``recorded`` of another checkout of fusetrace (``recorded null @`` and ``recorded @``), to
compare two builds on the same reads.

    .venv/bin/python bench/profile_record.py [--only NAME,...] [--against DIR] [--rounds R]
                                             [--mib M] [--piece P] [--symbols N]

Needs root (it mounts), fuse-overlayfs and perf.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_record as bench


def against(checkout: Path) -> None:
    """``recorded null @`` and ``recorded @``: fusetrace from ``checkout``."""
    env = {"PYTHONPATH": str(checkout.resolve())}
    bench.CONFIGS["recorded null @"] = bench.recorded_null_with(env)
    bench.CONFIGS["recorded @"] = bench.recorded_with(env=env)


def threads_of(data: Path, pids: dict[str, int]) -> dict[str, dict[int, collections.Counter[str]]]:
    """Per configuration, per thread id: how many samples fell in each symbol."""
    out = subprocess.run(
        ["perf", "script", "-i", str(data), "-F", "pid,tid,ip,sym", "-G"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = {pid: name for name, pid in pids.items()}
    found: dict[str, dict[int, collections.Counter[str]]] = {name: {} for name in pids}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2 or "/" not in parts[0]:
            continue
        pid, tid = (int(x) for x in parts[0].split("/"))
        name = names.get(pid)
        if name is None:
            continue
        sym = parts[2] if len(parts) > 2 else "[unknown]"
        found[name].setdefault(tid, collections.Counter())[sym] += 1
    return found


def role(symbols: collections.Counter[str]) -> str:
    reads, writes = symbols["fuse_dev_do_read"], symbols["fuse_dev_do_write"]
    if reads or writes:
        return "reads /dev/fuse" if reads > writes else "writes /dev/fuse"
    return ""


def report(found: dict[str, dict[int, collections.Counter[str]]], top: int, rate: int) -> None:
    columns: list[tuple[str, collections.Counter[str]]] = []
    print(f"samples at {rate} Hz per configuration and thread (its whole process first)")
    for name, threads in found.items():
        whole: collections.Counter[str] = collections.Counter()
        for symbols in threads.values():
            whole.update(symbols)
        print(f"{name:<20} {sum(whole.values()):>8}  (all threads)")
        for tid, symbols in sorted(threads.items()):
            n = sum(symbols.values())
            if n * 100 >= sum(whole.values()):  # threads with 1% or more of the process
                print(f"  thread {tid:<11} {n:>8}  {role(symbols)}")
                columns.append((str(tid), symbols))
    every: collections.Counter[str] = collections.Counter()
    for _label, symbols in columns:
        every.update(symbols)
    print(f"\nthe {top} symbols with most samples, per thread (by its id, as above)")
    width = max(len(label) for label, _ in columns) if columns else 8
    print(f"{'symbol':<34}" + "".join(f" {label:>{width}}" for label, _ in columns))
    for sym, _n in every.most_common(top):
        print(f"{sym[:34]:<34}" + "".join(f" {symbols[sym]:>{width}}" for _, symbols in columns))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="relay,recorded null", help="configurations (names "
                    "of bench_record.py, and those --against adds)")  # fmt: skip
    ap.add_argument("--against", type=Path, metavar="DIR", help="another checkout of fusetrace")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--piece", type=int, default=64, help="MiB read from a file at a turn")
    ap.add_argument("--symbols", type=int, default=12)
    ap.add_argument("--rate", type=int, default=4000, help="samples per second")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("profile_record: run as root (it mounts)")
    if shutil.which("perf") is None:
        sys.exit("profile_record: perf not found (Debian: linux-perf)")
    if args.against is not None:
        against(args.against)
    names = args.only.split(",")
    unknown = [n for n in names if n not in bench.CONFIGS]
    if unknown:
        sys.exit(f"profile_record: no configuration {', '.join(unknown)}")
    bench.DROP[0] = "fuse"
    base = Path(tempfile.mkdtemp(prefix="profile-record-"))
    # fusetrace runs with `python -m`, which looks in the working directory first
    os.chdir(base)
    data = base / "perf.data"
    try:
        with ExitStack() as stack:
            mounts, pids = bench.mount_all(stack, base, "p", names)
            for mnt in mounts.values():
                bench.dd_write(mnt / "big", args.mib)
            perf = subprocess.Popen(
                ["perf", "record", "-q", "-e", "cpu-clock", "-F", str(args.rate), "-g",
                 "-p", ",".join(map(str, pids.values())), "-o", str(data)],
            )  # fmt: skip
            try:
                time.sleep(0.5)  # perf attached
                for r in range(args.rounds):
                    rates = bench.interleaved_reads(mounts, args.mib, args.piece, r)
                    print(
                        f"round {r + 1}: " + ", ".join(f"{n} {v:.0f}" for n, v in rates.items())
                        + " (MiB/s)",
                        file=sys.stderr,
                    )  # fmt: skip
            finally:
                perf.send_signal(signal.SIGINT)
                perf.wait()
            for mnt in mounts.values():
                (mnt / "big").unlink()
        print(
            f"\n{args.rounds} rounds of {args.mib} MiB reads in pieces of {args.piece} MiB; "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        report(threads_of(data, pids), args.symbols, args.rate)
    finally:
        os.chdir("/")
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
