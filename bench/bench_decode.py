"""Throughput and memory of `fusetrace decode` on a synthetic capture.

Builds a capture of N frames (default 1,000,000) with a realistic opcode mix (LOOKUP, GETATTR,
READ, WRITE, READDIRPLUS, OPEN, RELEASE, FLUSH, FORGET, BATCH_FORGET, STATFS, GETXATTR ...),
made with the protocol encoders and the pcapng CaptureWriter, then times

* ``fusetrace decode FILE``                  (summary lines)
* ``fusetrace decode FILE --format jsonl``
* ``fusetrace decode FILE --stats``
* ``tshark -r FILE -T fields -e frame.len``  (reference: reading the same file)

each with output to /dev/null, and reports frames/s and peak RSS (GNU time -v or
getrusage of the child). The checkout's modules are byte-compiled first, as an installed
copy's are.

    .venv/bin/python bench/bench_decode.py [--frames N] [--keep FILE] [--data-size BYTES]
"""

from __future__ import annotations

import argparse
import compileall
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fusetrace.capture.pcapng import CaptureWriter
from fusetrace.frame import Direction
from fusetrace.protocol.abi import S_IFDIR, S_IFREG, Opcode
from fusetrace.protocol.encode import encode_reply, encode_request, with_unique

O = Opcode  # noqa: E741 - short name for the template table
ROOT = Path(__file__).resolve().parent.parent


def _templates(data_size: int) -> list[tuple[int, bytes, bytes | None]]:
    """(weight, request, reply or None) templates; uniques are patched in later."""
    attr = {"ino": 7, "size": 12345, "mode": S_IFREG | 0o644, "nlink": 1, "blksize": 4096}
    entry = {"nodeid": 7, "generation": 1, "entry_valid": 1, "attr_valid": 1, "attr": attr}
    dir_entries = [
        {**entry, "nodeid": 10 + i, "ino": 10 + i, "off": i + 1, "type": 8, "name": f"file{i}.txt"}
        for i in range(12)
    ]
    data = bytes(range(256)) * (data_size // 256 + 1)
    data = data[:data_size]
    enoent = encode_reply(O.LOOKUP, unique=0, error=-2)
    t: list[tuple[int, bytes, bytes | None]] = [
        (12, encode_request(O.LOOKUP, {"name": "file3.txt"}, unique=0, nodeid=1, uid=1000,
                            gid=1000, pid=4242), encode_reply(O.LOOKUP, entry, unique=0)),
        (3, encode_request(O.LOOKUP, {"name": "missing"}, unique=0, nodeid=1), enoent),
        (15, encode_request(O.GETATTR, {}, unique=0, nodeid=7),
         encode_reply(O.GETATTR, {"attr_valid": 1, "attr": attr}, unique=0)),
        (18, encode_request(O.READ, {"fh": 3, "offset": 8192, "size": data_size}, unique=0,
                            nodeid=7), encode_reply(O.READ, {"data": data}, unique=0)),
        (10, encode_request(O.WRITE, {"fh": 3, "offset": 4096, "data": data}, unique=0,
                            nodeid=7), encode_reply(O.WRITE, {"size": data_size}, unique=0)),
        (4, encode_request(O.READDIRPLUS, {"fh": 5, "size": 4096}, unique=0, nodeid=1),
         encode_reply(O.READDIRPLUS, {"entries": dir_entries}, unique=0)),
        (7, encode_request(O.OPEN, {"flags": 0o100000}, unique=0, nodeid=7),
         encode_reply(O.OPEN, {"fh": 3, "open_flags": 2}, unique=0)),
        (7, encode_request(O.RELEASE, {"fh": 3, "flags": 0o100000}, unique=0, nodeid=7),
         encode_reply(O.RELEASE, unique=0)),
        (7, encode_request(O.FLUSH, {"fh": 3, "lock_owner": 99}, unique=0, nodeid=7),
         encode_reply(O.FLUSH, unique=0)),
        (1, encode_request(O.OPENDIR, {"flags": 0o200000}, unique=0, nodeid=1),
         encode_reply(O.OPENDIR, {"fh": 5}, unique=0)),
        (1, encode_request(O.RELEASEDIR, {"fh": 5}, unique=0, nodeid=1),
         encode_reply(O.RELEASEDIR, unique=0)),
        (3, encode_request(O.FORGET, {"nlookup": 1}, unique=0, nodeid=7), None),
        (1, encode_request(O.BATCH_FORGET, {"forgets": [{"nodeid": 10 + i, "nlookup": 1}
                                                        for i in range(8)]}, unique=0), None),
        (2, encode_request(O.GETXATTR, {"name": "security.capability", "size": 0}, unique=0,
                           nodeid=7), encode_reply(O.GETXATTR, unique=0, error=-61)),
        (1, encode_request(O.STATFS, {}, unique=0, nodeid=1),
         encode_reply(O.STATFS, {"blocks": 1000, "bsize": 4096}, unique=0)),
        (1, encode_request(O.MKDIR, {"mode": S_IFDIR | 0o755, "umask": 0o22, "name": "newdir"},
                           unique=0, nodeid=1),
         encode_reply(O.MKDIR, {**entry, "nodeid": 99, "attr": {**attr, "mode": S_IFDIR | 0o755}},
                      unique=0)),
    ]  # fmt: skip
    return t


def build_capture(path: Path, frames: int, data_size: int = 512, seed: int = 1) -> int:
    """Write a capture of about ``frames`` frames (INIT pair first); returns the count."""
    rnd = random.Random(seed)
    templates = _templates(data_size)
    weights = [w for w, _, _ in templates]
    init = encode_request(O.INIT, {"major": 7, "minor": 45, "max_readahead": 131072,
                                   "flags": 0x73FFFFFB, "flags2": 0x6FF}, unique=2)  # fmt: skip
    init_reply = encode_reply(O.INIT, {"major": 7, "minor": 45, "max_readahead": 131072,
                                       "flags": 0x4000F1FB, "max_background": 12,
                                       "congestion_threshold": 9, "max_write": 131072,
                                       "time_gran": 1, "max_pages": 32}, unique=2)  # fmt: skip
    t = 1_700_000_000_000_000_000
    written = 0
    with open(path, "wb", buffering=1 << 20) as f:
        w = CaptureWriter(f, {"daemon": ["synthetic"], "mountpoint": "/mnt"})
        w.write(Direction.INBOUND, t, init)
        w.write(Direction.OUTBOUND, t + 20_000, init_reply)
        written = 2
        t += 20_000
        unique = 4
        pending: list[tuple[int, bytes]] = []
        while written < frames:
            _, req, rep = rnd.choices(templates, weights)[0]
            t += rnd.randrange(2_000, 20_000)
            w.write(Direction.INBOUND, t, with_unique(req, unique))
            written += 1
            if rep is not None:
                pending.append((unique, rep))
            unique += 2
            # answer most requests at once, keep a few outstanding (concurrency)
            while pending and (len(pending) > 3 or rnd.random() < 0.8) and written < frames:
                u, r = pending.pop(0)
                t += rnd.randrange(5_000, 80_000)
                w.write(Direction.OUTBOUND, t, with_unique(r, u))
                written += 1
    return written


def _records(path: Path) -> Any:
    from fusetrace.capture.pcapng import CaptureReader

    with path.open("rb") as f:
        yield from CaptureReader(f)


def _run(cmd: list[str], frames: int) -> tuple[float, float, int, float]:
    """Run ``cmd`` with stdout to /dev/null: (seconds, frames/s, peak RSS KiB, CPU seconds).

    CPU seconds (user + system of the child) say more than wall time on a busy machine.
    """
    gnu_time = shutil.which("time") or "/usr/bin/time"
    use_time = os.path.exists(gnu_time)
    argv = [gnu_time, "-v", *cmd] if use_time else cmd
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    rss = 0
    cpu = 0.0
    if use_time:
        for line in proc.stderr.splitlines():
            if "Maximum resident set size" in line:
                rss = int(line.rsplit(":", 1)[1])
            elif "User time (seconds)" in line or "System time (seconds)" in line:
                cpu += float(line.rsplit(":", 1)[1])
    if not rss:
        rss = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before)
    if proc.returncode not in (0,):
        print(f"  ! {' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-300:]}")
    return elapsed, frames / elapsed, rss, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--data-size", type=int, default=512, help="READ/WRITE payload bytes")
    ap.add_argument("--keep", type=Path, help="write the capture here and keep it")
    ap.add_argument("--reuse", type=Path, help="time an existing capture instead of building")
    ap.add_argument("--skip", default="", help="runs to skip, e.g. text,jsonl,stats,tshark")
    args = ap.parse_args()
    tmp = None
    if args.keep:
        path = args.keep
    else:
        tmp = tempfile.TemporaryDirectory(prefix="fusetrace-bench-")
        path = Path(tmp.name) / "synthetic.pcapng"
    try:
        t = time.perf_counter()
        if args.reuse:
            path = args.reuse
            n = sum(1 for _ in _records(path))
        else:
            n = build_capture(path, args.frames, args.data_size)
        size = path.stat().st_size
        print(f"capture: {n} frames, {size / 1e6:.1f} MB, built in {time.perf_counter() - t:.1f}s")
        # the checkout this script belongs to, not whichever fusetrace is installed
        os.environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")])
        )
        # byte-compiled, as installed: a checkout run with PYTHONDONTWRITEBYTECODE set
        # compiles every module at every start
        compileall.compile_dir(ROOT / "fusetrace", quiet=1)
        exe = [sys.executable, "-m", "fusetrace"]
        runs = {
            "text": [*exe, "decode", str(path)],
            "jsonl": [*exe, "decode", str(path), "--format", "jsonl"],
            "stats": [*exe, "decode", str(path), "--stats"],
            "tshark": ["tshark", "-r", str(path), "-T", "fields", "-e", "frame.len"],
        }
        skip = set(filter(None, args.skip.split(",")))
        print(f"{'run':8} {'seconds':>8} {'frames/s':>10} {'CPU s':>7} {'frames/CPU s':>13} "
              f"{'peak RSS':>10}")  # fmt: skip
        for name, cmd in runs.items():
            if name in skip or (name == "tshark" and not shutil.which("tshark")):
                continue
            secs, fps, rss, cpu = _run(cmd, n)
            per_cpu = f"{n / cpu:13,.0f}" if cpu else f"{'-':>13}"
            print(f"{name:8} {secs:8.2f} {fps:10,.0f} {cpu:7.2f} {per_cpu} {rss / 1024:8.1f}MB")
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
