"""One frame as it crossed /dev/fuse: the unit every part of fusetrace passes around.

Pure: capture readers produce frames, the recorder hands frames to its live consumers, the
decoder and tracker consume them. On its way from the forwarding loops to the capture
output a frame travels in a lighter form, :data:`InFlight`.
"""

from __future__ import annotations

import enum
from typing import Any, NamedTuple, TypeAlias


class Direction(enum.IntEnum):
    """Which way a frame went. Values are the pcapng ``epb_flags`` direction bits."""

    #: kernel → daemon: requests, FORGET, INTERRUPT, NOTIFY_REPLY.
    INBOUND = 1
    #: daemon → kernel: replies and notifications.
    OUTBOUND = 2

    @property
    def arrow(self) -> str:
        return "K>D" if self is Direction.INBOUND else "D>K"


class Frame(NamedTuple):
    """A captured frame.

    ``index`` is the 0-based position in the capture's packet order (what findings cite as
    ``frame``); ``t_ns`` is nanoseconds since the Unix epoch; ``data`` is the raw frame,
    header included, possibly cut to the snap length (``orig_len`` keeps the real length);
    ``channel`` numbers the /dev/fuse file descriptor (pcapng interface) it crossed;
    ``comment`` says what the proxy changed in the frame, if anything; ``result`` is the
    kernel's answer to a daemon → kernel frame as the recorder wrote it to /dev/fuse: 0 when
    the kernel took it, a positive errno when it refused it, ``None`` where it is not known
    (requests, captures made before results were recorded).

    A NamedTuple rather than a dataclass: a million of these are made per large capture.
    """

    index: int  # type: ignore[assignment]  # shadows tuple.index on purpose
    t_ns: int
    direction: Direction
    data: bytes
    orig_len: int
    channel: int = 0
    comment: str | None = None
    result: int | None = None

    @property
    def number(self) -> int:
        """The frame's number as Wireshark and tshark count it (``frame.number``, from 1)."""
        return self.index + 1

    @property
    def truncated(self) -> bool:
        return len(self.data) < self.orig_len


#: a frame on its way from the forwarding loops to the capture output:
#: ``[direction, t_ns, raw frame, comment, result]``. A large frame may be a memoryview of
#: a lent receive buffer (see ``proxy.forward.FrameBuffers``); ``result`` is the kernel's
#: answer to a daemon → kernel frame (0, or the errno of a refused write; None for
#: requests). An outbound frame is handed over before it is written to /dev/fuse (so the
#: capture keeps the order in which frames crossed the device), as a list whose ``result``
#: is :data:`PENDING`; the forwarding thread stores the answer in slot :data:`RESULT` once
#: the write returned. Other frames (requests, and every frame the compiled core hands
#: over) are tuples. Not a Frame: two of these are made per request on the forwarding
#: threads, where every attribute costs.
InFlight: TypeAlias = (
    "list[Any] | tuple[Direction, int, bytes | memoryview, str | None, int | None]"
)
#: an outbound in-flight frame's result before its write to /dev/fuse returned
PENDING = -1
#: the slot of ``result`` in an :data:`InFlight` frame
RESULT = 4


def landed(item: InFlight, index: int, channel: int = 0) -> Frame:
    """The :class:`Frame` an in-flight frame is at position ``index`` of the capture: its
    data copied (a lent buffer goes back once written), a result still :data:`PENDING`
    unknown."""
    direction, t_ns, data, comment, result = item
    return Frame(
        index,
        t_ns,
        direction,
        bytes(data),
        len(data),
        channel,
        comment,
        None if result == PENDING else result,
    )
