"""`top --attach`: the kernel's fuse tracepoints on a mount fusetrace did not make.

The counts top shows are compared with the same tracepoints read independently, through a
second ftrace instance this test sets up itself and reads with its own parser; and with what
the workload must cause on a fresh mount (every name looked up at least once, every byte
read). Afterwards tracefs must be as it was: same instances, events disabled, buffer sizes
and filters unchanged, and unmounted if it was not mounted before.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fusetrace.proxy import mount as mounts
from fusetrace.proxy.tracefs import End, Send, parse_line
from tests.support.mount import fusetrace_cmd, fusetrace_env, native_mount, one_line_error
from tests.support.trees import make_squashfs

TRACING = "/sys/kernel/tracing"


def test_parse_lines_of_both_events() -> None:
    send = parse_line(
        "             cat-2312    [001] .....  8123.456789: fuse_request_send: connection 39 "
        "req 12 opcode 15 (FUSE_READ) len 80 "
    )
    assert send == Send(8123456789000, 39, 12, 15, 80, 2312)
    end = parse_line(
        " squashfuse_ll-7 [000] ...1. 8123.456801: fuse_request_end: connection 39 req 12 "
        "len 4112 error -2"
    )
    assert end == End(8123456801000, 39, 12, 4112, -2)
    assert parse_line("CPU:1 [LOST 17 EVENTS]") == 17
    assert parse_line("# tracer: nop") is None


def _tracefs_mounted() -> bool:
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == TRACING and line.split()[2] == "tracefs" for line in f)


def _state() -> dict[str, str]:
    """What top may not change, read here independently of fusetrace."""
    out = {"buffer_size_kb": Path(TRACING, "buffer_size_kb").read_text()}
    out["instances"] = " ".join(sorted(os.listdir(f"{TRACING}/instances")))
    for ev in ("fuse_request_send", "fuse_request_end"):
        for name in ("enable", "filter"):
            out[f"{ev}/{name}"] = Path(TRACING, "events/fuse", ev, name).read_text()
    return out


@contextlib.contextmanager
def _own_instance(conn: int) -> Iterator[Path]:
    """A second ftrace instance with the two fuse events of connection ``conn``."""
    inst = Path(TRACING, "instances", f"fusetrace-test-{os.getpid()}")
    inst.mkdir()
    try:
        (inst / "buffer_size_kb").write_text("4096")
        for ev in ("fuse_request_send", "fuse_request_end"):
            (inst / "events/fuse" / ev / "filter").write_text(f"connection == {conn}")
            (inst / "events/fuse" / ev / "enable").write_text("1")
        yield inst
    finally:
        for ev in ("fuse_request_send", "fuse_request_end"):
            with contextlib.suppress(OSError):
                (inst / "events/fuse" / ev / "enable").write_text("0")
        inst.rmdir()


def _count_sends(inst: Path) -> dict[int, int]:
    counts: dict[int, int] = {}
    for line in (inst / "trace").read_text().splitlines():
        m = re.search(r"fuse_request_send: connection \d+ req \d+ opcode (\d+) ", line)
        if m:
            op = int(m.group(1))
            counts[op] = counts.get(op, 0) + 1
    return counts


def _wait_attached(proc: subprocess.Popen[str]) -> None:
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "attached to" in line, line + (proc.stderr.read() if proc.poll() is not None else "")


@pytest.fixture
def image(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "dir").mkdir(parents=True)
    for i in range(12):
        (src / "dir" / f"f{i}.txt").write_text(f"file {i}\n" * (i + 1))
    (src / "big.bin").write_bytes(os.urandom(1 << 20))
    return make_squashfs(src, tmp_path / "img.sqfs")


@pytest.mark.mount
def test_attach_counts_equal_the_kernels(image: Path, mountpoint: Path) -> None:
    mounted_before = _tracefs_mounted()
    if not mounted_before:
        subprocess.run(["mount", "-t", "tracefs", "nodev", TRACING], check=True)
    try:
        before = _state()
        with native_mount(["squashfuse_ll", "-f", str(image), str(mountpoint)], mountpoint):
            entry = mounts.find_mount(os.path.realpath(mountpoint))
            assert entry is not None
            with _own_instance(entry.conn) as inst:
                proc = subprocess.Popen(
                    fusetrace_cmd("top", "--attach", str(mountpoint), "--format", "json"),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=fusetrace_env(),
                )
                try:
                    _wait_attached(proc)
                    during = _state()
                    names = sorted(os.listdir(mountpoint / "dir"))
                    total = 0
                    for name in names:
                        total += len((mountpoint / "dir" / name).read_bytes())
                    total += len((mountpoint / "big.bin").read_bytes())
                    proc.send_signal(signal.SIGINT)
                    out, err = proc.communicate(timeout=60)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
                kernel = _count_sends(inst)
        assert proc.returncode == 0, err
        doc = json.loads(out)
        rows = {r["opcode"]: r for r in doc["opcodes"]}
        assert doc["source"] == "tracepoints" and doc["lost_events"] == 0
        assert rows["LOOKUP"]["requests"] == kernel[1]
        assert rows["READ"]["requests"] == kernel[15]
        # a fresh mount: "dir", big.bin and every file in dir looked up at least once
        assert rows["LOOKUP"]["requests"] >= len(names) + 2
        assert rows["READ"]["bytes_out"] >= total
        assert rows["READ"]["p50_ns"] is not None and rows["READ"]["in_flight"] == 0
        # top's own instance existed while it ran, and the global state was never touched
        assert f"fusetrace-{proc.pid}" in during["instances"]
        assert {k: v for k, v in during.items() if k != "instances"} == {
            k: v for k, v in before.items() if k != "instances"
        }
        assert _state() == before
    finally:
        if not mounted_before:
            subprocess.run(["umount", TRACING], check=True)


@pytest.mark.mount
def test_attach_writes_a_capture_check_and_decode_read(
    image: Path, mountpoint: Path, tmp_path: Path
) -> None:
    """With -w: header-only frames, "source": "tracepoints"; tracefs unmounted again when
    top mounted it."""
    mounted_before = _tracefs_mounted()
    cap = tmp_path / "kernel.pcapng"
    with native_mount(["squashfuse_ll", "-f", str(image), str(mountpoint)], mountpoint):
        proc = subprocess.Popen(
            fusetrace_cmd("top", "--attach", str(mountpoint), "-w", str(cap), "--format", "json"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=fusetrace_env(),
        )
        try:
            _wait_attached(proc)
            (mountpoint / "big.bin").read_bytes()
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err
    assert _tracefs_mounted() == mounted_before
    reads = {r["opcode"]: r for r in json.loads(out)["opcodes"]}["READ"]["requests"]
    from fusetrace.capture.files import open_capture

    with open_capture(str(cap)) as reader:
        assert reader.info.meta["source"] == "tracepoints"
        frames = list(reader)
    assert all(len(f.data) in (16, 40) for f in frames)
    stats = subprocess.run(
        fusetrace_cmd("decode", "--stats", "--format", "json", str(cap)),
        capture_output=True,
        text=True,
        env=fusetrace_env(),
        check=False,
    )
    assert stats.returncode == 0, stats.stderr
    by_op = {r["opcode"]: r for r in json.loads(stats.stdout)["opcodes"]}
    assert by_op["READ"]["count"] == reads and by_op["READ"]["replies"] == reads
    check = subprocess.run(
        fusetrace_cmd("check", "--header-only", str(cap)),
        capture_output=True,
        text=True,
        env=fusetrace_env(),
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.mount
def test_attach_needs_root(image: Path, mountpoint: Path) -> None:
    with native_mount(["squashfuse_ll", "-f", str(image), str(mountpoint)], mountpoint):
        r = subprocess.run(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                *fusetrace_cmd("top", "--attach", str(mountpoint), "--format", "json"),
            ],
            capture_output=True,
            text=True,
            env=fusetrace_env(),
            check=False,
            timeout=60,
        )
    assert r.returncode == 4, r.stderr
    assert "root" in one_line_error(r.stderr)
