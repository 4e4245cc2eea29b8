"""State the tracker keeps for one connection, and the constants its rules share.

Split from the checker itself (:mod:`fusetrace.tracker.machine`) so each rule family's module
(ids, lifecycle, sizes, init, notify) reads the same definitions.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fusetrace.protocol import registry
from fusetrace.protocol.abi import (
    InitFlag,
    Opcode,
)
from fusetrace.protocol.registry import (
    ArgKind,
)
from fusetrace.tracker.findings import Severity

ENOSYS = 38
ENOENT = 2
LLONG_MAX = (1 << 63) - 1
ERRNO_FLOOR = -512
#: READLINK replies are bounded by PAGE_SIZE - 1; captures do not record the page size
PAGE_SIZE = 4096
#: INIT reply payload bound (sizeof fuse_init_out)
INIT_OUT_MAX = 64
CUSE_DEVINFO_MAX = 4096
#: how many answered ids, forgotten node ids and released handles are remembered
MEMORY = 4096
#: unanswered requests listed one by one at the end (the rest are counted)
LIST_AT_END = 20
#: kernel frames that may come between a reply and an INTERRUPT for the same request when
#: the two crossed in a recording. The recorder captures a reply before it writes it to
#: /dev/fuse and a kernel frame after it read it, from two threads: an INTERRUPT the kernel
#: handed out while the request was still outstanding (it drops a queued one as soon as
#: the reply is written) can land after the reply in the file. Only frames the recorder
#: read during that one write() can come between; more than this is no crossing.
CROSSING_KERNEL_FRAMES = 4


class SessionState(enum.Enum):
    """Connection state as the INIT exchange moves it (protocol.md §4.1)."""

    UNINIT = "uninit"
    AWAIT_INIT_REPLY = "await-init-reply"
    READY = "ready"
    FAILED = "failed"


class SessionEvent(enum.Enum):
    INIT_REQUEST = "init-request"
    INIT_REPLY_OK = "init-reply-ok"
    INIT_REPLY_BAD = "init-reply-bad"


#: the session transitions, as data (h11 style): (state, event) -> new state. An event not in
#: the table leaves the state unchanged; the rules flag it (FT402, FT412, FT401).
SESSION_TRANSITIONS: Mapping[tuple[SessionState, SessionEvent], SessionState] = {
    (SessionState.UNINIT, SessionEvent.INIT_REQUEST): SessionState.AWAIT_INIT_REPLY,
    (SessionState.AWAIT_INIT_REPLY, SessionEvent.INIT_REPLY_OK): SessionState.READY,
    (SessionState.AWAIT_INIT_REPLY, SessionEvent.INIT_REPLY_BAD): SessionState.FAILED,
}


@dataclass(slots=True)
class Pending:
    """A request read by the daemon and not yet answered."""

    opcode: int
    frame: int
    channel: int
    nodeid: int
    #: the request body fields reply checks need (size, offset, fh, mode, ...)
    info: dict[str, int] = field(default_factory=dict)
    #: capture timestamp of the request (ns)
    t_ns: int = 0
    #: the names the request carries (LOOKUP, creation ops, UNLINK, RENAME's two, ...)
    names: tuple[bytes, ...] = ()


_new_object = object.__new__


def new_pending(opcode: int, frame: int, channel: int, nodeid: int, t_ns: int) -> Pending:
    """``Pending(opcode, frame, channel, nodeid, t_ns=t_ns)``, built without the dataclass's
    Python-level ``__init__`` (one a request)."""
    p: Pending = _new_object(Pending)
    p.opcode = opcode
    p.frame = frame
    p.channel = channel
    p.nodeid = nodeid
    p.info = {}
    p.t_ns = t_ns
    p.names = ()
    return p


@dataclass(slots=True)
class Node:
    """A node id the kernel holds lookups on."""

    count: int
    generation: int
    ftype: int
    #: last file size the daemon reported (-1 unknown)
    size: int = -1
    #: link count the daemon last reported in an entry reply
    nlink: int = 1
    #: the inode's last known name was removed (unlink, rmdir, renamed over)
    unlinked: bool = False


@dataclass
class Summary:
    """Counts over one tracked connection, for reports."""

    frames: int = 0
    requests: int = 0
    replies: int = 0
    notifications: int = 0
    findings: dict[str, int] = field(
        default_factory=lambda: {s.label: 0 for s in reversed(Severity)}
    )
    outstanding: int = 0
    nodeids_held: int = 0
    handles_open: int = 0
    #: frames the tracker could not judge because of an internal error (a bug)
    internal_errors: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "requests": self.requests,
            "replies": self.replies,
            "notifications": self.notifications,
            "findings": dict(self.findings),
            "open": {
                "outstanding_requests": self.outstanding,
                "nodeids_held": self.nodeids_held,
                "handles_open": self.handles_open,
            },
            "internal_errors": self.internal_errors,
        }


class _Memory:
    """A bounded insertion-ordered map: the oldest entry goes when it is full.

    An OrderedDict: evicting its oldest entry is O(1), where ``next(iter(dict))`` on a
    plain dict slows down as deleted slots pile up at its front."""

    __slots__ = ("_cap", "_d")

    def __init__(self, cap: int = MEMORY) -> None:
        self._d: OrderedDict[Hashable, Any] = OrderedDict()
        self._cap = cap

    def add(self, key: Hashable, value: Any) -> None:
        d = self._d
        if key in d:
            d.move_to_end(key)
        d[key] = value
        if len(d) > self._cap:
            d.popitem(False)

    def get(self, key: Hashable) -> Any:
        return self._d.get(key)

    def pop(self, key: Hashable) -> Any:
        return self._d.pop(key, None)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._d

    def __len__(self) -> int:
        return len(self._d)

    def items(self) -> list[tuple[Hashable, Any]]:
        return list(self._d.items())


_OPS = registry.OPS
_NOTIFY = registry.NOTIFY
#: notification code -> the field naming the node the kernel must have cached
#: request fields the reply checks need, read when the request's first struct has them
_INFO_FIELDS = (
    "size",
    "offset",
    "out_size",
    "len",
    "mode",
    *sorted({f for spec in registry.OPS.values() for f in spec.node_fields}),
)
#: body fields naming a node id the kernel must hold (LINK, RENAME(2), COPY_FILE_RANGE)


def _named(opcode: Opcode) -> tuple[str, int]:
    """(struct before the names or "", how many names) of a request that carries names."""
    args = registry.OPS[opcode].request
    start = args[0].struct or "" if args and args[0].kind is ArgKind.STRUCT else ""
    return start, min(2, sum(a.kind is ArgKind.CSTRING for a in args))


#: requests whose names the tracker follows: entry replies bind (parent, name) to a node,
#: UNLINK/RMDIR/RENAME remove names (how node id recycling is told from reuse, §7.1)
_NAMED: dict[int, tuple[str, int]] = {
    op: _named(op)
    for op in (
        Opcode.LOOKUP,
        Opcode.MKNOD,
        Opcode.MKDIR,
        Opcode.SYMLINK,
        Opcode.CREATE,
        Opcode.LINK,
        Opcode.UNLINK,
        Opcode.RMDIR,
        Opcode.RENAME,
        Opcode.RENAME2,
    )
}
#: information findings that predict the kernel's refusal of the frame (FT508: ENOENT)
_PREDICTS_REFUSAL = frozenset({"FT508"})
#: RENAME2 flag: the two names swap their inodes
RENAME_EXCHANGE = 2


def _flag_names(flags: int) -> list[str]:
    from fusetrace.protocol.abi import flag_names

    return flag_names(int(flags), InitFlag)
