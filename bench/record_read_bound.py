"""Where a recorded 1 GiB read through fuse-overlayfs spends its time.

Records fuse-overlayfs (to a capture file, or to /dev/null), writes a 1 GiB file through
the mount, drops its cached pages (and its upper copy's), reads it with dd bs=1M and
samples, every millisecond, the state of the recorder's capture thread and of its two
forwarding threads (R running, S sleeping, D waiting for the disk), with their CPU time.
A capture thread mostly in D waits for its own writes; mostly in R it is short of CPU.

    .venv/bin/python bench/record_read_bound.py [file|/dev/null] [--mib M]

Threads are told apart by their order of creation (main, capture, kernel → daemon,
daemon → kernel), as fusetrace starts them.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_record import DROP, drop_caches, overlay_argv  # noqa: E402

from tests.support.mount import recording  # noqa: E402


def cpu(pid: int, tid: int) -> float:
    return int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0]) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("output", nargs="?", default="file", choices=["file", "/dev/null"])
    ap.add_argument("--mib", type=int, default=1024)
    args = ap.parse_args()
    DROP[0] = "file"
    base = Path(tempfile.mkdtemp(prefix="read-bound-"))
    try:
        mnt = base / "mnt"
        mnt.mkdir()
        capture = str(base / "c.pcapng") if args.output == "file" else "/dev/null"
        with recording(overlay_argv(base, "{}"), mnt, capture, check_clean=False) as rec:
            big = mnt / "big"
            subprocess.run(
                ["dd", "if=/dev/zero", f"of={big}", "bs=1M", f"count={args.mib}",
                 "conv=fsync", "status=none"],
                check=True,
            )  # fmt: skip
            drop_caches(big)
            pid = rec.proc.pid
            tids = sorted(int(t.name) for t in Path(f"/proc/{pid}/task").iterdir())
            names = dict(zip(tids[1:4], ("capture", "kernel>daemon", "daemon>kernel"), strict=True))
            states: dict[str, collections.Counter[str]] = {
                n: collections.Counter() for n in names.values()
            }
            before = {t: cpu(pid, t) for t in names}
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    for t, n in names.items():
                        try:
                            stat = Path(f"/proc/{pid}/task/{t}/stat").read_text()
                        except OSError:
                            continue
                        states[n][stat.rsplit(")", 1)[1].split()[0]] += 1
                    time.sleep(0.001)

            sampler = threading.Thread(target=sample)
            sampler.start()
            t0 = time.perf_counter()
            subprocess.run(["dd", f"if={big}", "of=/dev/null", "bs=1M", "status=none"], check=True)
            wall = time.perf_counter() - t0
            stop.set()
            sampler.join()
            print(
                f"{args.output}: {args.mib} MiB read at {args.mib / wall:.0f} MiB/s "
                f"({wall:.2f} s); load average {os.getloadavg()[0]:.1f}"
            )
            for t, n in names.items():
                seen = states[n]
                total = sum(seen.values()) or 1
                shares = ", ".join(f"{k} {v / total:.0%}" for k, v in seen.most_common())
                print(f"  {n:<14} CPU {cpu(pid, t) - before[t]:.2f} s; {shares}")
            big.unlink()
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
