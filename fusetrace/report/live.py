"""``record --live``: one line per frame, printed off the forwarding path.

Frames reach :meth:`LiveView.put` from the capture writer thread; a bounded queue feeds a
printing thread. When the terminal cannot keep up, lines are dropped (and counted), never
waited for: the filesystem must not slow down because a terminal is slow.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable
from typing import TextIO

from fusetrace.frame import Direction, Frame
from fusetrace.protocol.abi import opcode_name
from fusetrace.protocol.header import (
    IN_HEADER_SIZE,
    OUT_HEADER_SIZE,
    in_header_struct,
    out_header_struct,
)
from fusetrace.tracker.findings import Finding

#: lines waiting for the terminal before new ones are dropped
QUEUE_LINES = 10_000

#: frames cross /dev/fuse in host byte order
_IN = in_header_struct(sys.byteorder)
_OUT = out_header_struct(sys.byteorder)


def summary(frame: Frame, t0: int) -> str:
    """A header-level summary: time, direction, unique, opcode or error, length."""
    direction, data, comment = frame.direction, frame.data, frame.comment
    secs = (frame.t_ns - t0) / 1e9
    note = f"  # {comment}" if comment else ""
    if direction is Direction.INBOUND and len(data) >= IN_HEADER_SIZE:
        length, opcode, unique, nodeid = _IN.unpack_from(data)[:4]
        return (
            f"{secs:12.6f} K>D unique={unique} {opcode_name(opcode)} nodeid={nodeid} "
            f"len={length}{note}"
        )
    if len(data) >= OUT_HEADER_SIZE:
        length, error, unique = _OUT.unpack_from(data)
        what = f"notify code={error}" if unique == 0 else f"error={error}"
        return f"{secs:12.6f} D>K unique={unique} {what} len={length}{note}"
    return f"{secs:12.6f} {direction.arrow} short frame ({len(data)} bytes){note}"


class LiveView:
    """Prints frame summaries on ``out`` from its own thread.

    Lines are the ones ``fusetrace decode`` prints (decoded here, off the forwarding path);
    a frame that cannot be decoded gets a header-level line.
    """

    def __init__(self, out: TextIO, limit: int = QUEUE_LINES) -> None:
        self._out = out
        self._q: queue.Queue[Frame | None] = queue.Queue(limit)
        self.dropped = 0
        self._t0: int | None = None
        self._render = _decoder_renderer()
        self._thread = threading.Thread(target=self._run, name="live-view", daemon=True)
        self._thread.start()

    def put(self, frame: Frame) -> None:
        try:
            self._q.put_nowait(frame)
        except queue.Full:
            self.dropped += 1

    def _line(self, frame: Frame) -> str:
        assert self._t0 is not None
        if self._render is not None:
            try:
                return self._render(frame, self._t0)
            except Exception:  # the live view must never stop recording
                pass
        return summary(frame, self._t0)

    def _run(self) -> None:
        while True:
            frame = self._q.get()
            if frame is None:
                return
            if self._t0 is None:
                self._t0 = frame.t_ns
            line = self._line(frame)
            try:
                self._out.write(line + "\n")
                self._out.flush()
            except (OSError, ValueError):
                return

    def close(self) -> None:
        try:
            self._q.put(None, timeout=5)
        except queue.Full:
            pass
        self._thread.join(10)


def _decoder_renderer() -> Callable[[Frame, int], str] | None:
    """``fusetrace decode``'s summary line for each frame, if the decoder is available."""
    try:
        from fusetrace.protocol.stream import FrameDecoder
        from fusetrace.report.frames import summary_line
    except ImportError:
        return None
    decoder = FrameDecoder(sys.byteorder)

    def render(frame: Frame, t0: int) -> str:
        return summary_line(decoder.feed(frame), t0)

    return render


class LiveCheck:
    """``record --check``: the tracker, fed every frame as it is captured.

    It runs in the capture writer thread, which sees frames in capture order, numbered as
    in the capture file, so a finding's frame is that frame of the file. Findings are
    printed on ``out`` as they happen. Unlike the live view nothing may be dropped here:
    the tracker's state must see every frame.
    """

    def __init__(
        self,
        out: TextIO,
        *,
        mount_options: list[str],
        rules: frozenset[str] | None = None,
    ) -> None:
        from fusetrace.tracker import Tracker

        opts: dict[str, str | None] = {}
        for opt in mount_options:
            name, eq, value = opt.partition("=")
            opts[name] = value if eq else None
        self._out = out
        self._tracker = Tracker(byte_order=sys.byteorder, rules=rules, mount_options=opts)
        self.findings: list[Finding] = []

    def put(self, frame: Frame) -> None:
        self._report(self._tracker.feed(frame))

    def finish(self) -> list[Finding]:
        """End of the session: what is still open (requests, lookups, handles) is reported
        too, as information."""
        self._report(self._tracker.finish())
        return self.findings

    def _report(self, found: list[Finding]) -> None:
        for finding in found:
            self.findings.append(finding)
            try:
                self._out.write(f"fusetrace: {finding.describe()}\n")
                self._out.flush()
            except (OSError, ValueError):
                pass


def both(*sinks: Callable[[Frame], None]) -> Callable[[Frame], None]:
    """One frame sink that feeds several (the live view and the live check)."""

    def put(frame: Frame) -> None:
        for sink in sinks:
            sink(frame)

    return put
