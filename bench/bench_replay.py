"""Benchmark ``fusetrace replay --speed 0`` against squashfuse_ll, and compare it with the
rate at which the kernel drove the same daemon in the recording.

One run:

1. build a squashfs image of N small files (default 2,000) in a few directories;
2. ``fusetrace record`` squashfuse_ll on it while a metadata + read workload runs: ``stat``
   of every file (LOOKUP, GETATTR), then ``cat`` of every file (OPEN, READ, FLUSH, RELEASE),
   R passes (default 3), with the kernel's caches dropped between passes so that every pass
   reaches the daemon;
3. the kernel's rate: requests answered per second of the recording, counted from the
   capture, while the kernel was busy (pauses longer than 10 ms between frames, the cache
   drops and the start-up of each command, left out), and over the whole recording;
4. ``fusetrace replay --speed 0 --format json`` of that capture against a fresh
   squashfuse_ll on the same image: its requests/s, as replay reports it (requests answered
   live per second of the replay), the wall time of the whole command, and the CPU time
   (user + system) per 1,000 requests sent, split between fusetrace (the replay process and
   its tracker child, start-up included) and the daemon (counted by the shell that runs
   it, ``times``).

    .venv/bin/python bench/bench_replay.py [--files N] [--passes R] [--repeat K]
                                           [--against CHECKOUT]

The replay is run K times (default 3); best and median are printed. With ``--against``, the
replay of another checkout of fusetrace (say, main before a change) takes turns with this
one on the same capture, and both are printed: on a loaded machine only such paired figures,
and the CPU time, compare. Target: replay at least 20,000 requests/s. The kernel's rate
includes the workload's own processes (stat and cat, one per file), so it is a floor for
what the daemon can do, not a ceiling.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fusetrace.capture import CaptureReader  # noqa: E402
from fusetrace.frame import Direction  # noqa: E402
from tests.support.mount import fusetrace_env, recording  # noqa: E402

TARGET = 20_000


def make_image(base: Path, files: int) -> Path:
    src = base / "tree"
    for i in range(files):
        d = src / f"d{i % 20:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}").write_bytes(bytes((i + j) & 0xFF for j in range(512 + i % 3000)))
    image = base / "bench.sqfs"
    subprocess.run(["mksquashfs", str(src), str(image), "-noappend", "-quiet", "-no-progress"],
                   check=True)  # fmt: skip
    return image


def drop_caches() -> None:
    subprocess.run(["sync"], check=False)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def record(image: Path, base: Path, passes: int) -> Path:
    mnt = base / "mnt"
    mnt.mkdir()
    capture = base / "bench.pcapng"
    with recording(["squashfuse_ll", "-f", str(image), str(mnt)], mnt, capture,
                   check_clean=False):  # fmt: skip
        files = sorted(str(p) for p in mnt.rglob("f*"))
        for _ in range(passes):
            drop_caches()
            subprocess.run(["stat", *files], check=True, capture_output=True)
            drop_caches()
            subprocess.run(["cat", *files], check=True, stdout=subprocess.DEVNULL)
    return capture


GAP_NS = 10_000_000  # a pause longer than this between frames is the workload's, not FUSE's


def kernel_rate(capture: Path) -> tuple[int, float, float, dict[str, int]]:
    """(requests answered, their rate over the whole recording, their rate while the kernel
    was busy, count per opcode). "Busy" leaves out the pauses longer than GAP_NS between
    two frames (cache drops, process start-up between the workload's commands)."""
    from fusetrace.protocol.decode import decode_request

    pending: dict[int, str] = {}
    answered = 0
    first = last = prev = None
    busy = 0
    ops: dict[str, int] = {}
    with open(capture, "rb") as f:
        for rec in CaptureReader(f):
            if rec.direction is Direction.INBOUND:
                d = decode_request(rec.data)
                if d.name in ("INIT", "FORGET", "BATCH_FORGET", "INTERRUPT"):
                    continue
                pending[d.unique] = d.name
                first = rec.t_ns if first is None else first
            else:
                unique = int.from_bytes(rec.data[8:16], sys.byteorder)
                name = pending.pop(unique, None)
                if name is not None:
                    answered += 1
                    ops[name] = ops.get(name, 0) + 1
                    last = rec.t_ns
            if first is not None and prev is not None and rec.t_ns - prev <= GAP_NS:
                busy += rec.t_ns - prev
            prev = rec.t_ns
    seconds = ((last or 0) - (first or 0)) / 1e9
    overall = answered / seconds if seconds > 0 else 0.0
    return answered, overall, answered / (busy / 1e9) if busy else 0.0, ops


#: the daemon in the foreground under a shell that then tells its CPU time (``times``: the
#: shell's own, then its children's)
DAEMON = 'squashfuse_ll -f "$1" "$2"; times >&2'
TIMES = re.compile(r"^(\d+)m([\d.]+)s (\d+)m([\d.]+)s$", re.M)


class Run:
    """One replay: its rate, wall time, and CPU seconds (fusetrace's and the daemon's)."""

    def __init__(self, rate: float, wall: float, sent: int, cpu: float, daemon: float) -> None:
        self.rate, self.wall, self.sent = rate, wall, sent
        self.fusetrace, self.daemon = cpu - daemon, daemon


def replay(capture: Path, image: Path, root: Path = ROOT) -> Run:
    cmd = [sys.executable, "-m", "fusetrace", "replay", "--speed", "0", "--format", "json",
           str(capture), "--", "sh", "-c", DAEMON, "sh", str(image), "{}"]  # fmt: skip
    env = fusetrace_env()
    env["PYTHONPATH"] = str(root)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.monotonic()
    # run from the checkout: ``python -m`` looks in the working directory first
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root, check=False)
    wall = time.monotonic() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"replay exited {r.returncode}:\n{r.stderr[-2000:]}")
    summary = json.loads(r.stdout)["summary"]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    times = TIMES.findall(r.stderr)
    daemon = 0.0
    if len(times) >= 2:  # the second line: the daemon's user and system time
        um, us, sm, ss = times[-1]
        daemon = 60 * int(um) + float(us) + 60 * int(sm) + float(ss)
    return Run(
        float(summary["requests_per_second"]), wall, int(summary["requests_sent"]), cpu, daemon
    )


def report(label: str, runs: list[Run], krate: float) -> None:
    rates = [r.rate for r in runs]
    best, median = max(rates), statistics.median(rates)
    per_k = [1000 * (r.fusetrace + r.daemon) / r.sent for r in runs]
    ours = min(1000 * r.fusetrace / r.sent for r in runs)
    theirs = min(1000 * r.daemon / r.sent for r in runs)
    share = ours / (ours + theirs) if ours + theirs else 0.0
    wall = min(r.wall for r in runs)
    print(f"{label}replay --speed 0: {best:,.0f} requests/s best, {median:,.0f} median "
          f"({len(runs)} runs; command wall time {wall:.2f} s best)")  # fmt: skip
    print(f"{label}  CPU s per 1,000 requests: {min(per_k):.4f} (best run): fusetrace "
          f"{ours:.4f}, daemon {theirs:.4f} (fusetrace {share:.0%} of the CPU)")  # fmt: skip
    print(f"{label}  replay / kernel: {best / krate:.2f}x (best), {median / krate:.2f}x (median)")
    print(f"{label}  target >= {TARGET:,} requests/s: {'met' if best >= TARGET else 'NOT met'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--against", type=Path, help="another fusetrace checkout, replayed in turn")
    args = ap.parse_args()
    if os.geteuid() != 0 or shutil.which("squashfuse_ll") is None:
        raise SystemExit("needs root and squashfuse_ll (recording mounts)")
    base = Path(tempfile.mkdtemp(prefix="fusetrace-bench-replay-"))
    try:
        image = make_image(base, args.files)
        capture = record(image, base, args.passes)
        answered, overall, krate, ops = kernel_rate(capture)
        mix = ", ".join(f"{k} {v}" for k, v in sorted(ops.items(), key=lambda kv: -kv[1]))
        print(f"capture: {capture.stat().st_size / 1e6:.1f} MB, {answered} requests ({mix})")
        print(f"kernel-driven rate in the recording: {krate:,.0f} requests/s while busy "
              f"(pauses > {GAP_NS / 1e6:g} ms left out); {overall:,.0f} over the whole "
              "recording")  # fmt: skip
        ours: list[Run] = []
        theirs: list[Run] = []
        for _ in range(args.repeat):
            ours.append(replay(capture, image))
            if args.against is not None:
                theirs.append(replay(capture, image, args.against.resolve()))
        if args.against is not None:
            report(f"[{args.against}] ", theirs, krate)
            report(f"[{ROOT}] ", ours, krate)
        else:
            report("", ours, krate)
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
