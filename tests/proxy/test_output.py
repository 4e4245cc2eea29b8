"""The capture output: blocks onto a pipe or a file (direct writes for large drains), frames
lent in receive buffers written from there, the file whole after every drain."""

from __future__ import annotations

import errno
import io
import mmap
import os
import random
import shutil
import struct
import subprocess
import threading
from pathlib import Path

import pytest

from fusetrace.capture.files import open_capture
from fusetrace.capture.pcapng import PAD_OPTION, CaptureWriter
from fusetrace.frame import PENDING, RESULT, Direction, Frame
from fusetrace.proxy import output
from fusetrace.proxy.forward import FrameBuffers
from fusetrace.proxy.output import Block, CaptureOutput, CaptureThread, writev_all


def test_writev_all_writes_whole_blocks_per_call_and_finishes_partial_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blocks: list[Block] = [(b"SHB-block",)]
    for i in range(40):
        data = memoryview(bytearray([i]) * (30_000 + i))
        blocks.append((b"head%02d" % i, data, b"tail%02d" % i))
    expected = b"".join(bytes(p) for b in blocks for p in b)
    calls: list[int] = []
    real_writev = os.writev

    def short_writev(fd: int, parts: list[bytes | memoryview]) -> int:
        """Takes at most 50,000 bytes per call, as a pipe or a signal may."""
        calls.append(len(parts))
        budget, cut = 50_000, []
        for p in parts:
            cut.append(p[:budget])
            budget -= len(cut[-1])
            if not budget:
                break
        return real_writev(fd, cut)

    monkeypatch.setattr(os, "writev", short_writev)
    r, w = os.pipe()
    got = bytearray()
    reader = threading.Thread(
        target=lambda: [got.extend(c) for c in iter(lambda: os.read(r, 1 << 16), b"")]
    )
    reader.start()
    try:
        writev_all(w, blocks, iov_max=7)
    finally:
        os.close(w)
        reader.join(10)
        os.close(r)
    assert bytes(got) == expected
    # whole blocks per call (1 + 3 + 3 parts, not a block cut by iov_max); short writes go on
    assert calls[0] == 7
    assert max(calls) == 7 and len(calls) > len(expected) // 50_000


def test_capture_output_writes_large_drains_direct_and_keeps_the_file_whole(
    tmp_path: Path,
) -> None:
    path = tmp_path / "out.pcapng"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    out = CaptureOutput(fd)
    expected = bytearray()
    try:
        # small drains through the page cache, large ones direct (several stage buffers),
        # in every order, none of them ending on a page boundary
        for n, (count, size) in enumerate([(3, 50), (40, 30_001), (1, 7), (300, 33_333)] * 2):
            blocks: list[Block] = []
            for i in range(count):
                data = memoryview(bytearray([n * 7 + i & 0xFF]) * size)
                blocks.append((b"H%03d" % i, data, b"T%03d" % n))
            out.write(blocks)
            expected += b"".join(bytes(p) for b in blocks for p in b)
            assert path.read_bytes() == expected  # whole after every drain
        assert out._dfd is not None, "direct writes were not used on this filesystem"
    finally:
        out.close()
    assert os.lseek(fd, 0, os.SEEK_CUR) == len(expected)
    os.close(fd)
    assert path.read_bytes() == expected


class RunSource:
    """Frames handed over as the compiled core hands them: small frames without a comment
    as their packet blocks, each run of them in one bytes object; the others as frames."""

    def __init__(self) -> None:
        self.writer = CaptureWriter(io.BytesIO(), {})
        self.queue: list[object] = []
        self.blocks = 0

    def put(self, item: tuple[Direction, int, bytes | memoryview, str | None, int | None]) -> None:
        direction, t, data, comment, result = item
        if comment is None and isinstance(data, bytes):
            block = b"".join(self.writer.block(direction, t, data, result=result))
            if self.queue and isinstance(self.queue[-1], bytes):
                self.queue[-1] += block
            else:
                self.queue.append(block)
            self.blocks += 1
        else:
            self.queue.append(item)

    def take(self, final: bool = False, blocks: bool = False) -> list[object]:
        assert blocks
        out, self.queue = self.queue, []
        return out

    def encoded(self) -> int:
        return self.blocks

    def write(self, fd: int, pos: int = -1, limit: int = 0) -> tuple[int, int, None, bool]:
        return 0, 0, None, True  # (what the compiled core writes itself is not tested here)


@pytest.mark.parametrize("runs", [False, True], ids=["frames", "runs"])
@pytest.mark.parametrize("largest", [262_144, 1_048_656])
def test_lent_frames_are_written_direct_from_their_buffers_and_read_back_whole(
    tmp_path: Path, largest: int, runs: bool
) -> None:
    """Large frames lent in page-aligned receive buffers go to the file from there, the
    block before each padded so that the frame lands on an alignment unit (the last block
    of a run, where small frames come in runs of blocks as from the compiled core). The
    file must read back frame for frame, whole after every drain, and tshark must read it
    the same (tshark takes frames up to 256 KiB on this link type, hence the two sizes)."""
    rng = random.Random(largest)
    buffers = FrameBuffers((1 << 20) + 4097)
    path = tmp_path / "lent.pcapng"
    errors: list[str] = []
    source = RunSource() if runs else None
    with open(path, "wb", buffering=0) as f:
        thread = CaptureThread(
            f, lambda sink: CaptureWriter(sink, {}), errors.append, interval=3600,
            buffers=buffers, source=source,  # type: ignore[arg-type]
        )  # fmt: skip
        put = source.put if source is not None else thread.put
        sent: list[tuple[Direction, int, bytes, str | None, int | None]] = []
        t = 1_000
        for _ in range(12):
            for _ in range(rng.randrange(1, 40)):
                t += rng.randrange(1, 10_000)
                direction = rng.choice([Direction.INBOUND, Direction.OUTBOUND])
                comment = "changed" if rng.random() < 0.1 else None
                result = None
                if direction is Direction.OUTBOUND:
                    result = rng.choice([0, 0, 0, errno.ENOENT, errno.EINVAL])
                if rng.random() < 0.5:
                    data = rng.randbytes(rng.randrange(16, 300))
                    put((direction, t, data, comment, result))
                else:
                    n = rng.choice([32 << 10, 131_088, largest, rng.randrange(32 << 10, largest)])
                    buf = buffers.take(direction)
                    assert buf is not None
                    data = rng.randbytes(n)
                    buf[:n] = data
                    put((direction, t, memoryview(buf)[:n], comment, result))
                sent.append((direction, t, data, comment, result))
            thread._drain()
            with open_capture(str(path)) as reader:  # whole after every drain
                assert len(list(reader)) == len(sent) and not reader.info.truncated
        padded = thread._out._dfd is not None
        thread.close()
    assert not errors
    assert padded, "direct writes were not used on this filesystem"
    with open_capture(str(path)) as reader:
        got = [(r.direction, r.t_ns, r.data, r.comment, r.result) for r in reader]
    assert got == sent
    assert struct.pack("<H", PAD_OPTION) in path.read_bytes()
    if largest <= 262_144 and shutil.which("tshark"):
        out = subprocess.run(
            ["tshark", "-r", str(path), "-T", "fields", "-e", "frame.len"],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        assert [int(n) for n in out] == [len(d) for _, _, d, _, _ in sent]


def test_lent_frames_one_after_another_all_go_from_their_buffers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large frames lent one after another, with no small block between them (replies to
    readahead), all go to the file from their receive buffers: each grows by a padding
    option so that the next one's data starts on an alignment unit, as the small block
    before the first one does for it. Only their last partial units are copied."""
    buffers = FrameBuffers((1 << 20) + 4097)
    path = tmp_path / "replies.pcapng"
    errors: list[str] = []
    from_buffers: list[int] = []
    real = output.pwritev_all

    def spy(fd: int, parts: list[memoryview], pos: int) -> int:
        stage = thread._out._stage
        from_buffers.extend(
            len(p) for p in parts if isinstance(p.obj, mmap.mmap) and p.obj is not stage
        )
        return real(fd, parts, pos)

    monkeypatch.setattr(output, "pwritev_all", spy)
    rng = random.Random(7)
    with open(path, "wb", buffering=0) as f:
        thread = CaptureThread(
            f, lambda sink: CaptureWriter(sink, {}), errors.append, interval=3600,
            buffers=buffers,
        )  # fmt: skip
        sent = [(Direction.INBOUND, 1, rng.randbytes(80), None, None)]
        thread.put(sent[0])
        for k in range(8):
            n = 131_088 + 4 * k  # a READ reply of 128 KiB, and a few bytes more
            buf = buffers.take(Direction.OUTBOUND)
            assert buf is not None
            data = rng.randbytes(n)
            buf[:n] = data
            thread.put((Direction.OUTBOUND, 2 + k, memoryview(buf)[:n], None, 0))
            sent.append((Direction.OUTBOUND, 2 + k, data, None, 0))
        thread._drain()
        unit = thread._out._unit
        direct = thread._out._dfd is not None
        thread.close()
    assert not errors
    assert direct, "direct writes were not used on this filesystem"
    lengths = [len(d) for _, _, d, _, _ in sent[1:]]
    assert sum(from_buffers) == sum(n - n % unit for n in lengths)
    with open_capture(str(path)) as reader:
        got = [(r.direction, r.t_ns, r.data, r.comment, r.result) for r in reader]
    assert got == sent


def test_capture_output_to_a_pipe_writes_as_it_comes() -> None:
    r, w = os.pipe()
    out = CaptureOutput(w)
    out.write([(b"abc", memoryview(b"defg"), b"h")])
    out.close()
    os.close(w)
    assert os.read(r, 100) == b"abcdefgh"
    os.close(r)


def test_the_loops_write_to_pipes_sockets_and_devices_but_never_to_files(tmp_path: Path) -> None:
    """Where the forwarding loops may write large frames themselves (writes that never
    wait): a pipe, a socket, /dev/null; a capture file keeps its writes in the capture
    thread (direct I/O, or the page cache, whose copies would fall on the forwarding)."""
    import socket

    r, w = os.pipe()
    a, b = socket.socketpair()
    null = os.open(os.devnull, os.O_WRONLY)
    plain = os.open(tmp_path / "c.pcapng", os.O_WRONLY | os.O_CREAT)
    appended = os.open(tmp_path / "d.pcapng", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        outputs = {
            name: CaptureOutput(fd)
            for name, fd in (
                ("pipe", w), ("socket", a.fileno()), ("null", null), ("file", plain),
                ("appended", appended),
            )
        }  # fmt: skip
        found = {name: out.inline for name, out in outputs.items()}
        for out in outputs.values():
            out.close()
        assert found == {
            "pipe": True, "socket": True, "null": True, "file": False, "appended": False
        }  # fmt: skip
    finally:
        for fd in (r, w, null, plain, appended):
            os.close(fd)
        a.close()
        b.close()


def test_live_consumers_get_frames_numbered_as_in_the_file(tmp_path: Path) -> None:
    """``--live``/``--check``/``--top`` receive Frames: copies (lent buffers go back), the
    index of the frame in the capture, the result once the write returned."""
    path = tmp_path / "live.pcapng"
    buffers = FrameBuffers(64 << 10)
    seen: list[Frame] = []
    errors: list[str] = []
    with open(path, "wb", buffering=0) as f:
        thread = CaptureThread(
            f, lambda sink: CaptureWriter(sink, {}), errors.append, seen.append,
            interval=3600, buffers=buffers,
        )  # fmt: skip
        buf = buffers.take(Direction.OUTBOUND)
        assert buf is not None
        buf[:40_000] = b"d" * 40_000
        reply = [Direction.OUTBOUND, 3, memoryview(buf)[:40_000], None, PENDING]
        thread.put((Direction.INBOUND, 1, b"k" * 40, None, None))
        thread.put((Direction.INBOUND, 2, b"j" * 48, "changed", None))
        thread.put(reply)
        thread._drain()  # the reply's write has not returned: it waits
        assert [fr.index for fr in seen] == [0, 1]
        reply[RESULT] = 2
        thread._drain()
        buf[:40_000] = b"x" * 40_000  # given back and reused
        thread.close()
    assert not errors
    assert seen == [
        Frame(0, 1, Direction.INBOUND, b"k" * 40, 40),
        Frame(1, 2, Direction.INBOUND, b"j" * 48, 48, 0, "changed"),
        Frame(2, 3, Direction.OUTBOUND, b"d" * 40_000, 40_000, 0, None, 2),
    ]
    with open_capture(str(path)) as reader:
        assert list(reader) == seen
