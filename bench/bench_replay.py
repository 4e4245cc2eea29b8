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
   live per second of the replay), and the wall time of the whole command.

    .venv/bin/python bench/bench_replay.py [--files N] [--passes R] [--repeat K]

The replay is run K times (default 3); best and median are printed. Target: replay at
least 20,000 requests/s. The kernel's rate includes the workload's own processes (stat and
cat, one per file), so it is a floor for what the daemon can do, not a ceiling.
"""

from __future__ import annotations

import argparse
import json
import os
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


def replay(capture: Path, image: Path) -> tuple[float, float, dict[str, object]]:
    cmd = [sys.executable, "-m", "fusetrace", "replay", "--speed", "0", "--format", "json",
           str(capture), "--", "squashfuse_ll", str(image), "{}"]  # fmt: skip
    t = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, env=fusetrace_env(), check=False)
    wall = time.monotonic() - t
    if r.returncode != 0:
        raise SystemExit(f"replay exited {r.returncode}:\n{r.stderr[-2000:]}")
    summary = json.loads(r.stdout)["summary"]
    return float(summary["requests_per_second"]), wall, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
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
        rates, walls = [], []
        for _ in range(args.repeat):
            rate, wall, _summary = replay(capture, image)
            rates.append(rate)
            walls.append(wall)
        best, median = max(rates), statistics.median(rates)
        print(f"replay --speed 0: {best:,.0f} requests/s best, {median:,.0f} median "
              f"({args.repeat} runs; command wall time {min(walls):.2f} s best)")  # fmt: skip
        print(f"replay / kernel: {best / krate:.2f}x (best), {median / krate:.2f}x (median)")
        print(f"target >= {TARGET:,} requests/s: {'met' if best >= TARGET else 'NOT met'}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
