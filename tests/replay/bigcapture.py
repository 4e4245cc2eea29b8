"""Long captures for replay's memory tests, made at test time (never committed).

``python -m tests.replay.bigcapture OUT.pcapng FRAMES [DAEMON ARGS... {}]`` records a short
real session with DAEMON (default: fakefs) through :class:`tests.replay.kernel.Kernel` (INIT,
a LOOKUP, an OPEN), then repeats its GETATTR / LOOKUP / READ exchanges with new uniques until
the capture holds FRAMES frames. The repeated replies are the daemon's own, so a replay
against the same daemon compares equal.

``python -m tests.replay.bigcapture --measure CAPTURE`` replays CAPTURE in this process
against a responder that answers every request with its recorded reply (no daemon, no
socket: the engine, the capture reader and the tracker are what is measured) and prints
``frames maxrss_kib``.
"""

from __future__ import annotations

import io
import resource
import sys
from collections.abc import Iterator

from fusetrace.capture import CaptureReader, Channel
from fusetrace.capture.files import host_writer
from fusetrace.frame import Direction, Frame
from fusetrace.protocol.abi import Opcode
from fusetrace.protocol.encode import with_unique
from tests.replay.kernel import FAKEFS, Kernel


def _session(argv: list[str]) -> list[Frame]:
    k = Kernel(argv)
    k.init()
    node = k.lookup(1, "hello.txt") if FAKEFS in argv else 1
    fh = k.open(node) if FAKEFS in argv else 0
    k.call(Opcode.GETATTR, {}, node)
    if FAKEFS in argv:
        k.lookup(1, "hello.txt")
        k.call(Opcode.READ, {"fh": fh, "offset": 0, "size": 4096}, node)
    return list(CaptureReader(io.BytesIO(k.capture())))


def write(path: str, frames: int, argv: list[str]) -> int:
    records = _session(argv)
    # the exchanges after INIT, LOOKUP and OPEN: (request, reply) pairs to repeat
    skip = 6 if FAKEFS in argv else 2
    pairs = [(records[i].data, records[i + 1].data) for i in range(skip, len(records) - 1, 2)]
    with open(path, "wb") as f:
        w = host_writer(f, {"daemon": argv, "mountpoint": None}, channels=[Channel()])
        t = 0
        for rec in records[:skip]:
            w.write(rec.direction, t, rec.data)
            t += 1000
        written = skip
        unique = 1 << 20
        while written < frames:
            for req, rep in pairs:
                w.write(Direction.INBOUND, t, with_unique(req, unique))
                w.write(Direction.OUTBOUND, t + 500, with_unique(rep, unique))
                unique += 2
                t += 1000
                written += 2
    return written


def measure(path: str) -> tuple[int, int]:
    """Replay ``path`` in process against its own recorded replies; (frames, maxrss KiB)."""
    from fusetrace.cli.replay import _stream, _tracker_sink
    from fusetrace.replay.codec import ProtocolCodec
    from fusetrace.replay.engine import FrameReceived, ReplayEngine, SendFrame, Start

    replies: dict[int, bytes] = {}
    count = [0]

    def tee(records: Iterator[Frame]) -> Iterator[Frame]:
        for rec in records:
            count[0] += 1
            if rec.direction is Direction.OUTBOUND:
                replies[int.from_bytes(rec.data[8:16], sys.byteorder)] = rec.data
            yield rec

    tracked = _tracker_sink(sys.byteorder)
    assert tracked is not None
    sink, finish, _abandon = tracked
    with open(path, "rb") as f:
        records, _meta = _stream(path, CaptureReader(f))
        engine = ReplayEngine(tee(records), ProtocolCodec(sys.byteorder))
        todo = list(engine.handle(Start(0)))
        t = 0
        while todo:
            cmd = todo.pop()
            if isinstance(cmd, SendFrame):
                sink(Direction.INBOUND, t, cmd.data)
                unique = int.from_bytes(cmd.data[8:16], sys.byteorder)
                reply = replies.pop(unique, None)
                if reply is None:  # read ahead until the recorded reply comes by
                    while reply is None and engine._source is not None and engine._read_one():
                        reply = replies.pop(unique, None)
                if reply is not None:
                    sink(Direction.OUTBOUND, t, reply)
                    t += 1
                    todo.extend(engine.handle(FrameReceived(reply, t)))
        assert engine.finished and engine.result.ok, engine.result.differences[:3]
    finish()  # the tracker runs in a child process: its peak counts once it is reaped
    peak = max(resource.getrusage(who).ru_maxrss
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))  # fmt: skip
    return count[0], peak


if __name__ == "__main__":
    if sys.argv[1] == "--measure":
        frames, rss = measure(sys.argv[2])
        print(frames, rss)
    else:
        daemon = sys.argv[3:] or [sys.executable, FAKEFS, "{}"]
        print(write(sys.argv[1], int(sys.argv[2]), daemon))
