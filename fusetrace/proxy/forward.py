"""Forwarding frames between /dev/fuse and the daemon's socket, both ways.

Two threads, one per direction, each a tight loop of read → hand the frame to the sink →
write. The daemon may run as many worker threads as it likes: the kernel → daemon thread
only moves a request from the device into the socket, so many requests can be outstanding
in the daemon at once, and replies go back in whatever order the daemon writes them.

The loops parse only the headers (:mod:`fusetrace.proxy.wire`). The INIT pair is the
exception: the offered and accepted flags are rewritten so that the daemon never turns on
what cannot work over a socket (passthrough, io_uring; protocol.md §9), and the captured
frame is the one that crossed /dev/fuse, with a comment saying what the daemon saw instead.
"""

from __future__ import annotations

import collections
import errno
import mmap
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fusetrace.frame import PENDING, RESULT, Direction, InFlight
from fusetrace.protocol.abi import errno_name
from fusetrace.proxy import wire

#: takes an :data:`~fusetrace.frame.InFlight` frame (typically ``collections.deque.append``);
#: must not block for long
Sink = Callable[[InFlight], None]

INBOUND = Direction.INBOUND
OUTBOUND = Direction.OUTBOUND


def max_frame_size() -> int:
    """The largest frame either side may send: max_pages_limit pages plus headers."""
    pages = 256
    try:
        with open("/proc/sys/fs/fuse/max_pages_limit") as f:
            pages = max(pages, int(f.read().strip()))
    except (OSError, ValueError):
        pass
    return pages * 4096 + 4096


#: frames at least this long are handed on in the buffer they were received into, when
#: one is free for the next frame (smaller ones are copied: cheaper than a buffer each)
LEND_MIN = 32 << 10
#: receive buffers per direction, at most: with all of them lent, frames are copied
LEND_LIMIT = 64


class FrameBuffers:
    """Receive buffers for large frames, lent to the capture writer instead of copied.

    A large frame (a 1 MiB WRITE, a READ reply) is forwarded from the buffer it was read
    into and handed to the sink as a memoryview of that buffer; the forwarding thread reads
    the next frame into another buffer. The consumer gives the buffer back with
    :meth:`give` once it wrote the frame out. Each direction has its own buffers: only its
    forwarding thread takes them, and it is done sending a frame before it takes the next
    buffer, so a buffer given back early is never overwritten while it is still being
    forwarded. Buffers are allocated once (up to ``limit`` per direction) and reused, so
    large frames cost neither a copy nor freshly faulted-in memory. They are anonymous
    mappings, so a lent frame starts on a page boundary: the capture writer can hand its
    whole pages to direct I/O as they are (see ``proxy.output.CaptureOutput``).
    """

    def __init__(self, size: int, limit: int = LEND_LIMIT) -> None:
        self.size = size
        self.limit = limit
        self._free: dict[Direction, collections.deque[mmap.mmap]] = {
            d: collections.deque() for d in (INBOUND, OUTBOUND)
        }
        #: written by the direction's forwarding thread only
        self._made: dict[Direction, int] = dict.fromkeys((INBOUND, OUTBOUND), 0)

    def new(self) -> mmap.mmap:
        """A page-aligned receive buffer of :attr:`size` bytes."""
        return mmap.mmap(-1, self.size)

    def take(self, direction: Direction) -> mmap.mmap | None:
        """A free buffer for ``direction``'s next frame; None when all are lent."""
        try:
            return self._free[direction].pop()
        except IndexError:
            pass
        if self._made[direction] >= self.limit:
            return None
        self._made[direction] += 1
        return self.new()

    def give(self, direction: Direction, frame: memoryview) -> None:
        """Take back the buffer under ``frame`` (a view :meth:`take`'s buffer lent out)."""
        buf = frame.obj  # (the view itself may still be in a send() of its thread)
        if isinstance(buf, mmap.mmap) and len(buf) == self.size:
            self._free[direction].append(buf)


@dataclass
class Ending:
    """Why forwarding stopped: the first of these to happen wins."""

    #: "unmounted" (the device said ENODEV), "daemon closed" (EOF on the socket),
    #: or what the session set: "interrupted", "timeout", "capture failed"
    reason: str
    detail: str = ""


@dataclass
class Stats:
    inbound: int = 0
    outbound: int = 0
    #: replies the kernel refused: errno name → count (ENOENT: the request was gone)
    refused: dict[str, int] = field(default_factory=dict)
    #: replies that arrived in several messages (spliced by the daemon) and were joined
    joined: int = 0
    #: daemon → kernel frames written through :meth:`Forwarder.deliver`
    synchronous: int = 0
    init_comment_in: str | None = None
    init_comment_out: str | None = None
    #: negotiated, from the INIT reply
    proto: tuple[int, int] | None = None
    max_write: int | None = None


class Forwarder:
    """Moves frames between the device fd and the proxy's end of the socketpair."""

    def __init__(
        self,
        devfd: int,
        sock: socket.socket,
        sink: Sink,
        *,
        bufsize: int | None = None,
        track_outstanding: bool = False,
        on_end: Callable[[Ending], None] | None = None,
        buffers: FrameBuffers | None = None,
    ) -> None:
        self.devfd = devfd
        self.sock = sock
        self.sink = sink
        self.bufsize = bufsize or max_frame_size()
        #: with buffers, large frames reach the sink as lent memoryviews (see FrameBuffers)
        self.buffers = buffers
        if buffers is not None and buffers.size < self.bufsize + 1:
            raise ValueError("frame buffers smaller than the largest frame")
        self.stats = Stats()
        self.ending: Ending | None = None
        self.ended = threading.Event()
        self.init_answered = threading.Event()
        self._on_end = on_end
        self._lock = threading.Lock()
        self._init_unique: int | None = None
        #: unique → t_ns of requests awaiting a reply (only with track_outstanding)
        self.outstanding: dict[int, int] | None = {} if track_outstanding else None
        self._threads = [
            threading.Thread(target=self._kernel_to_daemon, name="fuse-k2d", daemon=True),
            threading.Thread(target=self._daemon_to_kernel, name="fuse-d2k", daemon=True),
        ]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for both threads; True when they have finished."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def end(self, reason: str, detail: str = "") -> None:
        """Record why the session ends (first caller wins) and wake whoever waits."""
        with self._lock:
            if self.ending is not None:
                return
            self.ending = Ending(reason, detail)
        self.ended.set()
        if self._on_end is not None:
            self._on_end(self.ending)

    def close_daemon_side(self) -> None:
        """Give the daemon end of file on its socket; ends the daemon → kernel loop."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def oldest_outstanding(self) -> int | None:
        """t_ns of the oldest request still waiting for its reply (with tracking)."""
        pending = self.outstanding
        if not pending:
            return None
        try:
            return min(pending.values())
        except ValueError:  # emptied meanwhile
            return None

    # ---- kernel → daemon ----------------------------------------------------------------
    def _first_request(self, data: bytes) -> bytes:
        """The INIT request: keep the daemon from asking for what a socket cannot carry."""
        _length, opcode = wire.IN_LEN_OPCODE.unpack_from(data)
        if opcode != wire.OP_INIT or len(data) < wire.INIT_IN_FLAGS2 + 4:
            return data
        self._init_unique = wire.IN_HEADER.unpack_from(data)[2]
        out, flags2, unsafe = wire.without_unsafe_flags2(
            data, wire.INIT_IN_FLAGS, wire.INIT_IN_FLAGS2
        )
        if unsafe:
            self.stats.init_comment_in = (
                f"fusetrace: the daemon was sent flags2 {flags2 & ~unsafe:#x}, without "
                f"{wire.flag2_names(unsafe)} (a daemon behind a socket cannot use them)"
            )
        return out

    def _kernel_to_daemon(self) -> None:
        fd = self.devfd
        send = self.sock.send
        sink = self.sink
        now = time.time_ns
        pending = self.outstanding
        no_reply = wire.NO_REPLY_OPCODES
        header = wire.IN_HEADER.unpack_from
        # without frame buffers nothing is lent: every frame is copied
        buffers = self.buffers or FrameBuffers(self.bufsize, limit=0)
        take = buffers.take
        first = True
        buf = buffers.new()
        view = memoryview(buf)
        readv = os.readv
        bufs = [buf]
        n = 0
        try:
            while True:
                try:
                    got = readv(fd, bufs)
                except OSError as e:
                    if e.errno in (errno.ENODEV, errno.ECONNABORTED):
                        self.end("unmounted")
                    elif e.errno == errno.ENOENT:  # interrupted before we read it
                        continue
                    else:
                        self.end("device error", f"reading /dev/fuse: {e.strerror}")
                    return
                if not got:  # never from /dev/fuse; a test double's end of file
                    self.end("unmounted")
                    return
                t = now()
                data: bytes | memoryview
                if got >= LEND_MIN and (spare := take(INBOUND)) is not None:
                    # the frame stays where it is, lent to the sink; read on into the spare
                    data = view[:got]
                    buf = spare
                    view = memoryview(buf)
                    bufs = [buf]
                else:
                    data = bytes(view[:got])
                forwarded: bytes | memoryview
                if first:
                    first = False
                    forwarded = self._first_request(bytes(data))
                    sink((INBOUND, t, data, self.stats.init_comment_in, None))
                else:
                    forwarded = data
                    sink((INBOUND, t, data, None, None))
                n += 1
                if pending is not None:
                    _len, opcode, unique = header(data)[:3]
                    if opcode not in no_reply:
                        pending[unique] = t
                try:
                    send(forwarded)
                except OSError as e:
                    # EPIPE / ECONNRESET: the daemon closed its end
                    self.end("daemon closed", f"sending to the daemon: {e.strerror}")
                    return
        finally:
            self.stats.inbound = n

    # ---- daemon → kernel ----------------------------------------------------------------
    def _init_reply(self, data: bytes) -> bytes:
        """The daemon's INIT reply: clear what the kernel must not turn on; learn limits."""
        self.init_answered.set()
        if len(data) >= wire.INIT_OUT_MINOR + 4:
            major, minor = wire.IN_LEN_OPCODE.unpack_from(data, wire.INIT_OUT_MAJOR)
            self.stats.proto = (major, minor)
        if len(data) >= wire.INIT_OUT_MAX_WRITE + 4:
            self.stats.max_write = wire.U32.unpack_from(data, wire.INIT_OUT_MAX_WRITE)[0]
        if len(data) < wire.INIT_OUT_FLAGS2 + 4:
            return data
        out, flags2, unsafe = wire.without_unsafe_flags2(
            data, wire.INIT_OUT_FLAGS, wire.INIT_OUT_FLAGS2
        )
        if unsafe:
            self.stats.init_comment_out = (
                f"fusetrace: the daemon replied with flags2 {flags2:#x}; "
                f"{wire.flag2_names(unsafe)} cleared before the kernel saw it"
            )
        return out

    def deliver(self, data: bytes) -> int:
        """One daemon → kernel frame written from outside the socket loop (the seccomp
        hand-off's synchronous writes): captured, written to /dev/fuse, and the kernel's
        answer returned: 0, or the errno it refused the frame with."""
        t = time.time_ns()
        comment = None
        unique = 0
        if len(data) >= 16:
            unique = wire.OUT_HEADER.unpack_from(data)[2]
        if unique and unique == self._init_unique and not self.init_answered.is_set():
            data = self._init_reply(bytes(data))
            comment = self.stats.init_comment_out
        item = [OUTBOUND, t, data, comment, PENDING]
        self.sink(item)
        self.stats.synchronous += 1  # (one caller: the seccomp thread)
        pending = self.outstanding
        if pending is not None and unique:
            pending.pop(unique & ~wire.INT_REQ_BIT, None)
        try:
            os.write(self.devfd, data)
        except OSError as e:
            err = e.errno or errno.EIO
            item[RESULT] = err
            if err in (errno.ENODEV, errno.ECONNABORTED):
                self.end("unmounted")
            else:
                name = errno_name(err)
                self.stats.refused[name] = self.stats.refused.get(name, 0) + 1
            return err
        item[RESULT] = 0
        return 0

    def _daemon_to_kernel(self) -> None:
        recv_into = self.sock.recv_into
        # one byte more than any frame may have: a message that fills it was cut short
        size = self.bufsize + 1
        # without frame buffers nothing is lent: every frame is copied
        buffers = self.buffers or FrameBuffers(size, limit=0)
        take = buffers.take
        buf = buffers.new()
        view = memoryview(buf)
        write = os.write
        fd = self.devfd
        sink = self.sink
        now = time.time_ns
        pending = self.outstanding
        out_header = wire.OUT_HEADER.unpack_from
        refused = self.stats.refused
        slot = RESULT  # (a local: the loop stores every reply's result)
        init_pending = True
        n = 0
        try:
            while True:
                try:
                    got = recv_into(view, size)
                except OSError as e:
                    self.end("daemon closed", f"receiving from the daemon: {e.strerror}")
                    return
                if not got:
                    self.end("daemon closed")
                    return
                t = now()
                comment = None
                if got < 16:
                    # too short even for a header: pass it on, the kernel will refuse it
                    unique = 0
                else:
                    length, _error, unique = out_header(buf)
                    if length > got and got < size:
                        got = self._reassemble(view[:size], got, length)
                        if got < 0:
                            return
                if got >= size:
                    got = size - 1
                    comment = f"fusetrace: cut to {got} bytes, the daemon sent more"
                data: bytes | memoryview
                if init_pending and unique == self._init_unique and unique:
                    init_pending = False
                    data = self._init_reply(bytes(view[:got]))
                    comment = self.stats.init_comment_out
                elif got >= LEND_MIN and (spare := take(OUTBOUND)) is not None:
                    # the frame stays where it is, lent to the sink; receive into the spare
                    data = view[:got]
                    buf = spare
                    view = memoryview(buf)
                else:
                    data = bytes(view[:got])
                item = [OUTBOUND, t, data, comment, PENDING]
                sink(item)
                n += 1
                if pending is not None and unique:
                    pending.pop(unique & ~wire.INT_REQ_BIT, None)
                try:
                    write(fd, data)
                    item[slot] = 0
                except OSError as e:
                    item[slot] = e.errno or errno.EIO
                    if e.errno in (errno.ENODEV, errno.ECONNABORTED):
                        self.end("unmounted")
                        return
                    name = errno_name(e.errno or 0)
                    refused[name] = refused.get(name, 0) + 1
        finally:
            self.stats.outbound = n

    def _reassemble(self, view: memoryview, have: int, length: int) -> int:
        """A reply longer than one message: a daemon that splices a reply into the socket
        sends it in pieces of up to 16 pipe buffers each (the kernel's splice to a socket
        makes one message of each batch). libfuse splices large READ replies whenever the
        filesystem asks for FUSE_CAP_SPLICE_WRITE (fuse-overlayfs does), whatever the
        kernel's INIT offer says: it only checks for protocol 7.14 or later. Read on into
        ``view`` until ``length`` bytes are there; returns the bytes held, or -1 when the
        daemon went away.

        Pieces carry no header, so two daemon threads splicing at the very same moment
        could interleave theirs; the kernel would then refuse a garbled frame (counted in
        ``refused``, flagged by the tracker). Concurrent reads through fuse-overlayfs
        (tests/proxy/test_forward.py) have not shown it."""
        self.stats.joined += 1
        recv_into = self.sock.recv_into
        end = min(length, len(view) - 1)
        while have < end:
            try:
                more = recv_into(view[have:])
            except OSError as e:
                self.end("daemon closed", f"receiving from the daemon: {e.strerror}")
                return -1
            if not more:
                self.end("daemon closed", "the daemon closed its socket inside a reply")
                return -1
            have += more
        return have
