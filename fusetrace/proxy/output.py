"""The capture output: captured frames into pcapng blocks and onto the file, off the
forwarding path.

The forwarding threads hand every frame to a :class:`CaptureThread` (a deque append, or the
compiled core's ring); the thread turns what arrived into pcapng blocks every
:data:`FLUSH_INTERVAL` and writes them with :class:`CaptureOutput`: writev() to a pipe,
explicit offsets to a file, with O_DIRECT for large drains.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import fcntl
import inspect
import itertools
import mmap
import os
import stat
import threading
from collections.abc import Callable, Collection
from typing import BinaryIO

from fusetrace.capture.pcapng import BlockEncoder, CaptureWriter
from fusetrace.frame import PENDING, Direction, Frame, InFlight, landed
from fusetrace.proxy import core
from fusetrace.proxy.forward import FrameBuffers

#: how often the capture thread writes what the forwarding threads handed it (design.md
#: §4: a killed recorder loses at most the frames of the last interval)
FLUSH_INTERVAL = 0.005


#: one pcapng block as the parts to write one after the other
Block = tuple["bytes | memoryview", ...]


class _Blocks:
    """A file-like sink collecting the writer's own blocks (section and interface headers)."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []

    def write(self, data: bytes) -> int:
        self.blocks.append((data,))
        return len(data)

    def flush(self) -> None:
        pass


IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024


def writev_all(fd: int, blocks: list[Block], iov_max: int = IOV_MAX, pos: int | None = None) -> int:
    """Write every block, in order, with as few writev() calls as the kernel allows (at
    ``pos`` with pwritev() when given). A call carries whole blocks only (unless one block
    alone has more parts than ``iov_max``); when a pipe takes part of a call, the rest
    follows before anything else. Returns the bytes written."""
    i = 0
    written = 0
    while i < len(blocks):
        parts: list[bytes | memoryview] = list(blocks[i])
        i += 1
        while i < len(blocks) and len(parts) + len(blocks[i]) <= iov_max:
            parts.extend(blocks[i])
            i += 1
        while parts:
            call = parts[:iov_max]
            done = os.writev(fd, call) if pos is None else os.pwritev(fd, call, pos + written)
            written += done
            if len(call) == len(parts) and done == sum(map(len, call)):
                break  # all of it, as nearly always
            k = 0
            while k < len(parts) and done >= len(parts[k]):
                done -= len(parts[k])
                k += 1
            del parts[:k]
            if done:
                parts[0] = parts[0][done:]
    return written


def pwrite_all(fd: int, data: bytes | memoryview, pos: int) -> None:
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view, pos)
        if not done:
            raise OSError(errno.EIO, "no progress writing the capture")
        view = view[done:]
        pos += done


def pwritev_all(fd: int, parts: list[memoryview], pos: int) -> int:
    """pwritev() every part at ``pos``, going on after a short write; the bytes written."""
    total = sum(map(len, parts))
    done = os.pwritev(fd, parts, pos)
    if done < total:  # rare (a full disk is an error of its own): the rest, part by part
        rest = b"".join(bytes(p) for p in parts)[done:]
        pwrite_all(fd, rest, pos + done)
    return total


#: the page size direct writes are aligned to (a multiple of any logical block size)
PAGE = 4096
#: a drain at least this large goes to a capture file with O_DIRECT
DIRECT_MIN = 256 << 10
#: the buffer direct writes are gathered in
DIRECT_STAGE = 8 << 20
#: a frame at least this long, lent in its receive buffer, is written from there
DIRECT_FRAME_MIN = 32 << 10


def _lent_large(block: Block) -> memoryview | None:
    """The data of ``block``, a frame's (head, data, tail), where it is lent in a
    page-aligned receive buffer and long enough to go to the file with direct I/O from
    there; else None."""
    if len(block) != 3:
        return None
    data = block[1]
    if type(data) is not memoryview or len(data) < DIRECT_FRAME_MIN:
        return None
    return data if isinstance(data.obj, mmap.mmap) else None


class CaptureOutput:
    """The capture file (or pipe) seen from the capture thread.

    A pipe, or a file fusetrace did not start at offset 0, is written with writev() as it
    comes. A capture file is written at explicit offsets, and large drains (a 1 MiB WRITE
    or READ stream) bypass the page cache: they are written with O_DIRECT through a second
    descriptor, small blocks gathered in an aligned buffer, large frames straight from the
    receive buffers they were lent in (see :meth:`_write_direct`). Copying gigabytes into
    freshly allocated page cache costs more CPU than the whole forwarding path (see
    bench/bench_record.py), and the page cache would only have to write it out again. The
    last, partial unit of every drain is written through the page cache, so the file is
    whole after every drain; the next direct write reads it back and rewrites it with the
    same bytes (the kernel writes the cached page back and drops it first).

    ``encoder`` made the blocks (it grows one by a padding option where a frame written
    from its receive buffer must start on an alignment unit).
    """

    def __init__(self, fd: int, encoder: BlockEncoder | None = None) -> None:
        self.fd = fd
        self.pos: int | None = None  # None: a stream, written with writev()
        self._dfd: int | None = None
        self._rfd: int | None = None
        #: what direct writes are aligned to: the usual logical block size, or a page
        #: where the file's device wants more (learnt from a write that failed)
        self._unit = 512
        self._encoder = encoder or BlockEncoder()
        self._stage: mmap.mmap | None = None
        #: a pipe, a socket or a device: written without waiting by the loops that forward
        #: large frames, while the core pumps (see ``CoreForwarder.pump``)
        self.inline = False
        try:
            st = os.fstat(fd)
            mode = st.st_mode
            self.inline = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)
            if not stat.S_ISREG(mode) or fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND:
                return
            self.pos = os.lseek(fd, 0, os.SEEK_CUR)
        except OSError:
            return
        if self.pos == 0 and hasattr(os, "O_DIRECT"):
            path = f"/proc/self/fd/{fd}"
            try:
                self._dfd = os.open(path, os.O_WRONLY | os.O_DIRECT | os.O_CLOEXEC)
                # to read back the last partial unit, which a direct write rewrites
                self._rfd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:  # a filesystem without direct I/O: the page cache it is
                self._stop_direct()

    def write(self, blocks: list[Block], runs: Collection[int] = ()) -> None:
        """Write whole blocks, in order. ``runs``: the ids of the parts that hold a run of
        several Enhanced Packet Blocks (as the compiled core hands them over); every other
        one-part block is one block."""
        if self.pos is None:
            writev_all(self.fd, blocks)
            return
        total = sum(map(len, itertools.chain.from_iterable(blocks)))
        if self._dfd is not None and total >= DIRECT_MIN:
            try:
                self._write_direct(blocks, runs)
                return
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
                # not aligned enough for this file's device, or no direct I/O at all: this
                # drain again through the cache (over whatever the direct writes left)
                if self._unit < PAGE:
                    self._unit = PAGE
                else:
                    self._stop_direct()
                redo = True
        else:
            redo = False
        start = self.pos
        self.pos += writev_all(self.fd, blocks, pos=start)
        if redo:  # the direct writes may have gone past the end (padding)
            os.ftruncate(self.fd, self.pos)

    @property
    def direct(self) -> bool:
        """Whether large drains go to the file with direct I/O."""
        return self._dfd is not None

    def write_from(self, source: core.Source) -> bool:
        """Let ``source`` (the compiled core) write the plain frames ready at the head of
        its ring itself, without the interpreter lock (``Core.write``): to a stream at the
        descriptor's offset, to a file at :attr:`pos`, but not frames enough for a direct
        write (``DIRECT_MIN``), which :meth:`write` writes when they are taken. True when
        the source has frames left to take now."""
        return self._written(source.write(self.fd, *self._where()))

    def pump_from(self, source: core.Waker, interval: float) -> bool:
        """:meth:`write_from` every ``interval`` seconds (and when the ring fills), in C,
        until the source has frames to take or is woken (``Core.pump``); to a pipe, socket
        or device the loops write large frames themselves meanwhile."""
        return self._written(source.pump(self.fd, *self._where(), interval, self.inline))

    def _where(self) -> tuple[int, int]:
        """Where the source writes: (-1, 0) for a stream; for a file, :attr:`pos` and the
        bytes of ready frames that a direct write takes instead (0: no direct writes)."""
        if self.pos is None:
            return -1, 0
        return self.pos, DIRECT_MIN if self._dfd is not None else 0

    def _written(self, done: tuple[int, int, int | None, bool]) -> bool:
        _frames, written, err, left = done
        if self.pos is not None:
            self.pos += written
        if err is not None:
            raise OSError(err, os.strerror(err))
        return left

    def _write_direct(self, blocks: list[Block], runs: Collection[int]) -> None:
        """Write ``blocks`` at ``pos`` with O_DIRECT, but for the last partial unit.

        Everything is gathered in the aligned stage, except the packet data of a large
        frame lent in its page-aligned receive buffer (see ``FrameBuffers``): the block
        before it gets a padding option (a local-use code, which readers skip) so that the
        frame's data starts on an alignment unit in the file, and its whole units are
        written from the receive buffer itself. Where that block is another such frame's,
        it was grown before its header went out. Only a frame's last partial unit, its
        trailer and the small blocks around are copied; a large frame is copied whole only
        where it is the drain's first block and its data would not start on a unit."""
        assert self._dfd is not None and self._rfd is not None and self.pos is not None
        if self._stage is None:
            self._stage = mmap.mmap(-1, DIRECT_STAGE)  # page aligned, as O_DIRECT wants
        stage = self._stage
        size = len(stage)
        unit = self._unit
        dfd = self._dfd
        keep = self.pos % unit
        base = self.pos - keep
        start = base
        # the last partial unit, written through the page cache by the drain before
        first = os.pread(self._rfd, keep, base) if keep else b""
        if len(first) != keep:
            raise OSError(errno.EIO, "the capture file is shorter than written")
        fill = 0  # the stage is used from its start; [seg, fill) is the open segment
        seg = 0
        fpos = base  # the file offset of stage[fill]
        iov: list[memoryview] = []
        view = memoryview(stage)

        def flush() -> None:
            nonlocal start
            if iov:
                start += pwritev_all(dfd, iov, start)
                iov.clear()

        def put(*parts: bytes | memoryview) -> None:
            nonlocal fill, seg, fpos
            for part in parts:
                src = memoryview(part)
                off, n = 0, len(src)
                while off < n:
                    k = min(n - off, size - fill)
                    stage[fill : fill + k] = src[off : off + k]
                    fill += k
                    off += k
                    fpos += k
                    if fill == size:  # the stage is full: out with everything gathered
                        iov.append(view[seg:fill])
                        flush()
                        fill = seg = 0

        put(first)
        pending: Block | None = None
        last = len(blocks) - 1
        for i, block in enumerate(blocks):
            data = _lent_large(block)
            if data is not None:
                head = block[0]
                pad = -(fpos + sum(map(len, pending or ())) + len(head)) % unit
                padded = (pending or ()) if not pad else self._padded(pending, pad, runs)
                if padded is not None:
                    after = blocks[i + 1] if i < last else None
                    if after is not None and _lent_large(after) is not None:
                        # the next frame follows at once, with no block of its own before
                        # it to pad: this one grows so that the next one's data starts on
                        # a unit too (its own data starts on one)
                        grow = -(len(block[1]) + len(block[2]) + len(after[0])) % unit
                        if grow:
                            block = self._encoder.padded(block, grow)
                            head = block[0]
                    put(*padded, head)
                    whole = len(data) - len(data) % unit
                    iov.append(view[seg:fill])
                    iov.append(data[:whole])
                    fpos += whole
                    seg = fill
                    if len(iov) >= IOV_MAX - 2:
                        flush()
                    put(data[whole:], block[2])
                    pending = None
                    continue
            put(*(pending or ()))
            pending = block
        put(*(pending or ()))
        whole = (fill - seg) - (fpos % unit)
        if whole:
            iov.append(view[seg : seg + whole])
        flush()
        rest = bytes(view[seg + whole : fill])
        if rest:
            pwrite_all(self.fd, rest, start)
        self.pos = start + len(rest)

    def _padded(self, block: Block | None, pad: int, runs: Collection[int]) -> Block | None:
        """``block`` made ``pad`` bytes longer by a padding option (the last block of a
        run); None when there is no block to pad (the frame is the drain's first)."""
        if block is None:
            return None
        encoder = self._encoder
        if len(block) == 1 and id(block[0]) in runs:
            run = block[0]
            at = encoder.last_block(run)
            if at:
                head, *rest = encoder.padded((run[at:],), pad)
                return (bytes(run[:at]) + bytes(head), *rest)
        return encoder.padded(block, pad)

    def _stop_direct(self) -> None:
        for fd in (self._dfd, self._rfd):
            if fd is not None:
                os.close(fd)
        self._dfd = self._rfd = None

    def close(self) -> None:
        """Leave the descriptor's offset at the end of what was written."""
        self._stop_direct()
        if self._stage is not None:
            self._stage.close()
            self._stage = None
        if self.pos is not None:
            with contextlib.suppress(OSError):
                os.lseek(self.fd, self.pos, os.SEEK_SET)


#: frames up to this long are joined with their block header and trailer before writev()
JOIN_MAX = 4096


class CaptureThread:
    """Writes captured frames off the forwarding path.

    The forwarding threads only append to a deque (no lock, no wake-up); this thread wakes
    every :data:`FLUSH_INTERVAL`, turns what arrived into pcapng blocks and writes them
    with one writev(). Whole blocks only, so the file is valid up to its last block even
    if fusetrace is killed. Frame data is not copied on the way: a block's packet data is
    the frame as the forwarding thread handed it over, and a frame lent in a receive buffer
    (a memoryview, see :class:`~fusetrace.proxy.forward.FrameBuffers`) is given back once
    written.
    """

    def __init__(
        self,
        fileobj: BinaryIO,
        make_writer: Callable[[BinaryIO], CaptureWriter],
        on_error: Callable[[str], None],
        live: Callable[[Frame], None] | None = None,
        interval: float = FLUSH_INTERVAL,
        buffers: FrameBuffers | None = None,
        source: core.Source | None = None,
    ) -> None:
        #: the section and interface headers the writer writes at once, until the first drain
        self._header = _Blocks()
        self.writer = make_writer(self._header)  # type: ignore[arg-type]
        self._out = CaptureOutput(fileobj.fileno(), self.writer)
        self._items: collections.deque[InFlight] = collections.deque()
        self.put: Callable[[InFlight], None] = self._items.append
        self.error: str | None = None
        self._on_error = on_error
        self._live = live
        self._interval = interval
        self._buffers = buffers
        #: where frames come from when not put into the deque: the compiled core's ring
        self._source = source
        #: frames the source handed over as packet blocks, counted into writer.frames
        self._encoded = 0
        #: the writer stores the kernel's answer to a daemon frame
        self._with_result = "result" in inspect.signature(self.writer.block).parameters
        self._stop = threading.Event()
        #: what the thread pauses on between drains: the compiled core's wait, when it is
        #: the source (cheaper than the Event's)
        self._waker = source if isinstance(source, core.Waker) else None
        if self._waker is not None and self._out.direct:
            # many small direct writes would cost more than the buffers' trips to memory:
            # woken only when half the receive buffers are lent
            self._waker.lend_wake(0)
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        waker = self._waker
        while True:
            if waker is not None:
                if self._live is None and self.error is None and not self._header.blocks:
                    # plain frames are written in C while they come; back here for the
                    # others (and the drain below writes those)
                    try:
                        self._out.pump_from(waker, self._interval)
                    except OSError as e:
                        self._failed(e)
                else:
                    waker.wait(self._interval)
                stopping = self._stop.is_set()
            else:
                stopping = self._stop.wait(self._interval)
            try:
                self._drain()
                if stopping:
                    self._drain(final=True)
            except Exception as e:  # a bug here must end the session, not the capture alone
                self.error = f"the capture writer failed: {e!r}"
                self._on_error(self.error)
                stopping = True
            if stopping:
                return

    def _drain(self, final: bool = False) -> None:
        """Turn the frames handed over so far into blocks and write them. An outbound frame
        whose write to /dev/fuse has not returned yet (its result still ``PENDING``) waits
        for the next drain, with everything after it; the ``final`` drain writes it with
        its result unknown."""
        if self._source is not None:
            self._drain_source(self._source, final)
            return
        items = self._items
        pop = items.popleft
        block = self.writer.block
        live = self._live
        blocks: list[Block] = []
        lent: list[tuple[Direction, memoryview]] = []
        while items:
            item = items[0]
            direction, t_ns, data, comment, result = item
            if result == PENDING:
                if not final:
                    break
                result = None
            pop()
            if type(data) is memoryview:
                lent.append((direction, data))
            if self.error is None:
                parts = block(direction, t_ns, data, comment=comment, result=result)
                # a small frame is cheaper to write as one part than as three
                blocks.append((b"".join(parts),) if len(data) <= JOIN_MAX else parts)
                if live is not None:
                    # numbered as in the file; a copy (the consumers may keep it)
                    live(landed(item, self.writer.frames - 1))
        self._write_out(blocks, lent)

    def _drain_source(self, source: core.Source, final: bool) -> None:
        """:meth:`_drain` for frames taken from the compiled core's ring: there, the plain
        frames at the head (nearly all of them) are written by the core itself, in C
        (:meth:`CaptureOutput.write_from`); what is left is taken from it, small frames
        usually as the packet blocks it encoded, a run of them in one part. Neither with
        ``--live``, whose consumers want frames."""
        block = self.writer.block
        with_result = self._with_result
        live = self._live
        left = True
        if live is None and self.error is None and not self._header.blocks:
            try:
                left = self._out.write_from(source)
            except OSError as e:
                self._failed(e)
        if not left and not final:
            # all written (but replies whose write has not returned: the next drain's)
            self._count_encoded(source)
            return
        blocks: list[Block] = []
        runs: set[int] = set()  # the parts that are runs of blocks
        lent: list[tuple[Direction, memoryview]] = []
        for item in source.take(final, live is None):
            if isinstance(item, bytes):
                blocks.append((item,))
                runs.add(id(item))
                continue
            direction, t_ns, data, comment, result = item
            if type(data) is memoryview:
                lent.append((direction, data))
            if self.error is None:
                kw = {"result": result} if with_result and result is not None else {}
                parts = block(direction, t_ns, data, comment=comment, **kw)
                blocks.append((b"".join(parts),) if len(data) <= JOIN_MAX else parts)
                if live is not None:
                    live(landed(item, self.writer.frames - 1))
        self._count_encoded(source)
        self._write_out(blocks, lent, runs)

    def _count_encoded(self, source: core.Source) -> None:
        """Count the frames the source handed over as blocks (or wrote) in the writer's."""
        encoded = source.encoded()
        self.writer.frames += encoded - self._encoded
        self._encoded = encoded

    def _write_out(
        self,
        blocks: list[Block],
        lent: list[tuple[Direction, memoryview]],
        runs: Collection[int] = (),
    ) -> None:
        """Write the drained blocks (after the headers, the first time); give the lent
        buffers back."""
        try:
            if self.error is None:
                if self._header.blocks:
                    header, self._header.blocks = self._header.blocks, []
                    self._out.write(header)
                if blocks:
                    self._out.write(blocks, runs)
        except OSError as e:
            self._failed(e)
        finally:
            blocks.clear()
            give = self._buffers.give if self._buffers is not None else None
            if give is not None:
                for direction, frame in lent:
                    give(direction, frame)

    def _failed(self, e: OSError) -> None:
        if isinstance(e, BrokenPipeError):
            self.error = "the reader of the capture went away"
        else:
            self.error = f"writing the capture failed: {e.strerror}"
        self._on_error(self.error)

    def close(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._waker is not None:
            self._waker.wake()
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._out.close()
