"""The compiled forwarding core: its ring, its results, how it is chosen and built.

The loops themselves run under every test of tests/proxy/test_forward.py and the real
mounts of tests/proxy/test_session.py (the ``path`` and ``forwarding`` fixtures); these
tests look at what only the core has.
"""

from __future__ import annotations

import errno
import io
import os
import random
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

from fusetrace.capture.pcapng import CaptureWriter
from fusetrace.errors import EnvironmentProblem
from fusetrace.frame import Direction, InFlight
from fusetrace.proxy import core, forward
from tests.support.mount import fusetrace_cmd, fusetrace_env

needs_core = pytest.mark.skipif(not core.available(), reason="core not built")
ROOT = Path(__file__).resolve().parents[2]


def request(unique: int, size: int) -> bytes:
    payload = bytes([unique % 251]) * (size - 40)
    return struct.pack("=IIQQIIIHH", size, 15, unique, 1, 0, 0, 0, 0, 0) + payload


def reply(unique: int, size: int) -> bytes:
    return struct.pack("=IiQ", size, 0, unique) + bytes([unique % 253]) * (size - 16)


def socket_pairs(
    sockbuf: int,
) -> tuple[socket.socket, socket.socket, socket.socket, socket.socket]:
    """kernel ⇄ dev and ours ⇄ daemon, with send and receive buffers of ``sockbuf`` bytes
    (room for large frames), and the test's ends timing out after 10 s."""
    kernel, dev = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours, daemon = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for s in (kernel, dev, ours, daemon):
        for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            s.setsockopt(socket.SOL_SOCKET, opt, sockbuf)
    for s in (kernel, daemon):
        s.settimeout(10)
    return kernel, dev, ours, daemon


def end_pairs(
    fwd: core.CoreForwarder,
    kernel: socket.socket,
    dev: socket.socket,
    ours: socket.socket,
    daemon: socket.socket,
) -> None:
    """The end of a core on socket_pairs(): the "kernel" goes, then the daemon."""
    kernel.close()
    assert fwd.ended.wait(5)
    daemon.shutdown(socket.SHUT_RDWR)
    assert fwd.join(5)
    for s in (daemon, dev, ours):
        s.close()


def assert_blocks(data: bytes, sent: list[tuple[Direction, bytes]], writer: CaptureWriter) -> None:
    """``data`` is the packet blocks ``writer`` makes of the frames ``sent`` (replies
    accepted by the kernel), one after the other, and nothing else."""
    at = 0
    for direction, frame in sent:
        (total,) = struct.unpack_from("=I", data, at + 4)
        t_hi, t_lo = struct.unpack_from("=II", data, at + 12)
        result = 0 if direction is Direction.OUTBOUND else None
        block = writer.block(direction, t_hi << 32 | t_lo, frame, result=result)
        assert bytes(data[at : at + total]) == b"".join(block)
        at += total
    assert at == len(data)


class SmallRing:
    """kernel socket ⇄ core ⇄ daemon socket, with a ring of a few slots and the smallest
    arena the core takes (four frames of 4 KiB), so that it fills and wraps often."""

    def __init__(self, slots: int = 8) -> None:
        self.kernel, self.dev = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.ours, self.daemon = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for s in (self.kernel, self.daemon):
            s.settimeout(10)
        self.fwd = core.CoreForwarder(
            self.dev.fileno(), self.ours, bufsize=4096, slots=slots, arena=0, lend_limit=0
        )
        self.fwd.start()

    def close(self) -> None:
        self.kernel.close()
        self.fwd.close_daemon_side()
        self.daemon.close()
        assert self.fwd.join(5)
        self.dev.close()
        self.ours.close()


@needs_core
def test_the_ring_keeps_every_frame_in_order_through_wrap_around() -> None:
    """Thousands of frames of random sizes both ways through 8 slots and a 16 KiB arena,
    taken by a thread of its own as the capture thread does: none lost, none reordered,
    each byte-exact, and the loops had to wait for room (the ring was full) many times."""
    ring = SmallRing()
    rng = random.Random(15)
    n = 3000
    reqs = [request(2 * u + 2, rng.randrange(40, 4000)) for u in range(n)]
    reps = [reply(2 * u + 2, rng.randrange(16, 4000)) for u in range(n)]
    taken: list[InFlight] = []
    done = threading.Event()

    def capture() -> None:
        while not done.is_set() or len(taken) < 2 * n:
            taken.extend(ring.fwd.take())
            time.sleep(0.001)  # as the capture thread, which takes every few milliseconds
            if done.is_set() and ring.fwd.handed() == len(taken):
                break

    def daemon() -> None:
        for r in reps:
            ring.daemon.recv(1 << 16)  # the request, then its answer
            ring.daemon.send(r)

    threads = [threading.Thread(target=capture), threading.Thread(target=daemon)]
    for t in threads:
        t.start()
    try:
        for r, rep in zip(reqs, reps, strict=True):
            ring.kernel.send(r)
            assert ring.kernel.recv(1 << 16) == rep
    finally:
        done.set()
        for t in threads:
            t.join(30)
    ring.close()
    taken.extend(ring.fwd.take(True))
    assert len(taken) == 2 * n
    inbound = [bytes(f[2]) for f in taken if f[0] is Direction.INBOUND]
    outbound = [bytes(f[2]) for f in taken if f[0] is Direction.OUTBOUND]
    assert inbound == reqs
    assert outbound == reps
    # each reply after its request, the order in which they crossed the "device"
    assert [f[0] for f in taken] == [Direction.INBOUND, Direction.OUTBOUND] * n
    assert [f[4] for f in taken] == [None, 0] * n  # requests: no result; replies: taken
    times = [f[1] for f in taken]
    assert times == sorted(times)
    assert sum(map(len, reqs + reps)) > 50 * 4 * 4097  # the arena went round many times
    assert ring.fwd.ring_waits > 0


@needs_core
def test_a_write_the_device_refuses_carries_its_errno() -> None:
    """The result of each reply's write: 0, or the errno (here EPIPE: the "device" went)."""
    ring = SmallRing()
    ring.kernel.send(request(2, 64))
    assert ring.daemon.recv(1 << 16) == request(2, 64)
    ring.daemon.send(reply(2, 32))
    assert ring.kernel.recv(1 << 16) == reply(2, 32)
    ring.kernel.close()  # the next write fails
    assert ring.fwd.ended.wait(5)  # (the kernel → daemon loop read end of file)
    ring.daemon.send(reply(4, 48))
    ring.daemon.shutdown(socket.SHUT_RDWR)
    assert ring.fwd.join(5)
    frames = ring.fwd.take(True)
    assert [(f[0], bytes(f[2]), f[4]) for f in frames] == [
        (Direction.INBOUND, request(2, 64), None),
        (Direction.OUTBOUND, reply(2, 32), 0),
        (Direction.OUTBOUND, reply(4, 48), errno.EPIPE),
    ]
    assert ring.fwd.stats.refused == {"EPIPE": 1}
    ring.daemon.close()
    ring.dev.close()
    ring.ours.close()


@needs_core
def test_after_the_capture_failed_the_loops_forward_without_waiting_for_room() -> None:
    """Nobody takes frames any more: the ring fills, and once the session says the capture
    failed the loops drop frames instead of waiting for room that never comes."""
    ring = SmallRing(slots=4)
    try:
        for u in range(2, 8):
            ring.kernel.send(request(u, 100))
        for u in range(2, 6):
            assert ring.daemon.recv(1 << 16) == request(u, 100)
        ring.fwd.end("capture failed", "test")
        for u in range(6, 8):
            assert ring.daemon.recv(1 << 16) == request(u, 100)
    finally:
        ring.close()
    assert len(ring.fwd.take(True)) == 4


@needs_core
def test_a_full_ring_wakes_the_capture_thread_before_its_pause_ends() -> None:
    """A loop that finds the ring full ends the capture thread's pause, rather than waiting
    for it to end on its own: the frames go on as soon as the capture thread takes them."""
    ring = SmallRing(slots=4)
    woken: list[bool] = []
    try:
        for u in range(2, 8):  # four fill the ring; the fifth waits for room
            ring.kernel.send(request(u, 100))
        for u in range(2, 6):
            assert ring.daemon.recv(1 << 16) == request(u, 100)
        assert ring.fwd.wait(60) is True  # (woken by the loop waiting for room)
        assert len(ring.fwd.take()) == 4
        for u in range(6, 8):
            assert ring.daemon.recv(1 << 16) == request(u, 100)
        woken.append(True)
    finally:
        if not woken:
            ring.fwd.end("capture failed", "test")
        ring.close()
    assert ring.fwd.ring_waits > 0


@needs_core
def test_lending_a_megabyte_wakes_the_capture_thread_before_its_pause_ends() -> None:
    """A loop that has lent a megabyte of large frames ends the capture thread's pause, so
    that the buffers come back while they are still in the caches; small frames, copied
    into the ring, wait for the pause to end; after lend_wake(0), large ones wake it only
    once half the buffers are lent."""
    kernel, dev, ours, daemon = socket_pairs(4 << 20)
    fwd = core.CoreForwarder(dev.fileno(), ours, bufsize=(1 << 20) + 4096, lend_limit=20)
    fwd.start()
    woken: list[bool] = []
    try:
        for u in range(2, 40, 2):  # small frames only: nothing ends the pause
            kernel.send(request(u, 200))
            daemon.recv(1 << 21)
        assert fwd.wait(0.2) is False
        waiter = threading.Thread(target=lambda: woken.append(fwd.wait(60)))
        waiter.start()
        for u in range(40, 48, 2):  # four frames of 256 KiB: a megabyte
            kernel.send(request(u, 256 << 10))
            daemon.recv(1 << 21)
        waiter.join(30)
        assert woken == [True]
        assert fwd._core.stats()["lent"] == 4
        fwd.lend_wake(0)  # (as for a capture written with direct I/O): half the buffers
        for u in range(48, 62, 2):  # seven more: ten lent of 21 buffers, then eleven
            kernel.send(request(u, 256 << 10))
            daemon.recv(1 << 21)
            if u == 58:
                assert fwd.wait(0.2) is False
        assert fwd.wait(60) is True
        assert fwd._core.stats()["lent"] == 11
    finally:
        if not woken:
            fwd.wake()
        end_pairs(fwd, kernel, dev, ours, daemon)


def test_the_core_is_built_in_the_development_install() -> None:
    """`pip install -e .` builds fusetrace/proxy/_core*.so next to its source (CI installs
    so, with a compiler): the recorder forwards in C unless told otherwise."""
    assert core.available(), "fusetrace.proxy._core was not built by the install"
    assert core._core is not None
    assert Path(core._core.__file__).parent == ROOT / "fusetrace" / "proxy"
    assert core.choose({}) == "c"


def test_forward_env_chooses_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    assert core.choose({core.ENV: "python"}) == "python"
    assert core.choose({core.ENV: " Python "}) == "python"
    with pytest.raises(EnvironmentProblem, match="is not one of auto, c, python"):
        core.choose({core.ENV: "rust"})
    monkeypatch.setattr(core, "_core", None)  # an installation without a C compiler
    assert core.choose({}) == "python"
    assert core.choose({core.ENV: "auto"}) == "python"
    with pytest.raises(EnvironmentProblem, match="was not built"):
        core.choose({core.ENV: "c"})


@needs_core
@pytest.mark.parametrize("snaplen", [None, 100])
def test_small_frames_come_as_the_packet_blocks_the_writer_would_make(snaplen: int | None) -> None:
    """With encode_blocks, small plain frames come from the core as their whole Enhanced
    Packet Blocks, byte for byte what CaptureWriter.block makes of them (snap length too),
    each run of them in one bytes object; a frame with a comment (the INIT pair, when
    changed) and a refused reply still come as frames, for the writer to encode."""
    ring = SmallRing()
    writer = CaptureWriter(io.BytesIO(), {}, snaplen=snaplen)
    assert ring.fwd.encode_blocks(writer)
    rng = random.Random(7)
    sent = []
    taken = []
    for u in range(2, 60, 2):
        taken += ring.fwd.take(False, True)  # (the ring is small)
        req, rep = request(u, rng.randrange(40, 400)), reply(u, rng.randrange(16, 400))
        ring.kernel.send(req)
        assert ring.daemon.recv(1 << 16) == req
        ring.daemon.send(rep)
        assert ring.kernel.recv(1 << 16) == rep
        sent += [(Direction.INBOUND, req), (Direction.OUTBOUND, rep)]
    ring.kernel.close()  # the last reply is refused (EPIPE): a frame, with its result
    assert ring.fwd.ended.wait(5)
    ring.daemon.send(reply(99, 20))
    ring.daemon.shutdown(socket.SHUT_RDWR)
    assert ring.fwd.join(5)
    taken += ring.fwd.take(True, True)
    runs, last = taken[:-1], taken[-1]
    assert all(isinstance(run, bytes) for run in runs)
    assert len(runs) < len(sent)  # some runs hold several blocks
    blocks = []
    for run in runs:
        assert isinstance(run, bytes)
        at = 0
        while at < len(run):
            (total,) = struct.unpack_from("=I", run, at + 4)
            blocks.append(run[at : at + total])
            at += total
    assert len(blocks) == len(sent) == ring.fwd.encoded()
    for (direction, frame), block in zip(sent, blocks, strict=True):
        t_hi, t_lo = struct.unpack_from("=II", block, 12)
        # a reply the device took carries its result (0), as the writer records it
        result = 0 if direction is Direction.OUTBOUND else None
        assert block == b"".join(writer.block(direction, t_hi << 32 | t_lo, frame, result=result))
    assert last[0] is Direction.OUTBOUND and last[4] == errno.EPIPE
    ring.daemon.close()
    ring.dev.close()
    ring.ours.close()


def test_an_unknown_choice_is_one_line_and_exit_status_4(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = subprocess.run(
        fusetrace_cmd("record", "-w", str(tmp_path / "c.pcapng"), str(mnt), "--", "true", "{}"),
        capture_output=True,
        text=True,
        env=fusetrace_env({core.ENV: "rust"}),
        timeout=60,
    )
    assert done.returncode == 4
    assert done.stderr.splitlines() == [
        "fusetrace: error: FUSETRACE_FORWARD='rust' is not one of auto, c, python "
        "(unset it to let fusetrace choose)"
    ]
    assert not (tmp_path / "c.pcapng").exists()


@needs_core
@pytest.mark.parametrize("snaplen", [None, 100])
def test_write_puts_plain_frames_small_and_lent_in_the_file_as_the_writer_would(
    tmp_path: Path, snaplen: int | None
) -> None:
    """Core.write writes the frames ready, small (copied in the ring) and large (lent in
    their receive buffers, which go back to the loops), as the packet blocks the writer
    makes of them, in order; it stops at a frame that needs the writer (a refused reply),
    which take() then hands over. Two buffers to lend per direction: without them coming
    back, large frames would be copied instead, and the ring would fill."""
    kernel, dev, ours, daemon = socket_pairs(1 << 20)
    fwd = core.CoreForwarder(dev.fileno(), ours, bufsize=256 << 10, lend_limit=2)
    fwd.start()
    writer = CaptureWriter(io.BytesIO(), {}, snaplen=snaplen)
    assert fwd.encode_blocks(writer)
    out = tmp_path / "blocks"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    rng = random.Random(11)
    sent = []
    lent = 0
    written = 0
    for u in range(2, 80, 2):
        big = u % 3 == 0
        req = request(u, rng.randrange(40, 400) if not big else rng.randrange(40 << 10, 200 << 10))
        rep = reply(u, rng.randrange(16, 400) if big else rng.randrange(33 << 10, 250 << 10))
        kernel.send(req)
        assert daemon.recv(1 << 20) == req
        daemon.send(rep)
        assert kernel.recv(1 << 20) == rep
        sent += [(Direction.INBOUND, req), (Direction.OUTBOUND, rep)]
        lent += (len(req) >= forward.LEND_MIN) + (len(rep) >= forward.LEND_MIN)
        if u == 40:  # from here on, at the descriptor's offset (as to a pipe)
            os.lseek(fd, written, os.SEEK_SET)
        frames, nbytes, err, left = fwd.write(fd, written if u < 40 else -1)
        assert err is None and not left
        written += nbytes
    kernel.close()  # the next reply is refused (EPIPE): the writer's, as a frame
    assert fwd.ended.wait(5)
    daemon.send(reply(99, 20))
    daemon.shutdown(socket.SHUT_RDWR)
    assert fwd.join(5)
    # the last reply (written once its write to the "device" returned), not the refused one
    frames, nbytes, err, left = fwd.write(fd)
    assert frames <= 1 and err is None and left  # (the refused reply)
    written += nbytes
    assert fwd.encoded() == len(sent) and lent > 20
    (last,) = fwd.take(True, True)
    assert last[0] is Direction.OUTBOUND and last[4] == errno.EPIPE
    os.close(fd)
    data = out.read_bytes()
    assert len(data) == written
    blocks = []
    at = 0
    while at < len(data):
        (total,) = struct.unpack_from("=I", data, at + 4)
        blocks.append(data[at : at + total])
        at += total
    assert len(blocks) == len(sent)
    for (direction, frame), block in zip(sent, blocks, strict=True):
        t_hi, t_lo = struct.unpack_from("=II", block, 12)
        result = 0 if direction is Direction.OUTBOUND else None
        assert block == b"".join(writer.block(direction, t_hi << 32 | t_lo, frame, result=result))
    assert fwd.ring_waits == 0
    assert fwd._core.stats()["lent"] == lent  # every one: the buffers came back each time
    for s in (daemon, dev, ours):
        s.close()


@needs_core
def test_wait_pauses_until_its_timeout_or_until_woken() -> None:
    """The capture thread's pause: wait() ends on its own (False), or at once when wake()
    was called, before or during it (True); a wake ends one wait only."""
    ring = SmallRing()
    try:
        assert ring.fwd.wait(0.001) is False
        ring.fwd.wake()
        assert ring.fwd.wait(60) is True  # woken before: ends at once
        assert ring.fwd.wait(0) is False
        woken: list[bool] = []
        waiter = threading.Thread(target=lambda: woken.append(ring.fwd.wait(60)))
        waiter.start()
        ring.fwd.wake()
        waiter.join(30)
        assert woken == [True]
    finally:
        ring.close()


class Pump:
    """A small ring whose core encodes blocks as ``writer`` does, and its pump() in a
    thread of its own (as the capture thread runs it), writing to a pipe the test reads."""

    def __init__(self, interval: float) -> None:
        self.ring = SmallRing(slots=64)
        self.fwd = self.ring.fwd
        self.writer = CaptureWriter(io.BytesIO(), {})
        assert self.fwd.encode_blocks(self.writer)
        self.interval = interval
        self.r, self.w = os.pipe()
        os.set_blocking(self.r, False)
        self.done: list[tuple[int, int, int | None, bool]] = []
        self.thread = threading.Thread()

    def start(self) -> None:
        self.thread = threading.Thread(
            target=lambda: self.done.append(self.fwd.pump(self.w, -1, 0, self.interval))
        )
        self.thread.start()

    def read(self, size: int) -> bytes:
        """What the pipe carries, once it has ``size`` bytes (or after 30 s)."""
        data = b""
        deadline = time.monotonic() + 30
        while len(data) < size and time.monotonic() < deadline:
            try:
                data += os.read(self.r, 1 << 16)
            except BlockingIOError:
                time.sleep(0.0005)
        return data

    def stop(self) -> None:
        if self.thread.is_alive():
            self.fwd.wake()
            self.thread.join(30)

    def close(self) -> None:
        self.stop()
        os.close(self.r)
        os.close(self.w)
        self.ring.close()


@needs_core
def test_pump_writes_frames_as_they_come_until_woken_or_a_frame_needs_the_writer() -> None:
    """The capture thread's loop in C: pump() writes plain frames to the descriptor while
    they come, without returning, and returns when wake() is called, or when a frame needs
    the writer (a refused reply), which take() then hands over."""
    pump = Pump(0.001)
    ring, writer = pump.ring, pump.writer
    try:
        pump.start()
        sent = []
        for u in range(2, 12, 2):
            req, rep = request(u, 100), reply(u, 200)
            ring.kernel.send(req)
            assert ring.daemon.recv(1 << 16) == req
            ring.daemon.send(rep)
            assert ring.kernel.recv(1 << 16) == rep
            sent += [(Direction.INBOUND, req), (Direction.OUTBOUND, rep)]
        data = pump.read(sum(len(b"".join(writer.block(d, 0, f))) for d, f in sent))
        assert pump.thread.is_alive() and not pump.done  # written, and still pumping
        assert_blocks(data, sent, writer)
        pump.stop()
        assert pump.done == [(len(sent), len(data), None, False)]
        # a reply the kernel refuses needs the writer: pump returns with it left to take
        pump.start()
        ring.kernel.close()
        assert ring.fwd.ended.wait(5)
        ring.daemon.send(reply(99, 20))
        pump.thread.join(30)
        assert not pump.thread.is_alive() and pump.done[1][2:] == (None, True)
        (last,) = ring.fwd.take(True, True)
        assert last[0] is Direction.OUTBOUND and last[4] == errno.EPIPE
    finally:
        pump.close()


@needs_core
def test_an_idle_pump_sleeps_until_the_next_frame_and_writes_it_within_its_interval() -> None:
    """A pump that saw no frame in a whole pause stops waking every interval (an idle
    recorder costs nothing); the next frame ends that sleep, and is written one interval
    later, as any other."""
    pump = Pump(0.002)
    ring, writer = pump.ring, pump.writer
    try:
        pump.start()
        time.sleep(0.3)  # 150 intervals, without a frame
        drains = ring.fwd._core.stats()["drains"]
        assert drains <= 3
        for u in (2, 4):
            req = request(u, 100)
            ring.kernel.send(req)
            assert ring.daemon.recv(1 << 16) == req
            size = len(b"".join(writer.block(Direction.INBOUND, 0, req)))
            data = pump.read(size)
            assert len(data) == size and data[28 : 28 + len(req)] == req
            time.sleep(0.1)
        # woken by each frame, and one more pause to see none came
        assert ring.fwd._core.stats()["drains"] - drains <= 6
        assert pump.thread.is_alive()
        pump.stop()
        assert pump.done == [(2, 2 * size, None, False)]
    finally:
        pump.close()


@needs_core
@pytest.mark.parametrize("pipe_size", [1 << 20, 4096])
def test_while_pumping_to_a_pipe_the_loops_write_large_frames_themselves(pipe_size: int) -> None:
    """pump(inline=True) to a pipe: the loop that forwarded a large reply writes the
    frames ready itself (the small request before it too), without waking the capture
    thread, and its buffer comes back at once. A pipe too small for a frame takes part of
    it: the rest goes out first, by the loop's next write or the capture thread's. Either
    way the pipe carries every block, whole and in order."""
    import fcntl

    kernel, dev, ours, daemon = socket_pairs(4 << 20)
    fwd = core.CoreForwarder(dev.fileno(), ours, bufsize=(256 << 10) + 4096, lend_limit=8)
    fwd.start()
    writer = CaptureWriter(io.BytesIO(), {})
    assert fwd.encode_blocks(writer)
    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, pipe_size)
    got = bytearray()
    done: list[tuple[int, int, int | None, bool]] = []

    def read_all() -> None:
        while chunk := os.read(r, 1 << 20):
            got.extend(chunk)
            if pipe_size < 1 << 20:
                time.sleep(0.0005)  # a slow reader: the pipe is often full

    reader = threading.Thread(target=read_all)
    reader.start()
    pumping = threading.Thread(target=lambda: done.append(fwd.pump(w, -1, 0, 60.0, True)))
    pumping.start()
    rng = random.Random(5)
    sent = []
    try:
        for u in range(2, 82, 2):
            req, rep = request(u, rng.randrange(40, 200)), reply(u, rng.randrange(64, 250) << 10)
            kernel.send(req)
            assert daemon.recv(1 << 20) == req
            daemon.send(rep)
            assert kernel.recv(1 << 20) == rep
            sent += [(Direction.INBOUND, req), (Direction.OUTBOUND, rep)]
        size = sum(
            len(b"".join(writer.block(d, 0, f, result=0 if d is Direction.OUTBOUND else None)))
            for d, f in sent
        )
        if pipe_size >= 1 << 20:
            deadline = time.monotonic() + 30
            while len(got) < size and time.monotonic() < deadline:
                time.sleep(0.001)
            # all written by the loop, with nothing left for the pump to write
            assert len(got) == size and pumping.is_alive()
            assert fwd._core.stats()["inline"] == len(sent)
            assert fwd._core.stats()["carried"] == 0
        fwd.wake()
        pumping.join(30)
        frames, _nbytes, err, _left = fwd.write(w)  # (blocking: the rest, carry first)
        assert err is None
        assert fwd.take(True, True) == []
        stats = fwd._core.stats()
        assert fwd.encoded() == len(sent)
        assert stats["inline"] + done[0][0] + frames == len(sent)
        assert stats["inline"] > 0
        if pipe_size < 1 << 20:
            assert stats["carried"] > 0
    finally:
        if pumping.is_alive():
            fwd.wake()
            pumping.join(30)
        os.close(w)
        reader.join(30)
        os.close(r)
        end_pairs(fwd, kernel, dev, ours, daemon)
    assert_blocks(got, sent, writer)
