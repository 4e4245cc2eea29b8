"""The compiled forwarding core: the loops of :class:`~fusetrace.proxy.forward.Forwarder`
without the interpreter lock.

In Python, every frame crosses the interpreter three times (the forwarding thread that
reads it, the one that forwards the answer, the capture thread), and the three share one
lock: on a fast daemon that is most of what recording costs. ``fusetrace/proxy/_core.c``
runs the two loops in C and hands the frames to the capture thread through a ring, which
the capture thread empties every few milliseconds in one call. Only the INIT pair comes
back to Python (the rewriting in forward.py), once per mount.

The core is built at install time when a C compiler is there. ``FUSETRACE_FORWARD``
chooses: ``auto`` (the default: the core when it is built), ``c`` (the core, or an error),
``python`` (the Python loops of forward.py, always there).
"""

from __future__ import annotations

import inspect
import mmap
import os
import socket
import sys
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

from fusetrace.capture.pcapng import CaptureWriter
from fusetrace.frame import Direction, InFlight
from fusetrace.protocol.abi import errno_name
from fusetrace.proxy import choice, wire
from fusetrace.proxy.choice import CHOICES as CHOICES
from fusetrace.proxy.choice import ENV as ENV
from fusetrace.proxy.forward import (
    INBOUND,
    LEND_LIMIT,
    LEND_MIN,
    OUTBOUND,
    Ending,
    Forwarder,
    FrameBuffers,
)

_core: ModuleType | None
try:
    from fusetrace.proxy import _core  # type: ignore[attr-defined,no-redef,unused-ignore]
except ImportError:  # installed without a C compiler
    _core = None

#: slots in the ring: frames handed over and not yet taken by the capture thread
RING_SLOTS = 1 << 14
#: bytes for the copies of small frames in the ring (large frames are lent, not copied)
RING_ARENA = 16 << 20

#: set to 0: the core hands over frames only, never packet blocks it encoded (to measure
#: what encoding in C saves; see bench/bench_record.py)
BLOCKS_ENV = "FUSETRACE_CORE_BLOCKS"
#: set to 0: the core never writes the capture itself (:meth:`CoreForwarder.write`), the
#: capture thread writes everything it takes (to measure what writing in C saves)
WRITE_ENV = "FUSETRACE_CORE_WRITE"
#: set to 0: the loops never write large frames to a pipe, socket or device themselves
#: (:meth:`CoreForwarder.pump` with ``inline``), the capture thread writes them (to measure
#: what the loops' writes save)
INLINE_ENV = "FUSETRACE_CORE_INLINE"

#: what :meth:`CoreForwarder.take` gives: in-flight frames (tuples, with their result:
#: the core hands a reply over once its write returned), and (asked for) runs of whole
#: packet blocks, each run one bytes object
Taken = list["InFlight | bytes"]


class Source(Protocol):
    """Where the capture thread takes frames from (a :class:`CoreForwarder`)."""

    def take(self, final: bool = False, blocks: bool = False) -> Taken: ...

    def encoded(self) -> int: ...

    def write(
        self, fd: int, pos: int = -1, limit: int = 0
    ) -> tuple[int, int, int | None, bool]: ...


@runtime_checkable
class Waker(Source, Protocol):
    """A source the capture thread pauses on between drains, and that can write while it
    pauses (a :class:`CoreForwarder`)."""

    def wait(self, timeout: float) -> bool: ...

    def wake(self) -> None: ...

    def pump(
        self, fd: int, pos: int, limit: int, interval: float, inline: bool = False
    ) -> tuple[int, int, int | None, bool]: ...

    def lend_wake(self, nbytes: int) -> None: ...


def available() -> bool:
    """True when the compiled core was built with this installation."""
    return _core is not None


def choose(env: Mapping[str, str] = os.environ) -> str:
    """``c`` or ``python``, as ``FUSETRACE_FORWARD`` asks (see :mod:`fusetrace.proxy.choice`)."""
    return choice.choose(env, available())


class CoreBuffers(FrameBuffers):
    """The core's receive buffers: page-aligned mappings as in :class:`FrameBuffers`, all
    made at once (untouched pages cost nothing) and handed to the core; :meth:`give` hands
    one back to it once the capture thread wrote the frame lent in it."""

    def __init__(self, size: int, limit: int = LEND_LIMIT) -> None:
        super().__init__(size, limit)
        # per direction: the one being read into and `limit` to lend
        self.maps = [self.new() for _ in range(2 * (limit + 1))]
        self._index = {id(m): i for i, m in enumerate(self.maps)}
        self.give_back: Callable[[int], None] | None = None

    def take(self, direction: Direction) -> mmap.mmap | None:
        raise NotImplementedError("the core takes its buffers itself")

    def give(self, direction: Direction, frame: memoryview) -> None:
        i = self._index.get(id(frame.obj))
        if i is not None and self.give_back is not None:
            self.give_back(i)


def _no_sink(_frame: object) -> None:
    raise AssertionError("the core hands frames over through its ring")


class CoreForwarder(Forwarder):
    """A :class:`Forwarder` whose loops run in the compiled core.

    Frames do not go to a sink: the capture thread calls :meth:`take` (and gives lent
    buffers back through :attr:`buffers`). The endings, the statistics, the INIT rewriting
    and the outstanding requests (tracked as frames are taken) are those of the Python
    loops."""

    def __init__(
        self,
        devfd: int,
        sock: socket.socket,
        *,
        bufsize: int | None = None,
        track_outstanding: bool = False,
        on_end: Callable[[Ending], None] | None = None,
        lend_limit: int = LEND_LIMIT,
        slots: int = RING_SLOTS,
        arena: int = RING_ARENA,
    ) -> None:
        if _core is None:
            raise RuntimeError("the compiled forwarding core is not built")
        super().__init__(
            devfd, sock, _no_sink, bufsize=bufsize, track_outstanding=track_outstanding,
            on_end=on_end,
        )  # fmt: skip
        # one byte more than any frame may have: a message that fills it was cut short
        self.core_buffers = CoreBuffers(self.bufsize + 1, lend_limit)
        self.buffers = self.core_buffers
        self._core: Any = _core.Core(
            devfd,
            sock.fileno(),
            self.core_buffers.maps,
            (INBOUND, OUTBOUND),
            self._on_request,
            self._on_init_reply,
            LEND_MIN,
            slots,
            max(arena, 4 * (self.bufsize + 1)),
        )
        self.core_buffers.give_back = self._core.give
        self._writes = os.environ.get(WRITE_ENV, "1") != "0"
        self._inline = os.environ.get(INLINE_ENV, "1") != "0"
        #: how often a loop waited for room in the ring (the capture thread lagged)
        self.ring_waits = 0

    # called by the core, with the interpreter lock, for the INIT pair only
    def _on_request(self, data: bytes) -> tuple[bytes, str | None, int]:
        out = self._first_request(data)
        return out, self.stats.init_comment_in, self._init_unique or 0

    def _on_init_reply(self, data: bytes) -> tuple[bytes, str | None]:
        out = self._init_reply(data)
        return out, self.stats.init_comment_out

    def _kernel_to_daemon(self) -> None:
        self._run(self._core.run_k2d)

    def _daemon_to_kernel(self) -> None:
        self._run(self._core.run_d2k)

    def _run(self, loop: Callable[[], tuple[str, str]]) -> None:
        try:
            reason, detail = loop()
        finally:
            self.collect_stats()
        self.end(reason, detail)

    def collect_stats(self) -> None:
        """Copy the core's counters into :attr:`stats` (done as each loop ends)."""
        counts = self._core.stats()
        self.stats.inbound = counts["inbound"]
        self.stats.outbound = counts["outbound"]
        self.stats.joined = counts["joined"]
        self.stats.refused = {errno_name(e): n for e, n in sorted(counts["refused"].items())}
        self.ring_waits = counts["waits"]

    def end(self, reason: str, detail: str = "") -> None:
        if reason == "capture failed":
            # nobody takes frames any more: the loops must not wait for room in the ring
            self._core.discard()
        super().end(reason, detail)

    def encode_blocks(self, writer: CaptureWriter) -> bool:
        """Let the core hand over small plain frames (no comment; a reply the kernel took)
        as whole Enhanced Packet Blocks laid out as ``writer.block`` lays them out, with the
        options ``writer`` gives such a frame: the capture thread then only writes them.
        Not when requests are tracked (``--daemon-timeout``: :meth:`take` reads frames),
        nor for a capture in the other byte order. True when it does."""
        host = "<" if sys.byteorder == "little" else ">"
        if self.outstanding is not None or writer.order != host:
            return False
        if os.environ.get(BLOCKS_ENV, "1") == "0":
            return False
        # a block of an empty frame of each kind: the block type and the options
        accepted: dict[str, Any] = (
            {"result": 0} if "result" in inspect.signature(writer.block).parameters else {}
        )
        counted = writer.frames
        head, _empty, tail_in = writer.block(INBOUND, 0, b"")
        _head, _empty, tail_out = writer.block(OUTBOUND, 0, b"", **accepted)
        writer.frames = counted
        self._core.set_blocks(bytes(head[:4]), tail_in[:-4], tail_out[:-4], writer.snaplen or 0)
        return True

    def take(self, final: bool = False, blocks: bool = False) -> Taken:
        """The frames handed over since the last call, in the order they crossed
        /dev/fuse. A reply is handed over once its write returned, with its result; with
        ``final`` (the loops have ended) whatever is left. With ``blocks`` (and
        :meth:`encode_blocks`), small plain frames come as their packet blocks, each run
        of them one bytes object (:meth:`encoded` counts the frames). One caller at a
        time."""
        items: Taken = self._core.take(final, blocks)
        pending = self.outstanding
        if pending is not None:
            header = wire.IN_HEADER.unpack_from
            no_reply = wire.NO_REPLY_OPCODES
            for item in items:
                if isinstance(item, bytes):  # (not while tracking: see encode_blocks)
                    continue
                direction, t, data, _comment, _result = item
                if len(data) < wire.OUT_HEADER_LEN:
                    continue
                if direction is INBOUND:
                    if len(data) >= wire.IN_HEADER_LEN:
                        _len, opcode, unique = header(data)[:3]
                        if opcode not in no_reply:
                            pending[unique] = t
                else:
                    unique = wire.OUT_HEADER.unpack_from(data)[2]
                    if unique:
                        pending.pop(unique & ~wire.INT_REQ_BIT, None)
        return items

    def write(self, fd: int, pos: int = -1, limit: int = 0) -> tuple[int, int, int | None, bool]:
        """Write the plain frames ready at the head of the ring (those :meth:`take` would
        hand over as packet blocks, and large lent frames too) to ``fd`` as their packet
        blocks, in C and without the interpreter lock: with writev() (``pos`` -1) or
        pwritev() at ``pos``, whole blocks in each call; their lent buffers go straight
        back to the loops. Stops at the first frame that is not ready or that needs the
        writer (a comment, a cut frame, a refused reply), which :meth:`take` then hands
        over. With ``pos`` and ``limit``, writes nothing when the frames ready come to
        ``limit`` bytes or more. Only after :meth:`encode_blocks` said yes (else writes
        nothing). Returns (frames, bytes written, errno of a failed write or None, whether
        :meth:`take` has frames to hand over now); the frames count in :meth:`encoded`. A
        reply whose write to /dev/fuse has not returned yet waits for the next call."""
        if not self._writes:
            return 0, 0, None, True
        frames, written, err, left = self._core.write(fd, pos, limit)
        return frames, written, err, bool(left)

    def wait(self, timeout: float) -> bool:
        """The capture thread's pause between drains: ``timeout`` seconds without the
        interpreter lock, in C (a Python ``Event.wait`` costs as much CPU again as the pause
        itself); True when :meth:`wake` ended it early, or a loop that found the ring full."""
        woken: bool = self._core.wait(timeout)
        return woken

    def wake(self) -> None:
        """End the capture thread's :meth:`wait` or :meth:`pump` now (or its next one)."""
        self._core.wake()

    def pump(
        self, fd: int, pos: int, limit: int, interval: float, inline: bool = False
    ) -> tuple[int, int, int | None, bool]:
        """:meth:`wait` and :meth:`write` in turn, in C, until :meth:`take` has frames to
        hand over, a write fails, or :meth:`wake` is called: the capture thread's loop
        while the frames are plain ones, which it would otherwise come back to Python for
        every ``interval`` seconds (that costs more than the writing). After a pause in
        which no frame came, it sleeps until the next one comes, and pauses from then on
        (an idle recorder does not wake). Returns what :meth:`write` returns, for the whole
        call. Without writes in C, one :meth:`wait`.

        With ``inline`` (``fd`` a pipe, socket or character device, ``pos`` -1), a loop
        that has just forwarded a large frame writes the frames ready itself meanwhile,
        with writes that never wait (``RWF_NOWAIT``; a full pipe leaves them to this
        thread, and the rest of a short write goes out before anything else): its receive
        buffer comes back at once, and this thread need not wake for it. The frames they
        write count in :meth:`encoded`, not in what this returns."""
        if not self._writes:
            self.wait(interval)
            return 0, 0, None, True
        inline = inline and self._inline
        frames, written, err, left = self._core.pump(fd, pos, limit, interval, inline)
        return frames, written, err, bool(left)

    def lend_wake(self, nbytes: int) -> None:
        """How many bytes of large frames a loop lends before it wakes the capture thread
        (a megabyte unless told; 0: only once it has lent half its buffers, beyond which
        frames would soon be copied into the ring). Waking it gives the buffers back while
        they are still in the caches; a capture written with direct I/O wants its writes
        large instead."""
        self._core.set_lend_wake(nbytes)

    def encoded(self) -> int:
        """How many frames :meth:`take` (or :meth:`write`) has handed over as packet
        blocks so far."""
        n: int = self._core.encoded()
        return n

    def handed(self) -> int:
        """How many frames the loops have handed over so far, taken or not."""
        n: int = self._core.handed()
        return n
