"""One frame as it crossed /dev/fuse: the unit every part of fusetrace passes around.

Pure: capture readers produce records, the proxy produces records, the decoder and tracker
consume them.
"""

from __future__ import annotations

import enum
from typing import NamedTuple


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


#: a frame as the recorder hands it to the capture and to the live consumers: direction,
#: t_ns, the raw frame, and what the proxy changed in it (or None)
Item = tuple[Direction, int, bytes, "str | None"]
