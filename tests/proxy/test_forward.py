"""The forwarding loops, with a SEQPACKET socket standing in for /dev/fuse.

A socket gives the same one-frame-per-read semantics as the device, so these tests drive
the real loops (INIT rewriting, reassembly, ordering, endings) without a mount. Each runs
on both forwarding paths: the Python loops and the compiled core (proxy/core.py).
"""

from __future__ import annotations

import errno
import hashlib
import os
import queue
import re
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fusetrace.frame import PENDING, Direction, InFlight
from fusetrace.protocol.abi import InitFlag
from fusetrace.proxy import core, wire
from fusetrace.proxy.forward import LEND_MIN, Forwarder, FrameBuffers
from tests.conform.helpers import overlay_argv
from tests.support.mount import recording

#: a captured frame as the tests look at it: direction, t_ns, data, comment
Captured = tuple[Direction, int, bytes, str | None]

PASSTHROUGH = 1 << 5  # flags2 bit of INIT flag 37
OVER_IO_URING = 1 << 9  # flags2 bit of INIT flag 41
INIT_EXT = 1 << 30


def init_request(unique: int = 2, flags2: int = PASSTHROUGH | OVER_IO_URING | 1) -> bytes:
    body = struct.pack("=IIIII44x", 7, 45, 131072, INIT_EXT | 1, flags2)
    return struct.pack("=IIQQIIIHH", 40 + len(body), 26, unique, 0, 0, 0, 0, 0, 0) + body


def init_reply(unique: int = 2, flags2: int = 0) -> bytes:
    body = struct.pack("=IIIIHHIIHHI28x", 7, 31, 131072, INIT_EXT, 12, 9, 131072, 1, 32, 0, flags2)
    return struct.pack("=IiQ", 16 + len(body), 0, unique) + body


def request(unique: int, opcode: int = 3, payload: bytes = b"") -> bytes:
    return struct.pack("=IIQQIIIHH", 40 + len(payload), opcode, unique, 1, 0, 0, 0, 0, 0) + payload


def reply(unique: int, payload: bytes = b"", error: int = 0) -> bytes:
    return struct.pack("=IiQ", 16 + len(payload), error, unique) + payload


class Rig:
    """kernel socket ⇄ Forwarder ⇄ daemon socket, frames captured into a queue (the Python
    loops) or taken from the core's ring (the compiled core)."""

    def __init__(self, path: str = "python", lend_limit: int | None = None, **kw: object) -> None:
        self.kernel, dev = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours, self.daemon = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for s in (self.kernel, dev, ours, self.daemon):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        # the test's ends time out; the forwarder's ends block, as /dev/fuse does
        self.kernel.settimeout(5)
        self.daemon.settimeout(5)
        self._dev = dev
        self.captured: queue.SimpleQueue[InFlight] = queue.SimpleQueue()
        self.core: core.CoreForwarder | None = None
        self.fwd: Forwarder
        if path == "c":
            limit = {} if lend_limit is None else {"lend_limit": lend_limit}
            self.core = core.CoreForwarder(dev.fileno(), ours, bufsize=1 << 20, **limit, **kw)  # type: ignore[arg-type]
            self.fwd = self.core
            self.buffers: FrameBuffers | None = self.core.buffers
        else:
            self.buffers = None if lend_limit is None else FrameBuffers((1 << 20) + 1, lend_limit)
            self.fwd = Forwarder(
                dev.fileno(), ours, self.captured.put, bufsize=1 << 20, buffers=self.buffers, **kw
            )  # type: ignore[arg-type]
        self.taken = 0
        #: the result of each outbound frame taken by items(), in order
        self.results: list[int | None] = []
        self.fwd.start()

    def items(self) -> list[Captured]:
        """The frames captured so far, as (direction, t_ns, data, comment); the results of
        the outbound ones go to :attr:`results`."""
        if self.core is not None:
            # a reply is handed over once its write returned, just after the test's end
            # of the "device" received it: take until all handed over are taken
            out = []
            deadline = time.monotonic() + 5
            while self.taken < self.core.handed() and time.monotonic() < deadline:
                got = self.core.take()
                self.taken += len(got)
                self.results += [f[4] for f in got if f[0] is Direction.OUTBOUND]
                out += [f[:4] for f in got]
                if self.taken < self.core.handed():
                    time.sleep(0.001)
            self.core.collect_stats()
            return out  # type: ignore[return-value]
        out = []
        while not self.captured.empty():
            direction, t, data, comment, result = self.captured.get()
            if direction is Direction.OUTBOUND:
                self.results.append(result)
            out.append((direction, t, data, comment))
        return out

    def refused(self) -> dict[str, int]:
        """The forwarder's count of refused writes so far (the core's counters are copied
        on request)."""
        if self.core is not None:
            self.core.collect_stats()
        return self.fwd.stats.refused

    def close(self) -> None:
        self.kernel.close()
        self.fwd.close_daemon_side()
        self.daemon.close()
        assert self.fwd.join(5)
        self._dev.close()


@pytest.fixture
def rig(path: str) -> Rig:
    r = Rig(path)
    yield r
    r.close()


def test_init_offer_is_cleared_for_the_daemon_and_captured_as_the_kernel_sent_it(rig: Rig) -> None:
    sent = init_request()
    rig.kernel.send(sent)
    seen = rig.daemon.recv(1 << 16)
    flags2 = struct.unpack_from("=I", seen, wire.INIT_IN_FLAGS2)[0]
    assert flags2 == 1  # PASSTHROUGH and OVER_IO_URING gone, the rest kept
    assert seen[: wire.INIT_IN_FLAGS] == sent[: wire.INIT_IN_FLAGS]
    rig.daemon.send(init_reply())
    assert rig.kernel.recv(1 << 16) == init_reply()
    (direction, _t, data, comment), (d2, _t2, data2, comment2) = rig.items()
    assert direction is Direction.INBOUND and data == sent
    assert comment and "PASSTHROUGH|OVER_IO_URING" in comment and "flags2 0x1" in comment
    assert d2 is Direction.OUTBOUND and data2 == init_reply() and comment2 is None
    assert rig.fwd.init_answered.is_set()


def test_init_offer_keeps_the_splice_bits(rig: Rig) -> None:
    """SPLICE_* only say what the kernel can do; libfuse splices (or not) whatever they say,
    and the joining of split replies copes with it. The daemon sees the kernel's offer."""
    splice = int(InitFlag.SPLICE_WRITE | InitFlag.SPLICE_MOVE | InitFlag.SPLICE_READ)
    body = struct.pack("=IIIII44x", 7, 45, 131072, INIT_EXT | splice | 1, 0)
    sent = struct.pack("=IIQQIIIHH", 40 + len(body), 26, 2, 0, 0, 0, 0, 0, 0) + body
    rig.kernel.send(sent)
    assert rig.daemon.recv(1 << 16) == sent
    rig.daemon.send(init_reply())
    rig.kernel.recv(1 << 16)
    (_d, _t, data, comment), _reply = rig.items()
    assert data == sent and comment is None


def test_init_reply_asking_for_passthrough_is_cleared_before_the_kernel(rig: Rig) -> None:
    rig.kernel.send(init_request())
    rig.daemon.recv(1 << 16)
    rig.daemon.send(init_reply(flags2=PASSTHROUGH | 2))
    got = rig.kernel.recv(1 << 16)
    assert struct.unpack_from("=I", got, wire.INIT_OUT_FLAGS2)[0] == 2
    items = rig.items()
    _d, _t, data, comment = items[1]
    assert data == got  # captured as the kernel saw it
    assert comment and "PASSTHROUGH" in comment and "0x22" in comment


def test_frames_pass_unchanged_and_replies_follow_their_requests(rig: Rig) -> None:
    rig.kernel.send(init_request())
    rig.daemon.recv(1 << 16)
    rig.daemon.send(init_reply())
    rig.kernel.recv(1 << 16)
    reqs = [request(u, payload=bytes([u]) * u) for u in range(4, 40, 2)]
    for r in reqs:
        rig.kernel.send(r)
    for r in reqs:
        assert rig.daemon.recv(1 << 16) == r
    # answered out of order, as a multithreaded daemon does
    for r in reversed(reqs):
        unique = struct.unpack_from("=Q", r, 8)[0]
        rig.daemon.send(reply(unique, b"x" * unique))
    for r in reversed(reqs):
        unique = struct.unpack_from("=Q", r, 8)[0]
        assert rig.kernel.recv(1 << 16) == reply(unique, b"x" * unique)
    items = rig.items()[2:]
    order = {}
    for i, (direction, _t, data, _c) in enumerate(items):
        if direction is Direction.INBOUND:
            order[struct.unpack_from("=Q", data, 8)[0]] = i
        else:
            assert order[struct.unpack_from("=Q", data, 8)[0]] < i
    assert len(items) == 2 * len(reqs)
    assert rig.results == [0] * (1 + len(reqs))  # every reply taken by the device


def test_a_refused_write_is_the_frames_result(rig: Rig) -> None:
    """The errno of the write to the device becomes the frame's result (here EPIPE: the
    device end no longer takes writes), counted in the stats; the frames before and after
    keep theirs."""
    rig.kernel.send(request(4))
    rig.daemon.recv(1 << 16)
    rig.daemon.send(reply(4))
    assert rig.kernel.recv(1 << 16) == reply(4)
    rig._dev.shutdown(socket.SHUT_WR)
    rig.daemon.send(reply(6, b"late"))
    deadline = time.monotonic() + 5
    while not rig.refused() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert rig.refused() == {"EPIPE": 1}
    rig.items()
    assert rig.results == [0, errno.EPIPE]
    assert PENDING not in rig.results


def test_a_reply_split_over_several_messages_is_joined(rig: Rig) -> None:
    rig.kernel.send(request(8))
    rig.daemon.recv(1 << 16)
    whole = reply(8, bytes(range(256)) * 1000)
    rig.daemon.send(whole[:5000])
    rig.daemon.send(whole[5000:100_000])
    rig.daemon.send(whole[100_000:])
    assert rig.kernel.recv(1 << 20) == whole
    assert rig.items()[-1][2] == whole
    assert rig.fwd.stats.joined == 1


def test_daemon_closing_its_socket_ends_forwarding(rig: Rig) -> None:
    rig.daemon.shutdown(socket.SHUT_RDWR)
    assert rig.fwd.ended.wait(5)
    assert rig.fwd.ending is not None and rig.fwd.ending.reason == "daemon closed"


def test_outstanding_requests_are_tracked_until_answered(path: str) -> None:
    r = Rig(path, track_outstanding=True)
    try:
        r.kernel.send(request(10))
        r.kernel.send(request(12, opcode=wire.OP_FORGET))  # no reply expected
        r.daemon.recv(1 << 16)
        r.daemon.recv(1 << 16)
        r.items()  # (the core's frames are tracked as the capture thread takes them)
        assert r.fwd.outstanding is not None and set(r.fwd.outstanding) == {10}
        assert r.fwd.oldest_outstanding() is not None
        r.daemon.send(reply(10))
        r.kernel.recv(1 << 16)
        r.items()
        assert r.fwd.outstanding == {}
    finally:
        r.close()


def test_large_frames_are_lent_in_their_buffers_and_arrive_byte_exact(path: str) -> None:
    r = Rig(path, lend_limit=3)
    buffers = r.buffers
    assert buffers is not None
    try:
        r.kernel.send(init_request())
        r.daemon.recv(1 << 16)
        r.daemon.send(init_reply())
        r.kernel.recv(1 << 16)
        r.items()
        kept = []  # frames as handed over; lent buffers not given back must stay intact
        for u in range(4, 24):
            # each frame differs in every byte, so reusing a buffer too early would show
            req = request(u, 16, bytes([u]) * (LEND_MIN + u))
            r.kernel.send(req)
            assert r.daemon.recv(1 << 20) == req
            rep = reply(u, bytes([u + 100]) * (LEND_MIN * 2 + u))
            r.daemon.send(rep[:1000])  # split, as a splicing daemon sends it
            r.daemon.send(rep[1000:])
            assert r.kernel.recv(1 << 20) == rep
            for direction, _t, data, _c in r.items():
                if isinstance(data, memoryview) and u % 2:
                    kept.append((bytes(data), True))
                    buffers.give(direction, data)  # the others stay lent: copies follow
                else:
                    kept.append((data, isinstance(data, memoryview)))
        assert [bytes(d) for d, _ in kept] == [
            f
            for u in range(4, 24)
            for f in (
                request(u, 16, bytes([u]) * (LEND_MIN + u)),
                reply(u, bytes([u + 100]) * (LEND_MIN * 2 + u)),
            )
        ]
        lent = [is_view for _, is_view in kept]
        assert any(lent) and not all(lent)  # lent while buffers were free, then copied
    finally:
        r.close()


def test_small_frames_are_copied_even_with_frame_buffers(path: str) -> None:
    r = Rig(path, lend_limit=64)
    try:
        r.kernel.send(request(6))
        assert r.daemon.recv(1 << 16) == request(6)
        r.daemon.send(reply(6, b"ok"))
        assert r.kernel.recv(1 << 16) == reply(6, b"ok")
        assert [type(data) for _d, _t, data, _c in r.items()] == [bytes, bytes]
    finally:
        r.close()


def drop_caches() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3")


@pytest.mark.mount
def test_replies_spliced_by_a_real_daemon_are_joined_under_concurrent_reads(
    mountpoint: Path, tmp_path: Path, forwarding: str
) -> None:
    """fuse-overlayfs (libfuse 3) splices READ replies into the socket, one reply in several
    messages; with twelve readers at once several daemon threads do so side by side. Every
    byte read through the mount must be the file's, every reply whole in the capture."""
    argv = overlay_argv(tmp_path, "{}")
    lower = tmp_path / "lower"
    digests = {}
    for i in range(12):
        data = os.urandom(4 << 20)
        (lower / f"f{i}").write_bytes(data)
        digests[f"f{i}"] = hashlib.sha256(data).hexdigest()

    def digest(name: str) -> str:
        with open(mountpoint / name, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()

    with recording(argv, mountpoint, tmp_path / "c.pcapng") as rec:
        for _ in range(2):
            drop_caches()
            # a reply the proxy failed to join never reaches the kernel and its reader
            # waits: fail after a while (the recording helper then aborts the connection,
            # which ends the readers) instead of waiting for them
            pool = ThreadPoolExecutor(12)
            try:
                got = list(pool.map(digest, digests, timeout=60))
            finally:
                pool.shutdown(wait=False, cancel_futures=True)
            assert dict(zip(digests, got, strict=True)) == digests
    assert rec.returncode == 0, rec.stderr
    m = re.search(r"; (\d+) spliced replies joined", rec.stderr)
    assert m and int(m.group(1)) > 0, rec.stderr
    replies = [r for r in rec.frames() if r.direction is Direction.OUTBOUND]
    for r in replies:
        assert struct.unpack_from("=I", r.data)[0] == len(r.data)
    assert sum(len(r.data) > 64 << 10 for r in replies) >= int(m.group(1))


@pytest.mark.mount
def test_the_kernels_answer_to_each_daemon_frame_is_recorded_as_natively(
    tmp_path: Path, mountpoint: Path
) -> None:
    """A daemon that writes faulty replies and notifications (tests/tracker/misbehave.py):
    natively its own write() gets the kernel's errno for each; recorded, the same errno is
    the result of that frame in the capture (read back, and as decode prints it)."""
    import json
    import subprocess
    import sys

    from fusetrace.capture.files import open_capture
    from tests.support.mount import fusetrace_cmd, fusetrace_env
    from tests.tracker.misbehave import FAULTS, MKDIR_FAULTS, Misbehaving
    from tests.tracker.test_rules import in_thread

    skip = ("forget-me", "bad-out-len")

    def provoke(mnt: Path) -> None:
        for name in FAULTS:
            if name not in skip:
                in_thread(lambda n=name: os.stat(mnt / n))  # type: ignore[misc]
        for name in MKDIR_FAULTS:
            in_thread(lambda n=name: os.mkdir(mnt / n))  # type: ignore[misc]

    native_mnt = tmp_path / "native"
    native_mnt.mkdir()
    fs = Misbehaving(native_mnt, skip=frozenset(skip))
    fs.mount()
    try:
        provoke(native_mnt)
    finally:
        fs.unmount(abort=False)
    native = {key: f.write_errno for key, f in fs.faults.items()}
    assert any(native.values()) and not all(native.values())  # both kinds are exercised

    cap, report = tmp_path / "faults.pcapng", tmp_path / "faults.json"
    daemon = [sys.executable, str(Path(__file__).parents[1] / "tracker" / "misbehave.py"), "{}",
              str(report), ",".join(skip)]  # fmt: skip
    with recording(daemon, mountpoint, cap, record_args=["--handoff", "fd"], check_clean=False):
        provoke(mountpoint)
    faults = json.loads(report.read_text())["faults"]
    with open_capture(str(cap)) as reader:
        results = {r.data.hex(): r.result for r in reader if r.direction is Direction.OUTBOUND}
    traced = {key: results[f["data"]] for key, f in faults.items()}
    assert traced == native
    assert None not in results.values()
    lines = subprocess.run(
        fusetrace_cmd("decode", str(cap)), capture_output=True, text=True, env=fusetrace_env()
    ).stdout.splitlines()
    refused = [ln for ln in lines if " refused E" in ln]
    assert len(refused) == sum(1 for e in native.values() if e)
    assert {ln.rsplit(" refused ", 1)[1] for ln in refused} == {
        errno.errorcode[e] for e in native.values() if e
    }


@pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="needs /dev/fuse")
def test_cloning_the_socket_is_refused_by_the_kernel_with_einval() -> None:
    """libfuse's clone_fd opens /dev/fuse and asks FUSE_DEV_IOC_CLONE to attach it to the
    session's descriptor, here the daemon's socket end. The kernel itself answers: EINVAL,
    its answer for any descriptor that is not a FUSE device (fs/fuse/dev.c). So the daemon
    is told no exactly as /dev/fuse tells it, and carries on with its one descriptor."""
    import fcntl

    clone = 0x8004E500  # _IOR(229, 0, uint32_t)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    dev = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    try:
        with pytest.raises(OSError) as e:
            fcntl.ioctl(dev, clone, struct.pack("I", a.fileno()))
        assert e.value.errno == errno.EINVAL
    finally:
        os.close(dev)
        a.close()
        b.close()
