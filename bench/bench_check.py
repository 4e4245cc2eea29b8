"""Benchmark ``fusetrace check`` on a synthetic, clean 1,000,000-frame capture.

The capture mimics a busy session: LOOKUP, GETATTR, OPEN, READs, WRITE, FLUSH, RELEASE,
directory listings and FORGETs, with node ids looked up and forgotten in a rolling window,
so the tracker's open state stays small while the capture is long. The check runs as a
separate process (``python -m fusetrace check``); its wall time and peak RSS are reported.
The checkout's modules are byte-compiled first, as an installed copy's are.

    .venv/bin/python bench/bench_check.py [--frames N] [--keep FILE] [--reuse FILE]

Targets: at least 50,000 frames/s, peak memory below 200 MB.
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fusetrace.capture.pcapng import CaptureWriter  # noqa: E402
from fusetrace.frame import Direction  # noqa: E402
from fusetrace.protocol.abi import S_IFREG, InitFlag, Opcode  # noqa: E402
from fusetrace.protocol.encode import encode_reply, encode_request  # noqa: E402

K, D = Direction.INBOUND, Direction.OUTBOUND
U64 = struct.Struct("<Q")
WINDOW = 500  # node ids kept looked up at once


def patch(frame: bytes, unique: int, nodeid: int | None = None) -> bytes:
    b = bytearray(frame)
    U64.pack_into(b, 8, unique)
    if nodeid is not None:
        U64.pack_into(b, 16, nodeid)
    return bytes(b)


def fh_patch(frame: bytes, unique: int, nodeid: int, fh: int) -> bytes:
    b = bytearray(frame)
    U64.pack_into(b, 8, unique)
    U64.pack_into(b, 16, nodeid)
    U64.pack_into(b, 40, fh)
    return bytes(b)


def write_capture(path: Path, frames: int) -> int:
    f1, f2 = (InitFlag.INIT_EXT | InitFlag.MAX_PAGES | InitFlag.ASYNC_READ).words()
    reg = {"mode": S_IFREG | 0o644, "size": 1536, "nlink": 1}
    t = {
        "lookup": encode_request(Opcode.LOOKUP, {"name": "file.txt"}, unique=0, nodeid=1),
        "getattr": encode_request(Opcode.GETATTR, {}, unique=0),
        "attr": encode_reply(Opcode.GETATTR, {"attr_valid": 1, "attr": reg}, unique=0),
        "open": encode_request(Opcode.OPEN, {"flags": 0}, unique=0),
        "read": [
            encode_request(Opcode.READ, {"fh": 0, "offset": off, "size": 512}, unique=0)
            for off in (0, 512, 1024)
        ],
        "data": encode_reply(Opcode.READ, {"data": bytes(512)}, unique=0),
        "write": encode_request(Opcode.WRITE, {"fh": 0, "data": bytes(256)}, unique=0),
        "written": encode_reply(Opcode.WRITE, {"size": 256}, unique=0),
        "flush": encode_request(Opcode.FLUSH, {"fh": 0}, unique=0),
        "release": encode_request(Opcode.RELEASE, {"fh": 0}, unique=0),
        "empty": encode_reply(Opcode.FLUSH, unique=0),
        "forget": encode_request(Opcode.FORGET, {"nlookup": 1}, unique=0),
        "opendir": encode_request(Opcode.OPENDIR, {"flags": 0}, unique=0, nodeid=1),
        "readdir": encode_request(Opcode.READDIR, {"fh": 0, "size": 4096}, unique=0, nodeid=1),
        "dirents": encode_reply(
            Opcode.READDIR,
            {"entries": [{"ino": i, "off": i, "type": 8, "name": f"f{i}"} for i in range(10)]},
            unique=0,
        ),
        "releasedir": encode_request(Opcode.RELEASEDIR, {"fh": 0}, unique=0, nodeid=1),
    }
    n = 0
    ts = 1_700_000_000_000_000_000
    with path.open("wb") as f:
        w = CaptureWriter(f, {"daemon": ["synthetic"], "mountpoint": "/mnt"})

        def put(direction: Direction, data: bytes) -> None:
            nonlocal n, ts
            w.write(direction, ts, data)
            ts += 1500
            n += 1

        init = {"major": 7, "minor": 45, "flags": f1, "flags2": f2}
        put(K, encode_request(Opcode.INIT, init, unique=2))
        init_out = {**init, "max_write": 131072, "max_pages": 32}
        put(D, encode_reply(Opcode.INIT, init_out, unique=2))
        u = 4
        node = 100
        live: list[int] = []
        cycle = 0

        def call(req: bytes, rep: bytes, nodeid: int | None = None, fh: int | None = None) -> None:
            nonlocal u
            put(K, fh_patch(req, u, nodeid or 1, fh) if fh is not None else patch(req, u, nodeid))
            put(D, patch(rep, u))
            u += 2

        while n < frames:
            node += 1
            fh = node * 16
            entry = encode_reply(
                Opcode.LOOKUP,
                {"nodeid": node, "generation": 1, "attr": {**reg, "ino": node}},
                unique=0,
            )
            call(t["lookup"], entry)
            live.append(node)
            call(t["getattr"], t["attr"], node)
            call(t["open"], encode_reply(Opcode.OPEN, {"fh": fh}, unique=0), node)
            for r in t["read"]:
                call(r, t["data"], node, fh)
            call(t["write"], t["written"], node, fh)
            call(t["flush"], t["empty"], node, fh)
            call(t["release"], t["empty"], node, fh)
            if cycle % 10 == 0:
                dfh = 1 << 40 | cycle
                call(t["opendir"], encode_reply(Opcode.OPENDIR, {"fh": dfh}, unique=0))
                call(t["readdir"], t["dirents"], 1, dfh)
                call(t["releasedir"], t["empty"], 1, dfh)
            if len(live) > WINDOW:
                put(K, patch(t["forget"], u, live.pop(0)))
                u += 2
            cycle += 1
    return n


def count_frames(path: Path) -> int:
    from fusetrace.capture.pcapng import CaptureReader

    with path.open("rb") as f:
        return sum(1 for _ in CaptureReader(f))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--keep", type=Path, help="write the capture here and keep it")
    ap.add_argument("--header-only", action="store_true", help="check with --header-only")
    ap.add_argument("--reuse", type=Path, help="check an existing capture instead of writing one")
    args = ap.parse_args()
    tmp = None
    if args.keep:
        path = args.keep
    else:
        tmp = tempfile.TemporaryDirectory()
        path = Path(tmp.name) / "bench.pcapng"
    t0 = time.perf_counter()
    if args.reuse:
        path = args.reuse
        n = count_frames(path)
    else:
        n = write_capture(path, args.frames)
    t1 = time.perf_counter()
    size = path.stat().st_size
    print(f"capture: {n:,} frames, {size / 1e6:.1f} MB, written in {t1 - t0:.1f} s")
    cmd = [sys.executable, "-m", "fusetrace", "check", "--format", "json", str(path)]
    if args.header_only:
        cmd.insert(4, "--header-only")
    # byte-compiled, as installed (a checkout run with PYTHONDONTWRITEBYTECODE set compiles
    # every module at every start)
    compileall.compile_dir(ROOT / "fusetrace", quiet=1)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t2 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ})
    t3 = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_kb = usage.ru_maxrss
    # CPU seconds of the check (user + system) say more than wall time on a busy machine
    cpu = usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime
    import json

    doc = json.loads(proc.stdout)
    summary = doc["summary"]
    elapsed = t3 - t2
    print(f"check:   exit {proc.returncode}, {elapsed:.2f} s, {n / elapsed:,.0f} frames/s, "
          f"peak RSS {peak_kb / 1024:.0f} MB")  # fmt: skip
    print(f"         CPU {cpu:.2f} s, {n / cpu:,.0f} frames per CPU second")
    print(f"         findings {summary['findings']}")
    if proc.stderr.strip():
        print(proc.stderr.strip())
    ok = proc.returncode == 0 and n / elapsed >= 50_000 and peak_kb / 1024 < 200
    print("targets (>= 50,000 frames/s, < 200 MB): " + ("met" if ok else "NOT met"))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
