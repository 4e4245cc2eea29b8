"""The tracker: a sans-IO model of one FUSE connection, judging every frame (design.md §5).

Feed it :class:`~fusetrace.record.Record` objects in capture order; it answers each with the
findings that frame shows, and :meth:`Tracker.finish` with what is left at the end. The same
object runs over a capture (``fusetrace check``), live inside ``fusetrace record --check``
and over a replay: it never reads the clock, files or sockets, and it never raises on bad
input.

What it keeps is bounded by the connection's outstanding state, not by the capture's
length: requests read and not yet answered, node ids the kernel holds lookups on, open file
handles, plus fixed-size memories of recently answered ids, forgotten node ids and released
handles (so a late duplicate can be told from a reply out of nowhere).

Modelling follows the kernel's order of checks on a daemon write (protocol.md §5.3): a
frame the kernel would reject before matching (bad length, error out of range) changes no
state; a reply the kernel accepts but rejects in its body (W8) ends the request without its
effects (no lookup counted, no handle opened).
"""

from __future__ import annotations

import enum
import struct
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fusetrace.protocol import registry
from fusetrace.protocol.abi import (
    F_RDLCK,
    F_UNLCK,
    F_WRLCK,
    FUSE_INT_REQ_BIT,
    FUSE_IOCTL_MAX_IOV,
    FUSE_MIN_MAX_WRITE,
    FUSE_NAME_MAX,
    FUSE_NAME_MAX_LARGE,
    FUSE_ROOT_ID,
    FUSE_UNIQUE_RESEND,
    S_IFDIR,
    S_IFMT,
    VALID_FILE_TYPES,
    FopenFlag,
    InitFlag,
    IoctlFlag,
    NotifyCode,
    Opcode,
    errno_name,
    notify_name,
    opcode_name,
)
from fusetrace.protocol.connection import Connection, Exchange
from fusetrace.protocol.header import IN_HEADER_SIZE, OUT_HEADER_SIZE
from fusetrace.protocol.registry import (
    ArgKind,
    HandleEffect,
    HandleKind,
    LookupEffect,
    NotifySize,
    ReplyShape,
)
from fusetrace.protocol.session import Negotiated
from fusetrace.record import Direction, Record
from fusetrace.tracker import _layout
from fusetrace.tracker.findings import Finding, Severity
from fusetrace.tracker.rules import RULES, checks

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
            d.popitem(last=False)

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


class Tracker:
    """Checks one FUSE connection frame by frame.

    ``byte_order`` is the capture's ("little"/"big"). ``rules`` restricts the codes reported
    (default: all; see :func:`fusetrace.tracker.rules.select_rules`). ``mount_options`` (the
    capture's recorded ``-o`` options, when known) enables FT410. ``header_only`` skips every
    rule that reads a body beyond INIT (for cheap live checking). ``strict`` lets an internal
    error propagate instead of being counted (tests use it; a check run must not die of one
    rule's bug).

    Pairing and the negotiated session come from the connection model
    (:class:`~fusetrace.protocol.connection.Connection`): :meth:`feed` feeds the tracker's
    own connection; :meth:`judge` takes an exchange from a connection someone else feeds
    (``decode --check`` reads each frame once for the decoder and the tracker). The tracker
    keeps its per-request state on the request's exchange (``Exchange.state``).
    """

    def __init__(
        self,
        *,
        byte_order: str = "little",
        rules: Iterable[str] | None = None,
        mount_options: Mapping[str, str | None] | None = None,
        header_only: bool = False,
        strict: bool = False,
        connection: Connection | None = None,
    ) -> None:
        order = "<" if byte_order in ("little", "<") else ">"
        self.connection = connection or Connection(byte_order)
        self._f = _layout.Readers(order)
        self._order = order
        self.enabled = frozenset(RULES) if rules is None else frozenset(rules)
        self.mount_options = mount_options
        self.bodies = not header_only
        #: set once an entry reply was cut by the snap length: the lookups it gave are
        #: unknown, so lookup counts and node-id announcements are no longer judged
        self._counts_lost = False
        self.strict = strict
        self.state = SessionState.UNINIT
        self.summary = Summary()
        self.last_frame = -1
        self.last_t_ns = 0
        # outstanding state (requests: on the connection's exchanges)
        self.nodes: dict[int, Node] = {}
        #: open handles by identity (nodeid, fh, is_dir) -> opens (protocol.md §7.2)
        self.handles: dict[tuple[int, int, bool], int] = {}
        #: fh value -> how many handles with that value are open, on any node, of any kind
        self._fh_open: dict[int, int] = {}
        self.direct_io: set[tuple[int, int, bool]] = set()
        #: (parent, name) -> node id, from entry replies: how an UNLINK finds its node
        self._names = _Memory()
        #: RETRIEVE notify_unique -> [(frame, nodeid, offset, size)] not yet answered
        self._retrieves: dict[int, list[tuple[int, int, int, int]]] = {}
        #: notify_unique -> frame of the NOTIFY_REPLY that answered its RETRIEVE
        self._retrieved = _Memory()
        #: INTERRUPT target id -> INTERRUPT frame, for targets not seen (yet)
        self._int_waiting: dict[int, int] = {}
        #: an error or warning finding was produced for the frame being fed (enabled or
        #: not): it explains a refusal the capture recorded
        self._explained = False
        # bounded memories
        self._answered = _Memory()
        #: answered id -> how many kernel frames had been seen when the answer came
        self._no_reply = _Memory()
        self._forgotten = _Memory()
        self._released = _Memory()
        self._reported_nodes = _Memory()
        self._reported_fhs = _Memory()
        #: opcode -> (fixed request bytes, variable parts) under the current negotiation
        self._info_readers: dict[str, list[tuple[str, struct.Struct, int]]] = {}
        self._len_rules: dict[int, tuple[int, list[tuple[str, str, int]]] | None] = {}
        # connection-wide facts
        self._init_key: int | None = None
        self._init_frame: int | None = None
        self._init_seen = False
        self._enosys: set[int] = set()
        self._interrupts_off = False
        self.no_open = False
        self.no_opendir = False
        self._cut_reported = False
        self._early_reported = False
        self._findings: list[Finding] = []
        self._before = self.connection.negotiated

    # ---- public API -------------------------------------------------------------------
    @property
    def negotiated(self) -> Negotiated:
        """The session in force (learnt by the connection model from the INIT pair)."""
        return self.connection.negotiated

    @property
    def pending(self) -> dict[int, Pending]:
        """Requests read and not yet answered: unique (bit 0 masked) -> state."""
        return {
            ex.header[2] & ~FUSE_INT_REQ_BIT: ex.state
            for ex in self.connection.outstanding.values()
            if ex.state is not None
        }

    def feed(self, record: Record) -> list[Finding]:
        """Judge one frame; returns the findings it shows (often none). Never raises."""
        return self.judge(self.connection.feed(record))

    def judge(self, ex: Exchange) -> list[Finding]:
        """Judge the exchange a connection made of one frame (fed in capture order)."""
        record = ex.record
        found: list[Finding] = []
        self._findings = found
        self.summary.frames += 1
        self.last_frame = record.index
        self.last_t_ns = record.t_ns
        try:
            if record.direction is Direction.INBOUND:
                self._kernel_frame(ex)
            else:
                self._explained = False
                self._daemon_frame(ex)
                if record.result:
                    self._refused(ex)
        except Exception:
            if self.strict:
                raise
            self.summary.internal_errors += 1
        return found

    def feed_all(self, records: Iterable[Record]) -> list[Finding]:
        out: list[Finding] = []
        for r in records:
            out.extend(self.feed(r))
        return out

    def finish(self) -> list[Finding]:
        """End of capture: what is still outstanding, as information findings."""
        found: list[Finding] = []
        self._findings = found
        try:
            self._finish()
        except Exception:
            if self.strict:
                raise
            self.summary.internal_errors += 1
        s = self.summary
        s.outstanding = sum(ex.state is not None for ex in self.connection.outstanding.values())
        s.nodeids_held = len(self.nodes)
        s.handles_open = sum(self.handles.values())
        return found

    # ---- helpers ----------------------------------------------------------------------
    def _emit(
        self,
        code: str,
        frame: int | None,
        message: str,
        *,
        unique: int | None = None,
        opcode: int | str | None = None,
        related: tuple[int, ...] = (),
    ) -> None:
        rule = RULES[code]
        if rule.severity is not Severity.INFO or code in _PREDICTS_REFUSAL:
            self._explained = True
        if code not in self.enabled:
            return
        self.summary.findings[rule.severity.label] += 1
        self._findings.append(
            Finding(
                code,
                rule.severity,
                rule.culprit,
                frame,
                message,
                unique,
                opcode if opcode is None or isinstance(opcode, str) else opcode_name(opcode),
                related,
            )
        )

    @checks("FT316")
    def _cut(self, rec: Record, unique: int, opcode: int | None) -> None:
        self._cut_reported = True
        self._emit(
            "FT316",
            rec.index,
            f"frame stored with {len(rec.data)} of {rec.orig_len} bytes; body "
            "checks skip cut frames",
            unique=unique,
            opcode=opcode,
        )

    @checks("FT212")
    def _enosys_again(self, idx: int, unique: int, opcode: int, message: str) -> None:
        self._emit("FT212", idx, message, unique=unique, opcode=opcode)

    @checks("FT307")
    def _bad_reply_size(
        self, idx: int, unique: int, opcode: int, rel: tuple[int, ...], message: str
    ) -> None:
        self._emit("FT307", idx, message, unique=unique, opcode=opcode, related=rel)

    def _transition(self, event: SessionEvent) -> bool:
        new = SESSION_TRANSITIONS.get((self.state, event))
        if new is None:
            return False
        self.state = new
        return True

    def _request_field(self, data: bytes, struct_name: str, name: str) -> int | None:
        """A request body field (None if absent from the struct or cut from the frame)."""
        r = _layout.field(self._order, struct_name, name) if struct_name else None
        if r is None:
            return None
        s, off = r
        off += IN_HEADER_SIZE
        if len(data) < off + s.size:
            return None
        return int(s.unpack_from(data, off)[0])

    def _notify_field(self, data: bytes, struct_name: str, name: str) -> int | None:
        r = _layout.field(self._order, struct_name, name)
        if r is None:
            return None
        s, off = r
        off += OUT_HEADER_SIZE
        if len(data) < off + s.size:
            return None
        return int(s.unpack_from(data, off)[0])

    def _name_max(self) -> int:
        """The connection's fc->name_max: LOOKUP and notification names (protocol.md §8.1)."""
        n = self.negotiated
        if n.max_pages > 1 and n.kernel_minor >= 43:
            return FUSE_NAME_MAX_LARGE
        return FUSE_NAME_MAX

    def _dirent_name_max(self) -> int:
        """The constant FUSE_NAME_MAX parse_dirfile/parse_dirplusfile apply to a directory
        entry: 4095 since 6.15 (7.43), 1024 before, whatever the connection's name_max."""
        if self.negotiated.kernel_minor >= 43:
            return FUSE_NAME_MAX_LARGE
        return FUSE_NAME_MAX

    # ---- kernel -> daemon ---------------------------------------------------------------
    @checks("FT103", "FT104", "FT303", "FT304", "FT315")
    def _kernel_frame(self, ex: Exchange) -> None:
        rec = ex.record
        data = rec.data
        idx = rec.index
        if rec.orig_len < IN_HEADER_SIZE or not ex.header:
            self._emit(
                "FT303",
                idx,
                f"kernel frame of {rec.orig_len} bytes, shorter than the "
                f"{IN_HEADER_SIZE}-byte fuse_in_header",
            )
            return
        length, opcode, unique, nodeid, _uid, _gid, _pid, extlen, _pad = ex.header
        self.summary.requests += 1
        if length != rec.orig_len:
            self._emit(
                "FT304",
                idx,
                f"in.len is {length} but the frame is {rec.orig_len} bytes",
                unique=unique,
                opcode=opcode,
            )
        cut = len(data) < rec.orig_len
        if cut and not self._cut_reported:
            self._cut(rec, unique, opcode)
        spec = _OPS.get(opcode)
        body_ok = self.bodies and not cut
        if (
            spec is not None
            and length == rec.orig_len
            and opcode != Opcode.INIT
            and opcode != Opcode.CUSE_INIT
        ):
            self._check_length(data, idx, unique, spec, length, extlen, body_ok)

        if opcode == Opcode.INTERRUPT:
            self._interrupt(rec, unique, data if body_ok else None)
            return
        if spec is not None and not spec.has_reply:
            # FORGET, BATCH_FORGET, NOTIFY_REPLY: no id bookkeeping, never answered
            self._no_reply.add(unique & ~FUSE_INT_REQ_BIT, idx)
            if self.state is SessionState.UNINIT:
                self._before_init(idx, unique, opcode)
            if body_ok and spec.lookup is LookupEffect.FORGET:
                n = self._request_field(data, "fuse_forget_in", "nlookup")
                if n is not None:
                    self._forget(idx, unique, opcode, nodeid, n)
            elif body_ok and spec.lookup is LookupEffect.BATCH_FORGET:
                self._batch_forget(idx, unique, opcode, data)
            elif body_ok and opcode == Opcode.NOTIFY_REPLY:
                self._notify_reply(idx, unique, nodeid, data)
            return

        # an ordinary request
        if unique == 0 or unique & FUSE_INT_REQ_BIT:
            self._emit(
                "FT103",
                idx,
                f"request id {unique:#x} is {'zero' if not unique else 'odd'}",
                unique=unique,
                opcode=opcode,
            )
        key = unique & ~FUSE_INT_REQ_BIT
        if self._int_waiting:
            self._int_waiting.pop(key, None)
        if opcode == Opcode.INIT or opcode == Opcode.CUSE_INIT:
            self._init_request(rec, unique, opcode, data)
        elif self.state is not SessionState.READY and self.state is not SessionState.FAILED:
            self._before_init(idx, unique, opcode)
        old = ex.replaced.state if ex.replaced is not None else None
        if old is not None:
            self._emit(
                "FT104",
                idx,
                f"id {unique:#x} reused while {opcode_name(old.opcode)} "
                f"(frame {old.frame}) is outstanding",
                unique=unique,
                opcode=opcode,
                related=(old.frame,),
            )
        if opcode in self._enosys:
            self._enosys_again(
                idx,
                unique,
                opcode,
                f"{opcode_name(opcode)} sent again after the daemon answered ENOSYS",
            )
        if (
            spec is not None
            and extlen
            and (not spec.extensions or self.negotiated.kernel_minor < 38)
        ):
            why = (
                "this operation"
                if not spec.extensions
                else f"a 7.{self.negotiated.kernel_minor} kernel"
            )
            self._emit(
                "FT315",
                idx,
                f"total_extlen {extlen} on {opcode_name(opcode)}: {why} cannot "
                "carry an extension block",
                unique=unique,
                opcode=opcode,
            )
        pend = Pending(opcode, idx, rec.channel, nodeid, t_ns=rec.t_ns)
        if body_ok and spec is not None:
            if nodeid and spec.header_nodeid:
                self._check_nodeid(idx, unique, opcode, nodeid)
            self._request_body(rec, unique, spec, pend)
        ex.state = pend

    def _length_rule(self, spec: registry.OpSpec) -> tuple[int, list[tuple[str, str, int]]] | None:
        """(fixed bytes, [(struct, count field, unit)]) of a request; None if it has strings
        (those are measured by :meth:`_walk_length`)."""
        fixed = 0
        var: list[tuple[str, str, int]] = []
        first = ""
        for a in spec.request:
            if a.kind is ArgKind.STRUCT and a.struct:
                fixed += _layout.size_of(a.struct, self.negotiated)
                first = first or a.struct
            elif a.kind is ArgKind.BYTES and a.length_from:
                var.append((first, a.length_from, 1))
            elif a.kind is ArgKind.ARRAY and a.length_from and a.struct:
                unit = 8 if a.struct == "u64" else _layout.plain_size(self._order, a.struct)
                var.append((first, a.length_from, unit))
            elif a.kind is not ArgKind.EXT:
                return None
        return fixed, var

    @checks("FT318")
    def _check_length(
        self,
        data: bytes,
        idx: int,
        unique: int,
        spec: registry.OpSpec,
        length: int,
        extlen: int,
        body_ok: bool,
    ) -> None:
        opcode = spec.opcode
        if opcode in self._len_rules:
            rule = self._len_rules[opcode]
        else:
            rule = self._len_rules[opcode] = self._length_rule(spec)
        if rule is None:
            # strings: measured up to their NUL, by the layout the negotiation selects
            if not body_ok:
                return
            want = self._walk_length(data, spec, length, extlen)
            if want == 0:
                return
            if want < 0:
                self._emit(
                    "FT318",
                    idx,
                    f"{opcode_name(opcode)} has in.len {length}; a string argument has no "
                    "NUL before it ends",
                    unique=unique,
                    opcode=opcode,
                )
                return
        else:
            fixed, var = rule
            want = IN_HEADER_SIZE + fixed + (8 * extlen if spec.extensions else 0)
            for struct_name, fname, unit in var:
                if not body_ok:
                    return
                n = self._request_field(data, struct_name, fname)
                if n is None:
                    return
                want += n * unit
        if length != want:
            self._emit(
                "FT318",
                idx,
                f"{opcode_name(opcode)} has in.len {length}; its arguments make {want}",
                unique=unique,
                opcode=opcode,
            )

    def _walk_length(self, data: bytes, spec: registry.OpSpec, length: int, extlen: int) -> int:
        """The length a request's arguments make, strings measured up to their NUL (-1: a
        string without one; 0: not measurable)."""
        pos = IN_HEADER_SIZE
        first = ""
        neg = self.negotiated
        for a in spec.request:
            kind = a.kind
            if kind is ArgKind.STRUCT and a.struct:
                pos += _layout.size_of(a.struct, neg)
                first = first or a.struct
            elif kind is ArgKind.CSTRING:
                nul = data.find(b"\0", pos, length)
                if nul < 0:
                    return -1
                pos = nul + 1
            elif kind is ArgKind.BYTES and a.length_from:
                n = self._request_field(data, first, a.length_from)
                if n is None:
                    return 0
                pos += n
            elif kind is ArgKind.ARRAY and a.length_from and a.struct:
                n = self._request_field(data, first, a.length_from)
                if n is None:
                    return 0
                unit = 8 if a.struct == "u64" else _layout.plain_size(self._order, a.struct)
                pos += n * unit
            elif kind is ArgKind.EXT:
                pos += 8 * extlen
            else:
                return 0
        return pos

    @checks("FT402")
    def _before_init(self, idx: int, unique: int, opcode: int) -> None:
        if self._early_reported:
            return
        self._early_reported = True
        self._emit(
            "FT402",
            idx,
            f"{opcode_name(opcode)} arrives before INIT was answered (further ones not reported)",
            unique=unique,
            opcode=opcode,
        )

    @checks("FT105", "FT412")
    def _init_request(self, rec: Record, unique: int, opcode: int, data: bytes) -> None:
        idx = rec.index
        if self._init_seen:
            self._emit(
                "FT412",
                idx,
                f"second {opcode_name(opcode)} on the connection",
                unique=unique,
                opcode=opcode,
            )
            return
        self._init_seen = True
        self._init_key = unique & ~FUSE_INT_REQ_BIT
        self._init_frame = idx
        if unique != 2:
            self._emit(
                "FT105",
                idx,
                f"{opcode_name(opcode)} has id {unique:#x}, not 2",
                unique=unique,
                opcode=opcode,
            )
        self._transition(SessionEvent.INIT_REQUEST)
        if opcode == Opcode.INIT:
            self._len_rules.clear()  # the connection learnt the kernel's side

    @checks("FT202", "FT203")
    def _check_nodeid(self, idx: int, unique: int, opcode: int, nodeid: int) -> None:
        if nodeid == FUSE_ROOT_ID or nodeid in self.nodes or self._counts_lost:
            return
        if self._reported_nodes.get(nodeid) is not None:
            return
        self._reported_nodes.add(nodeid, idx)
        gone = self._forgotten.get(nodeid)
        if gone is not None:
            self._emit(
                "FT202",
                idx,
                f"{opcode_name(opcode)} names node id {nodeid}, forgotten at frame {gone}",
                unique=unique,
                opcode=opcode,
                related=(gone,),
            )
        else:
            self._emit(
                "FT203",
                idx,
                f"{opcode_name(opcode)} names node id {nodeid}, which no entry reply announced",
                unique=unique,
                opcode=opcode,
            )

    def _request_body(self, rec: Record, unique: int, spec: registry.OpSpec, pend: Pending) -> None:
        data = rec.data
        idx = rec.index
        opcode = spec.opcode
        first = spec.request[0] if spec.request else None
        sname = first.struct if first is not None and first.struct else ""
        info = pend.info
        # fields the reply checks need
        readers = self._info_readers.get(sname)
        if readers is None:
            readers = self._info_readers[sname] = [
                (name, r[0], r[1] + IN_HEADER_SIZE)
                for name in _INFO_FIELDS
                if sname and (r := _layout.field(self._order, sname, name)) is not None
            ]
        end = len(data)
        for name, st, off in readers:
            if off + st.size <= end:
                info[name] = st.unpack_from(data, off)[0]
        for fname in spec.node_fields:
            other = info.get(fname)
            if other:
                self._check_nodeid(idx, unique, opcode, other)
        if opcode in _NAMED:
            pend.names = names = self._names_in(data, opcode)
            if opcode == Opcode.LOOKUP and names:
                looked = names[0]
                info["dot"] = int(looked == b"." or looked == b"..")
                if len(looked) > self._name_max():
                    self._long_lookup(idx, unique, len(looked))
            if opcode == Opcode.RENAME2:
                rflags = self._request_field(data, sname, "flags")
                if rflags is not None:
                    info["rename_flags"] = rflags
        elif opcode == Opcode.IOCTL:
            ioctl_flags = self._request_field(data, sname, "flags")
            if ioctl_flags is not None:
                info["ioctl_flags"] = ioctl_flags
        # file handles
        h = spec.handle
        if h is HandleEffect.USES_FH:
            if spec.fh_when is not None:
                flags = self._request_field(data, sname, spec.fh_when[0])
                if flags is None or not flags & spec.fh_when[1]:
                    return
            kind = spec.fh_kind
            for i, fname in enumerate(spec.fh_fields):
                fh = self._request_field(data, sname, fname)
                if fh is None:
                    continue
                if fname == "fh":
                    info["fh"] = fh
                node = pend.nodeid
                if spec.fh_nodes and spec.fh_nodes[i]:
                    node = info.get(spec.fh_nodes[i], node)
                self._check_fh(idx, unique, opcode, node, fh, kind)
        elif h in (HandleEffect.RELEASES, HandleEffect.RELEASES_DIR):
            fh = self._request_field(data, sname, "fh")
            if fh is not None:
                self._release(idx, unique, opcode, pend.nodeid, fh, h is HandleEffect.RELEASES_DIR)

    def _names_in(self, data: bytes, opcode: int) -> tuple[bytes, ...]:
        """The NUL-terminated names a request carries (at most two), in wire order."""
        start, count = _NAMED[opcode]
        pos = IN_HEADER_SIZE + _layout.size_of(start, self.negotiated) if start else IN_HEADER_SIZE
        out = []
        for _ in range(count):
            nul = data.find(b"\0", pos)
            if nul < 0:
                break
            out.append(data[pos:nul])
            pos = nul + 1
        return tuple(out)

    @checks("FT321")
    def _long_lookup(self, idx: int, unique: int, n: int) -> None:
        self._emit(
            "FT321",
            idx,
            f"LOOKUP of a {n}-byte name; the connection's name_max is {self._name_max()} "
            "(the kernel answers ENAMETOOLONG without sending it)",
            unique=unique,
            opcode=Opcode.LOOKUP,
        )

    @checks("FT209")
    def _check_fh(
        self, idx: int, unique: int, opcode: int, nodeid: int, fh: int, kind: HandleKind
    ) -> None:
        handles = self.handles
        if kind is HandleKind.EITHER:
            if handles.get((nodeid, fh, False)) or handles.get((nodeid, fh, True)):
                return
            is_dir = False
        else:
            is_dir = kind is HandleKind.DIR
            if handles.get((nodeid, fh, is_dir)):
                return
        if fh == 0 and (self.no_open or self.no_opendir):
            return
        key = (nodeid, fh, is_dir)
        if key in self._reported_fhs:
            return  # one finding per unknown handle, not one per request using it
        self._reported_fhs.add(key, idx)
        if self._fh_open.get(fh):
            self._foreign_handle(idx, unique, opcode, nodeid, fh, kind)
            return
        gone = self._released.get(key)
        if gone is None and kind is HandleKind.EITHER:
            gone = self._released.get((nodeid, fh, True))
        if gone is not None:
            self._emit(
                "FT209",
                idx,
                f"{opcode_name(opcode)} uses fh {fh:#x}, released at frame {gone}",
                unique=unique,
                opcode=opcode,
                related=(gone,),
            )
        else:
            self._unknown_handle(idx, unique, opcode, fh, "uses")

    @checks("FT208")
    def _unknown_handle(self, idx: int, unique: int, opcode: int, fh: int, verb: str) -> None:
        what = f"uses fh {fh:#x}," if verb == "uses" else f"of fh {fh:#x},"
        self._emit(
            "FT208",
            idx,
            f"{opcode_name(opcode)} {what} which no open reply returned",
            unique=unique,
            opcode=opcode,
        )

    @checks("FT215")
    def _foreign_handle(
        self, idx: int, unique: int, opcode: int, nodeid: int, fh: int, kind: HandleKind
    ) -> None:
        """fh is open, but not as (nodeid, fh, kind): a frame the kernel cannot send."""
        where = sorted(
            f"{'directory' if d else 'file'} handle on node {n}"
            for n, f, d in self.handles
            if f == fh
        )
        want = {HandleKind.FILE: "file", HandleKind.DIR: "directory"}.get(kind, "file or directory")
        self._emit(
            "FT215",
            idx,
            f"{opcode_name(opcode)} names fh {fh:#x} on node {nodeid} as a {want} handle, "
            f"but it is open only as {', '.join(where[:3])}",
            unique=unique,
            opcode=opcode,
        )

    @checks("FT210", "FT211")
    def _release(
        self, idx: int, unique: int, opcode: int, nodeid: int, fh: int, is_dir: bool
    ) -> None:
        key = (nodeid, fh, is_dir)
        handles = self.handles
        n = handles.get(key, 0)
        if n:
            if n == 1:
                del handles[key]
                self.direct_io.discard(key)
            else:
                handles[key] = n - 1
            c = self._fh_open.get(fh, 0) - 1
            if c > 0:
                self._fh_open[fh] = c
            else:
                self._fh_open.pop(fh, None)
            self._released.add(key, idx)
            return
        if self._fh_open.get(fh):
            self._foreign_handle(
                idx, unique, opcode, nodeid, fh, HandleKind.DIR if is_dir else HandleKind.FILE
            )
            return
        gone = self._released.get(key)
        if gone is not None:
            self._emit(
                "FT210",
                idx,
                f"{opcode_name(opcode)} of fh {fh:#x}, already released at frame {gone}",
                unique=unique,
                opcode=opcode,
                related=(gone,),
            )
        elif self.no_opendir if is_dir else self.no_open:
            self._emit(
                "FT211",
                idx,
                f"{opcode_name(opcode)} of fh {fh:#x} although "
                f"{'OPENDIR' if is_dir else 'OPEN'} answered ENOSYS (no-open mode)",
                unique=unique,
                opcode=opcode,
            )
        else:
            self._unknown_handle(idx, unique, opcode, fh, "of")

    @checks("FT201")
    def _forget(self, idx: int, unique: int, opcode: int, nodeid: int, n: int) -> None:
        node = self.nodes.get(nodeid)
        held = node.count if node is not None else 0
        if n > held and not self._counts_lost:
            if nodeid == FUSE_ROOT_ID and node is None:
                what = "the root, which the kernel never forgets"
            else:
                what = f"node id {nodeid}, which holds {held}"
            self._emit(
                "FT201",
                idx,
                f"{opcode_name(opcode)} drops {n} lookups of {what}",
                unique=unique,
                opcode=opcode,
            )
        if node is None:
            return
        node.count -= n
        if node.count <= 0:
            del self.nodes[nodeid]
            self._forgotten.add(nodeid, idx)

    def _batch_forget(self, idx: int, unique: int, opcode: int, data: bytes) -> None:
        count = self._request_field(data, "fuse_batch_forget_in", "count")
        if count is None:
            return
        pair = self._f.u64u64
        step = self._f.forget_one
        off = IN_HEADER_SIZE + self._f.batch_head
        for _ in range(count):
            if off + step > len(data):
                break
            nodeid, n = pair.unpack_from(data, off)
            off += step
            self._forget(idx, unique, opcode, nodeid, n)

    @checks("FT506", "FT507")
    def _interrupt(self, rec: Record, unique: int, data: bytes | None) -> None:
        idx = rec.index
        opcode = Opcode.INTERRUPT
        if self._interrupts_off:
            self._enosys_again(
                idx, unique, opcode, "INTERRUPT sent after an interrupt reply answered ENOSYS"
            )
        target = unique & ~FUSE_INT_REQ_BIT
        if data is not None:
            body_target = self._request_field(data, "fuse_interrupt_in", "unique")
            if body_target is not None:
                if unique != body_target | FUSE_INT_REQ_BIT:
                    self._emit(
                        "FT507",
                        idx,
                        f"INTERRUPT header id {unique:#x}, target {body_target:#x}",
                        unique=unique,
                        opcode=opcode,
                    )
                target = body_target
        if self.connection.find(target) is None:
            hit = self._answered.get(target)
            answered, after = hit if hit is not None else (None, None)
            # this INTERRUPT is already counted in summary.requests
            if after is not None and self.summary.requests - 1 - after <= CROSSING_KERNEL_FRAMES:
                return  # sent while the request was outstanding; crossed its reply
            if answered is None:
                # not seen (yet): with several readers the target may be recorded after
                # its INTERRUPT; judged at the end of the capture (FT510)
                if len(self._int_waiting) < MEMORY:
                    self._int_waiting[target] = idx
                return
            when = f" (answered at frame {answered})"
            self._emit(
                "FT506",
                idx,
                f"INTERRUPT for id {target:#x}, which is not outstanding{when}",
                unique=unique,
                opcode=opcode,
                related=() if answered is None else (answered,),
            )

    # ---- daemon -> kernel ---------------------------------------------------------------
    @checks("FT107", "FT110", "FT301", "FT302", "FT305", "FT306")
    def _daemon_frame(self, ex: Exchange) -> None:
        rec = ex.record
        data = rec.data
        idx = rec.index
        if rec.orig_len < OUT_HEADER_SIZE or not ex.header:
            self._emit(
                "FT301",
                idx,
                f"daemon message of {rec.orig_len} bytes, shorter than the "
                f"{OUT_HEADER_SIZE}-byte fuse_out_header",
            )
            return
        length, error, unique = ex.header
        if length != rec.orig_len:
            self._emit(
                "FT302",
                idx,
                f"out.len is {length} but {rec.orig_len} bytes were written "
                "(write() fails with EINVAL)",
                unique=unique,
            )
            return
        cut = len(data) < rec.orig_len
        if cut and not self._cut_reported:
            self._cut(rec, unique, None)
        if unique == 0:
            self.summary.notifications += 1
            self._notification(rec, error, cut)
            return
        self.summary.replies += 1
        if error > 0 or error <= ERRNO_FLOOR:
            self._emit(
                "FT305",
                idx,
                f"error {error} is outside (-512, 0] (write() fails with "
                "EINVAL, the request stays pending)",
                unique=unique,
            )
            return
        key = unique & ~FUSE_INT_REQ_BIT
        payload = rec.orig_len - OUT_HEADER_SIZE
        req = ex.request
        pend = req.state if req is not None else None
        if pend is None:
            # not on this channel's table; on another one, it is the wrong fd (W6)
            other = self.connection.find(unique)
            if other is None or other.state is None:
                self._unmatched(idx, unique, key, rec.channel)
                return
            pend = other.state
        opcode = pend.opcode
        if pend.channel != rec.channel:
            self._emit(
                "FT110",
                idx,
                f"reply on channel {rec.channel} to {opcode_name(opcode)} read "
                f"on channel {pend.channel} (ENOENT; the request keeps waiting)",
                unique=unique,
                opcode=opcode,
                related=(pend.frame,),
            )
            return
        if unique & FUSE_INT_REQ_BIT:
            # an interrupt reply: the target stays outstanding
            if payload:
                self._emit(
                    "FT107",
                    idx,
                    f"interrupt reply with {payload} payload bytes (EINVAL)",
                    unique=unique,
                    opcode=Opcode.INTERRUPT,
                    related=(pend.frame,),
                )
            elif error == -ENOSYS:
                self._interrupts_off = True
            return
        self._answered.add(key, (idx, self.summary.requests))
        self._before = ex.negotiated  # the session in force before this reply
        timeout = ex.negotiated.request_timeout
        if timeout and rec.t_ns - pend.t_ns > timeout * 1_000_000_000:
            self._late(idx, unique, pend, rec.t_ns, answered=True)
        spec = _OPS.get(opcode)
        if error:
            if payload:
                self._emit(
                    "FT306",
                    idx,
                    f"{opcode_name(opcode)} error reply {error} carries "
                    f"{payload} payload bytes (the caller gets EIO)",
                    unique=unique,
                    opcode=opcode,
                    related=(pend.frame,),
                )
                if pend.frame == self._init_frame:
                    self._init_failed(idx, unique, opcode, pend, error)
                return
            if pend.frame == self._init_frame:
                self._init_failed(idx, unique, opcode, pend, error)
            elif error == -ENOSYS and spec is not None and spec.enosys_remembered:
                self._enosys.add(opcode)
                if opcode == Opcode.OPEN:
                    self.no_open = True
                elif opcode == Opcode.OPENDIR:
                    self.no_opendir = True
            return
        if spec is None:
            return
        body_ok = self.bodies and not cut
        self._success(rec, unique, spec, pend, payload, body_ok)

    @checks("FT101", "FT102", "FT106", "FT109", "FT401")
    def _unmatched(self, idx: int, unique: int, key: int, channel: int) -> None:
        if (
            self.state is SessionState.AWAIT_INIT_REPLY or self.state is SessionState.UNINIT
        ) and key != self._init_key:
            self._emit(
                "FT401",
                idx,
                f"reply to id {unique:#x} before the INIT reply (ENOENT)",
                unique=unique,
            )
            return
        was = self.connection.resent.get(key | channel << 64 if channel else key)
        old = was.state if was is not None else None
        if old is not None:
            self._emit(
                "FT109",
                idx,
                f"reply to {opcode_name(old.opcode)} under id {unique:#x} "
                f"after NOTIFY_RESEND; the kernel expects {unique | FUSE_UNIQUE_RESEND:#x}",
                unique=unique,
                opcode=old.opcode,
                related=(old.frame,),
            )
            return
        hit = self._answered.get(key)
        first = hit[0] if hit is not None else None
        if unique & FUSE_INT_REQ_BIT:
            if first is not None:
                self._late_interrupt_reply(idx, unique, key, first)
                return
        elif first is not None:
            self._emit(
                "FT102",
                idx,
                f"second reply to id {unique:#x}, first answered at frame {first} (ENOENT)",
                unique=unique,
                related=(first,),
            )
            return
        nr = self._no_reply.get(key)
        if nr is not None:
            self._emit(
                "FT106",
                idx,
                f"reply to id {unique:#x}, a message that takes no reply (frame {nr}; ENOENT)",
                unique=unique,
                related=(nr,),
            )
            return
        self._emit(
            "FT101",
            idx,
            f"reply to id {unique:#x}, which no outstanding request has (ENOENT)",
            unique=unique,
        )

    @checks("FT108")
    def _late_interrupt_reply(self, idx: int, unique: int, key: int, first: int | None) -> None:
        when = f", answered at frame {first}" if first is not None else ", already answered"
        self._emit(
            "FT108",
            idx,
            f"interrupt reply for id {key:#x}{when} (ENOENT)",
            unique=unique,
            opcode=Opcode.INTERRUPT,
            related=() if first is None else (first,),
        )

    @checks("FT404")
    def _init_failed(self, idx: int, unique: int, opcode: int, pend: Pending, error: int) -> None:
        self._emit(
            "FT404",
            idx,
            f"{opcode_name(opcode)} answered with error {error}: every later "
            "request fails with ECONNREFUSED",
            unique=unique,
            opcode=opcode,
            related=(pend.frame,),
        )
        self._len_rules.clear()  # the connection marked the session failed
        self._transition(SessionEvent.INIT_REPLY_BAD)

    # ---- successful replies ---------------------------------------------------------------
    @checks("FT310", "FT311")
    def _success(
        self,
        rec: Record,
        unique: int,
        spec: registry.OpSpec,
        pend: Pending,
        payload: int,
        body_ok: bool,
    ) -> None:
        idx = rec.index
        opcode = spec.opcode
        neg = self.negotiated
        info = pend.info
        shape = spec.reply
        rel = (pend.frame,)
        name = spec.name  # for messages
        if shape is ReplyShape.EMPTY:
            if payload:
                self._bad_reply_size(
                    idx,
                    unique,
                    opcode,
                    rel,
                    f"{name} takes a header-only reply, got {payload} payload "
                    "bytes (EINVAL; the caller gets EIO)",
                )
            elif pend.names and body_ok:
                self._names_removed(pend)
            return
        if shape is ReplyShape.FIXED:
            want = sum(_layout.size_of(a.struct or "", neg) for a in spec.reply_args)
            if payload != want:
                self._bad_reply_size(
                    idx,
                    unique,
                    opcode,
                    rel,
                    f"{name} reply has {payload} payload bytes, must be {want} "
                    "(EINVAL; the caller gets EIO)",
                )
                return
        elif shape is ReplyShape.VARIABLE and not self._variable_ok(
            idx, unique, spec, pend, payload, rec.data
        ):
            return
        if opcode == Opcode.INIT or opcode == Opcode.CUSE_INIT:
            if pend.frame == self._init_frame:
                self._init_reply(rec, unique, pend)
            return
        if not body_ok:
            if self.bodies and spec.lookup in (LookupEffect.ENTRY, LookupEffect.READDIRPLUS):
                self._counts_lost = True
            return
        data = rec.data
        if spec.lookup is LookupEffect.ENTRY:
            accepted = self._entry_reply(idx, unique, spec, pend, data, OUT_HEADER_SIZE)
            if accepted and spec.handle is HandleEffect.OPENS:
                esize = _layout.size_of("fuse_entry_out", neg)
                node = self._f.u64.unpack_from(data, OUT_HEADER_SIZE + self._f.entry_nodeid)[0]
                self._open_reply(data, OUT_HEADER_SIZE + esize, node, False)
            return
        h = spec.handle
        if h is HandleEffect.OPENS or h is HandleEffect.OPENS_DIR:
            self._open_reply(data, OUT_HEADER_SIZE, pend.nodeid, h is HandleEffect.OPENS_DIR)
        elif opcode == Opcode.GETATTR or opcode == Opcode.SETATTR:
            self._attr_reply(idx, unique, opcode, pend, data, OUT_HEADER_SIZE)
        elif opcode == Opcode.READDIR:
            self._dirents(idx, unique, opcode, data, plus=False)
        elif opcode == Opcode.READDIRPLUS:
            self._dirents(idx, unique, opcode, data, plus=True, parent=pend.nodeid)
        elif opcode == Opcode.WRITE:
            got = self._f.u32.unpack_from(data, OUT_HEADER_SIZE + self._f.write_out_size)[0]
            asked = info.get("size")
            if asked is not None and got > asked:
                self._emit(
                    "FT310",
                    idx,
                    f"WRITE reply says {got} bytes written of {asked} sent (the caller gets EIO)",
                    unique=unique,
                    opcode=opcode,
                    related=rel,
                )
        elif opcode == Opcode.COPY_FILE_RANGE or opcode == Opcode.COPY_FILE_RANGE_64:
            if opcode == Opcode.COPY_FILE_RANGE:
                got = self._f.u32.unpack_from(data, OUT_HEADER_SIZE)[0]
            else:
                got = self._f.u64.unpack_from(data, OUT_HEADER_SIZE)[0]
            asked = info.get("len")
            if asked is not None and got > asked:
                self._emit(
                    "FT311",
                    idx,
                    f"{name} reply says {got} bytes copied of {asked} asked (the caller gets EIO)",
                    unique=unique,
                    opcode=opcode,
                    related=rel,
                )
        elif opcode == Opcode.LISTXATTR and info.get("size"):
            self._listxattr(idx, unique, data)
        elif opcode == Opcode.READ:
            self._short_read(idx, unique, pend, payload)
        elif opcode == Opcode.GETLK:
            self._getlk_reply(idx, unique, pend, data)
        elif opcode == Opcode.IOCTL:
            self._ioctl_reply(idx, unique, pend, data, payload)

    def _ioctl_out(self, data: bytes) -> dict[str, Any]:
        return _layout.unpack_padded(self._order, "fuse_ioctl_out", data[OUT_HEADER_SIZE:])

    @checks("FT319")
    def _getlk_reply(self, idx: int, unique: int, pend: Pending, data: bytes) -> None:
        lk = _layout.unpack_padded(self._order, "fuse_lk_out", data[OUT_HEADER_SIZE:])["lk"]
        kind, start, end = lk["type"], lk["start"], lk["end"]
        if kind == F_UNLCK:
            return
        if kind not in (F_RDLCK, F_WRLCK):
            why = f"lock type {kind} (F_RDLCK {F_RDLCK}, F_WRLCK {F_WRLCK}, F_UNLCK {F_UNLCK})"
        elif start > LLONG_MAX or end > LLONG_MAX:
            why = f"range {start}..{end} beyond LLONG_MAX"
        elif end < start:
            why = f"range {start}..{end} ends before it starts"
        else:
            return
        self._emit(
            "FT319",
            idx,
            f"GETLK reply with {why} (the caller gets EIO)",
            unique=unique,
            opcode=Opcode.GETLK,
            related=(pend.frame,),
        )

    @checks("FT320")
    def _ioctl_reply(self, idx: int, unique: int, pend: Pending, data: bytes, payload: int) -> None:
        head = _layout.size_of("fuse_ioctl_out", self.negotiated)
        out = self._ioctl_out(data)
        if not out["flags"] & IoctlFlag.RETRY:
            return
        asked = pend.info.get("ioctl_flags")
        in_iovs, out_iovs = out["in_iovs"], out["out_iovs"]
        if asked is not None and not asked & IoctlFlag.UNRESTRICTED:
            why = "asks for a retry of a restricted ioctl (no FUSE_IOCTL_UNRESTRICTED)"
        elif in_iovs + out_iovs > FUSE_IOCTL_MAX_IOV:
            why = (
                f"asks for a retry with {in_iovs} + {out_iovs} iovecs, more than "
                f"{FUSE_IOCTL_MAX_IOV} (the caller gets ENOMEM)"
            )
        else:
            size = 8 if asked is not None and asked & IoctlFlag.COMPAT else 16
            want = (in_iovs + out_iovs) * size
            if payload - head == want:
                return
            why = (
                f"asks for a retry with {in_iovs} + {out_iovs} iovecs but carries "
                f"{payload - head} bytes of them, not {want}"
            )
        if "ENOMEM" not in why:
            why += " (the caller gets EIO)"
        self._emit(
            "FT320",
            idx,
            f"IOCTL reply {why}",
            unique=unique,
            opcode=Opcode.IOCTL,
            related=(pend.frame,),
        )

    @checks("FT308", "FT309")
    def _variable_ok(
        self,
        idx: int,
        unique: int,
        spec: registry.OpSpec,
        pend: Pending,
        payload: int,
        data: bytes,
    ) -> bool:
        opcode = spec.opcode
        info = pend.info
        name = opcode_name(opcode)
        rel = (pend.frame,)
        bound: int | None
        if spec.reply_probe is not None:
            asked = info.get("size")
            if asked is None:
                return True
            if asked == 0:
                want = sum(
                    _layout.size_of(a.struct or "", self.negotiated) for a in spec.reply_probe
                )
                if payload != want:
                    self._emit(
                        "FT309",
                        idx,
                        f"{name} with size 0 asks for the length; the reply "
                        f"must be {want} bytes, got {payload} (the caller gets EIO)",
                        unique=unique,
                        opcode=opcode,
                        related=rel,
                    )
                    return False
                return True
            bound = asked
        elif opcode == Opcode.READLINK:
            bound = PAGE_SIZE - 1
        elif opcode == Opcode.INIT:
            bound = INIT_OUT_MAX
        elif opcode == Opcode.CUSE_INIT:
            bound = _layout.size_of("cuse_init_out", self.negotiated) + CUSE_DEVINFO_MAX
        elif opcode == Opcode.IOCTL:
            head = _layout.size_of("fuse_ioctl_out", self.negotiated)
            if payload < head:
                self._bad_reply_size(
                    idx,
                    unique,
                    opcode,
                    rel,
                    f"IOCTL reply has {payload} payload bytes; the {head}-byte "
                    "fuse_ioctl_out must be present (the caller gets EIO)",
                )
                return False
            out_size = info.get("out_size")
            bound = None if out_size is None else head + out_size
            if bound is not None and self._ioctl_out(data)["flags"] & IoctlFlag.RETRY:
                # the iovecs of a retry may fill the page the kernel always provides
                bound = head + max(out_size or 0, PAGE_SIZE)
        else:
            bound = info.get("size")
        if bound is not None and payload > bound:
            self._emit(
                "FT308",
                idx,
                f"{name} reply has {payload} payload bytes, more than the "
                f"{bound} allowed (EINVAL; the caller gets EIO)",
                unique=unique,
                opcode=opcode,
                related=rel,
            )
            return False
        return True

    @checks("FT403", "FT405", "FT406", "FT407", "FT408", "FT409", "FT410", "FT411")
    def _init_reply(self, rec: Record, unique: int, pend: Pending) -> None:
        idx = rec.index
        opcode = pend.opcode
        if opcode == Opcode.CUSE_INIT:
            self._transition(SessionEvent.INIT_REPLY_OK)
            return
        out = self._f.init_out(rec.data[OUT_HEADER_SIZE:])
        before = self._before
        neg = self.negotiated  # the connection learnt it from this reply
        self._len_rules.clear()
        rel = (pend.frame,)
        if out["major"] != 7:
            self._emit(
                "FT403",
                idx,
                f"INIT reply major {out['major']}, not 7: INIT fails and every "
                "request gets ECONNREFUSED",
                unique=unique,
                opcode=opcode,
                related=rel,
            )
            self._transition(SessionEvent.INIT_REPLY_BAD)
            return
        self._transition(SessionEvent.INIT_REPLY_OK)
        if out["minor"] > before.kernel_minor:
            self._emit(
                "FT406",
                idx,
                f"INIT reply minor 7.{out['minor']} above the kernel's 7.{before.kernel_minor}",
                unique=unique,
                opcode=opcode,
                related=rel,
            )
        if out["minor"] >= 6:
            ext = bool(out["flags"] & InitFlag.INIT_EXT)
            if out["flags2"] and not ext:
                self._emit(
                    "FT407",
                    idx,
                    f"INIT reply flags2 {out['flags2']:#x} without INIT_EXT: "
                    "the kernel ignores them",
                    unique=unique,
                    opcode=opcode,
                    related=rel,
                )
            extra = neg.flags & ~before.offered
            if extra:
                names = ", ".join(_flag_names(extra))
                self._emit(
                    "FT405",
                    idx,
                    f"INIT reply accepts flags the kernel did not offer: {names}",
                    unique=unique,
                    opcode=opcode,
                    related=rel,
                )
        if out["minor"] >= 5 and out["max_write"] < FUSE_MIN_MAX_WRITE:
            self._emit(
                "FT408",
                idx,
                f"max_write {out['max_write']} below 4096 (the kernel uses 4096)",
                unique=unique,
                opcode=opcode,
                related=rel,
            )
        if neg.flags & InitFlag.MAX_PAGES and out["max_pages"] == 0:
            self._emit(
                "FT409",
                idx,
                "MAX_PAGES accepted with max_pages 0",
                unique=unique,
                opcode=opcode,
                related=rel,
            )
        if (
            neg.flags & InitFlag.ALLOW_IDMAP
            and self.mount_options is not None
            and "default_permissions" not in self.mount_options
        ):
            self._emit(
                "FT410",
                idx,
                "ALLOW_IDMAP accepted but the mount has no default_permissions: INIT fails",
                unique=unique,
                opcode=opcode,
                related=rel,
            )
        if neg.flags & InitFlag.PASSTHROUGH:
            why = []
            if neg.flags & InitFlag.WRITEBACK_CACHE:
                why.append("WRITEBACK_CACHE is also set")
            if not 1 <= out["max_stack_depth"] <= 2:
                why.append(f"max_stack_depth is {out['max_stack_depth']}, not 1..2")
            if why:
                self._emit(
                    "FT411",
                    idx,
                    "PASSTHROUGH is disabled: " + " and ".join(why),
                    unique=unique,
                    opcode=opcode,
                    related=rel,
                )

    @checks("FT204", "FT205")
    def _entry_reply(
        self,
        idx: int,
        unique: int,
        spec: registry.OpSpec,
        pend: Pending,
        data: bytes,
        off: int,
    ) -> bool:
        """Judge an entry_out; count the lookup if the kernel would accept it."""
        f = self._f
        opcode = spec.opcode
        name = opcode_name(opcode)
        nodeid = f.u64.unpack_from(data, off + f.entry_nodeid)[0]
        generation = f.u64.unpack_from(data, off + f.entry_generation)[0]
        mode = f.u32.unpack_from(data, off + f.entry_mode)[0]
        size = f.u64.unpack_from(data, off + f.entry_size)[0]
        rel = (pend.frame,)
        if size > LLONG_MAX:
            self._emit(
                "FT205",
                idx,
                f"{name} reply with size {size}, above LLONG_MAX (EIO)",
                unique=unique,
                opcode=opcode,
                related=rel,
            )
            return False
        if spec.creates:
            if nodeid == 0 or nodeid == FUSE_ROOT_ID:
                self._emit(
                    "FT204",
                    idx,
                    f"{name} reply with node id {nodeid} (the kernel rejects it; "
                    "the caller gets EIO)",
                    unique=unique,
                    opcode=opcode,
                    related=rel,
                )
                return False
        elif nodeid == 0:
            return False  # a negative LOOKUP entry
        elif nodeid == FUSE_ROOT_ID and not pend.info.get("dot"):
            self._emit(
                "FT204",
                idx,
                "LOOKUP of a name returned the root (1); the kernel rejects it with EIO",
                unique=unique,
                opcode=opcode,
                related=rel,
            )
            return False
        ftype = mode & S_IFMT
        if ftype not in VALID_FILE_TYPES:
            self._emit(
                "FT205",
                idx,
                f"{name} reply with mode {mode:#o}: not a file type (EIO)",
                unique=unique,
                opcode=opcode,
                related=rel,
            )
            return False
        want = self._wanted_type(spec, pend)
        if want is not None and ftype != want:
            self._emit(
                "FT205",
                idx,
                f"{name} reply with file type {ftype:#o}, {want:#o} was asked for (EIO)",
                unique=unique,
                opcode=opcode,
                related=rel,
            )
            return False
        if nodeid == FUSE_ROOT_ID:
            return True
        nlink = f.u32.unpack_from(data, off + f.entry_nlink)[0]
        self._count(idx, unique, opcode, nodeid, generation, ftype, size, rel, nlink)
        if pend.names and not pend.info.get("dot"):
            self._names.add((pend.nodeid, pend.names[0]), nodeid)
        return True

    def _wanted_type(self, spec: registry.OpSpec, pend: Pending) -> int | None:
        if not spec.creates:
            return None
        if spec.file_type is not None:
            return spec.file_type
        if "mode" in pend.info and spec.opcode == Opcode.MKNOD:
            return pend.info["mode"] & S_IFMT
        old = pend.info.get("oldnodeid")
        if old is not None:
            node = self.nodes.get(old)
            return node.ftype if node is not None else None
        return None

    @checks("FT206")
    def _count(
        self,
        idx: int,
        unique: int,
        opcode: int,
        nodeid: int,
        generation: int,
        ftype: int,
        size: int,
        rel: tuple[int, ...],
        nlink: int = 1,
    ) -> None:
        node = self.nodes.get(nodeid)
        if node is None:
            self.nodes[nodeid] = Node(1, generation, ftype, size, nlink)
            self._forgotten.pop(nodeid)
            self._reported_nodes.pop(nodeid)
            return
        name = opcode_name(opcode)
        if node.generation != generation and node.unlinked:
            self._recycled(idx, unique, opcode, nodeid, node, generation, ftype, rel)
            node.generation = generation
            node.ftype = ftype
        elif node.generation != generation:
            self._emit(
                "FT206",
                idx,
                f"{name} returns node id {nodeid} with generation {generation}; "
                f"the kernel still holds it with generation {node.generation}",
                unique=unique,
                opcode=opcode,
                related=rel,
            )
            node.generation = generation
        if node.ftype != ftype:
            self._type_changed(idx, unique, opcode, nodeid, node, ftype, rel)
        node.count += 1
        node.size = size
        node.nlink = nlink
        node.unlinked = False

    @checks("FT207")
    def _type_changed(
        self,
        idx: int,
        unique: int,
        opcode: int,
        nodeid: int,
        node: Node,
        ftype: int,
        rel: tuple[int, ...],
    ) -> None:
        self._emit(
            "FT207",
            idx,
            f"{opcode_name(opcode)} gives node id {nodeid} file type {ftype:#o}, earlier "
            f"{node.ftype:#o} (the kernel marks the inode bad)",
            unique=unique,
            opcode=opcode,
            related=rel,
        )
        node.ftype = ftype

    @checks("FT217")
    def _recycled(
        self,
        idx: int,
        unique: int,
        opcode: int,
        nodeid: int,
        node: Node,
        generation: int,
        ftype: int,
        rel: tuple[int, ...],
    ) -> None:
        kind = "" if ftype == node.ftype else f" and file type {ftype:#o} (was {node.ftype:#o})"
        self._emit(
            "FT217",
            idx,
            f"{opcode_name(opcode)} recycles node id {nodeid} with generation {generation}"
            f"{kind}; the old inode (generation {node.generation}) lost its last name, the "
            "kernel makes it stale",
            unique=unique,
            opcode=opcode,
            related=rel,
        )

    def _names_removed(self, pend: Pending) -> None:
        """A successful UNLINK, RMDIR or RENAME(2): the names it removes or moves."""
        op = pend.opcode
        names = pend.names
        parent = pend.nodeid
        if op == Opcode.UNLINK or op == Opcode.RMDIR:
            gone = self._names.pop((parent, names[0]))
            if gone is not None:
                self._lose_name(gone, op == Opcode.RMDIR)
        elif (op == Opcode.RENAME or op == Opcode.RENAME2) and len(names) == 2:
            src_key = (parent, names[0])
            dst_key = (pend.info.get("newdir", parent), names[1])
            src = self._names.pop(src_key)
            dst = self._names.get(dst_key)
            if pend.info.get("rename_flags", 0) & RENAME_EXCHANGE:
                if dst is not None:
                    self._names.add(src_key, dst)
            elif dst is not None and dst != src:
                self._lose_name(dst, False)
            if src is not None:
                self._names.add(dst_key, src)
            else:
                self._names.pop(dst_key)

    def _lose_name(self, nodeid: int, is_dir: bool) -> None:
        node = self.nodes.get(nodeid)
        if node is None:
            return
        if is_dir or node.nlink <= 1 or node.ftype == S_IFDIR:
            node.unlinked = True
        else:
            node.nlink -= 1

    def _attr_reply(
        self, idx: int, unique: int, opcode: int, pend: Pending, data: bytes, off: int
    ) -> None:
        node = self.nodes.get(pend.nodeid)
        if node is None:
            return
        f = self._f
        mode = f.u32.unpack_from(data, off + f.attr_out_mode)[0]
        ftype = mode & S_IFMT
        if ftype != node.ftype:
            self._type_changed(idx, unique, opcode, pend.nodeid, node, ftype, (pend.frame,))
        node.size = f.u64.unpack_from(data, off + f.attr_out_size)[0]

    def _open_reply(self, data: bytes, off: int, nodeid: int, is_dir: bool) -> None:
        f = self._f
        if len(data) < off + 12:
            return
        fh = f.u64.unpack_from(data, off + f.open_fh)[0]
        flags = f.u32.unpack_from(data, off + f.open_flags)[0]
        key = (nodeid, fh, is_dir)
        self.handles[key] = self.handles.get(key, 0) + 1
        self._fh_open[fh] = self._fh_open.get(fh, 0) + 1
        self._released.pop(key)
        self._reported_fhs.pop(key)
        if flags & FopenFlag.DIRECT_IO:
            self.direct_io.add(key)

    @checks("FT313", "FT317")
    def _dirents(
        self, idx: int, unique: int, opcode: int, data: bytes, *, plus: bool, parent: int = 0
    ) -> None:
        f = self._f
        end = len(data)
        off = OUT_HEADER_SIZE
        head = f.direntplus_head if plus else f.dirent_head
        dirent_at = f.direntplus_dirent if plus else 0
        name_max = self._dirent_name_max()
        name = opcode_name(opcode)
        n = 0
        while off < end:
            if off + head > end:
                self._emit(
                    "FT317",
                    idx,
                    f"{name} reply ends with {end - off} bytes that do not "
                    "hold a record header (ignored by the kernel)",
                    unique=unique,
                    opcode=opcode,
                )
                return
            _ino, _cookie, namelen, _type = f.dirent.unpack_from(data, off + dirent_at)
            rec_len = (head + namelen + 7) & ~7
            if namelen == 0 or namelen > name_max:
                self._emit(
                    "FT313",
                    idx,
                    f"{name} entry {n} has namelen {namelen} (getdents fails with EIO)",
                    unique=unique,
                    opcode=opcode,
                )
                return
            if off + head + namelen > end:
                self._emit(
                    "FT317",
                    idx,
                    f"{name} entry {n} overruns the reply (ignored by the kernel)",
                    unique=unique,
                    opcode=opcode,
                )
                return
            ename = data[off + head : off + head + namelen]
            if b"/" in ename:
                self._emit(
                    "FT313",
                    idx,
                    f"{name} entry {n} name {ename!r} contains '/' (getdents fails with EIO)",
                    unique=unique,
                    opcode=opcode,
                )
                return
            if plus and ename not in (b".", b".."):
                nodeid = f.u64.unpack_from(data, off + f.entry_nodeid)[0]
                if nodeid:
                    generation = f.u64.unpack_from(data, off + f.entry_generation)[0]
                    mode = f.u32.unpack_from(data, off + f.entry_mode)[0]
                    size = f.u64.unpack_from(data, off + f.entry_size)[0]
                    ftype = mode & S_IFMT
                    if nodeid == FUSE_ROOT_ID or ftype not in VALID_FILE_TYPES or size > LLONG_MAX:
                        # rejected and balanced at once by FORGET(nodeid, 1)
                        self._rejected_direntplus(idx, unique, n, ename, nodeid, mode, size)
                        node = self.nodes.setdefault(nodeid, Node(0, generation, ftype, size))
                        node.count += 1
                    else:
                        nlink = f.u32.unpack_from(data, off + f.entry_nlink)[0]
                        self._count(idx, unique, opcode, nodeid, generation, ftype, size, (), nlink)
                        self._names.add((parent, ename), nodeid)
            off += rec_len
            n += 1

    @checks("FT216")
    def _rejected_direntplus(
        self, idx: int, unique: int, n: int, ename: bytes, nodeid: int, mode: int, size: int
    ) -> None:
        if nodeid == FUSE_ROOT_ID:
            why = "names the root (node id 1)"
        elif size > LLONG_MAX:
            why = f"has size {size}, above LLONG_MAX"
        else:
            why = f"has mode {mode:#o}: not a file type"
        self._emit(
            "FT216",
            idx,
            f"READDIRPLUS entry {n} {ename!r} {why}; the kernel does not link it (EIO) and "
            f"sends FORGET({nodeid}, 1)",
            unique=unique,
            opcode=Opcode.READDIRPLUS,
        )

    @checks("FT312")
    def _listxattr(self, idx: int, unique: int, data: bytes) -> None:
        body = data[OUT_HEADER_SIZE:]
        if not body:
            return
        if not body.endswith(b"\0") or b"\0\0" in body or body.startswith(b"\0"):
            self._emit(
                "FT312",
                idx,
                f"LISTXATTR data {body[:40]!r} is not a list of non-empty "
                "NUL-terminated names (the caller gets EIO)",
                unique=unique,
                opcode=Opcode.LISTXATTR,
            )

    @checks("FT314")
    def _short_read(self, idx: int, unique: int, pend: Pending, payload: int) -> None:
        info = pend.info
        asked = info.get("size")
        offset = info.get("offset")
        if asked is None or offset is None or payload >= asked:
            return
        if self.negotiated.flags & InitFlag.WRITEBACK_CACHE:
            return
        fh = info.get("fh")
        if fh is not None and (pend.nodeid, fh, False) in self.direct_io:
            return
        node = self.nodes.get(pend.nodeid)
        if node is None or node.size < 0:
            return
        end = offset + payload
        if end < node.size:
            self._emit(
                "FT314",
                idx,
                f"READ of {asked} bytes at {offset} returned {payload}, but the "
                f"file is {node.size} bytes (the kernel will shrink its size to {end})",
                unique=unique,
                opcode=Opcode.READ,
                related=(pend.frame,),
            )

    # ---- notifications --------------------------------------------------------------------
    @checks("FT501", "FT502", "FT503", "FT504", "FT505", "FT508")
    def _notification(self, rec: Record, code: int, cut: bool) -> None:
        idx = rec.index
        data = rec.data
        op = notify_name(code)
        op = op if op.startswith("NOTIFY_") else f"NOTIFY_{op}"
        if self.state is not SessionState.READY:
            self._emit(
                "FT504",
                idx,
                f"notification {notify_name(code)} before the INIT reply (newest kernels: EINVAL)",
                opcode=op,
            )
        nspec = _NOTIFY.get(code)
        if nspec is None:
            self._emit("FT501", idx, f"notification code {code} is unknown (EINVAL)", opcode=op)
            return
        payload = rec.orig_len - OUT_HEADER_SIZE
        name = nspec.name
        first = nspec.args[0].struct if nspec.args else None
        base = _layout.size_of(first, self.negotiated) if first else 0
        base = base or 0
        kind = nspec.size
        if kind is NotifySize.ANY:
            return  # RESEND: the connection put every outstanding request back
        if payload < base:
            self._emit(
                "FT502",
                idx,
                f"{name} payload is {payload} bytes, shorter than its {base}-byte struct (EINVAL)",
                opcode=op,
            )
            return
        if cut or not self.bodies:
            if kind is NotifySize.EXACT and payload != base:
                self._emit(
                    "FT502", idx, f"{name} payload is {payload} bytes, must be {base}", opcode=op
                )
            return
        want = base
        if kind is NotifySize.NAME:
            assert first is not None
            namelen = self._notify_field(data, first, "namelen") or 0
            if namelen > self._name_max():
                self._emit(
                    "FT503",
                    idx,
                    f"{name} namelen {namelen} above the limit {self._name_max()} (ENAMETOOLONG)",
                    opcode=op,
                )
                return
            want = base + namelen + 1
        elif kind is NotifySize.DATA:
            assert first is not None
            want = base + (self._notify_field(data, first, "size") or 0)
        elif kind is NotifySize.ARRAY:
            assert first is not None
            want = base + 8 * (self._notify_field(data, first, "count") or 0)
        if payload != want:
            self._emit(
                "FT502",
                idx,
                f"{name} payload is {payload} bytes, must be {want} (EINVAL)",
                opcode=op,
            )
            return
        if code == NotifyCode.RETRIEVE:
            nu = self._notify_field(data, "fuse_notify_retrieve_out", "notify_unique")
            hit = self.connection.find(nu) if nu is not None else None
            if hit is not None and hit.state is not None:
                p = hit.state
                self._emit(
                    "FT505",
                    idx,
                    f"RETRIEVE notify_unique {nu:#x} equals the id of "
                    f"outstanding {opcode_name(p.opcode)} (frame {p.frame})",
                    related=(p.frame,),
                    opcode=op,
                )
        if code == NotifyCode.RETRIEVE and not rec.result:
            self._retrieve(idx, data)
        nspec = registry.NOTIFY.get(code)
        target = nspec.node_field if nspec is not None else None
        if target is not None and first is not None:
            node = self._notify_field(data, first, target)
            if node is not None and node != FUSE_ROOT_ID and node not in self.nodes:
                self._emit(
                    "FT508",
                    idx,
                    f"{name} names node id {node}, which the kernel does not hold "
                    "(the write() gets ENOENT)",
                    opcode=op,
                )

    def _retrieve(self, idx: int, data: bytes) -> None:
        """A RETRIEVE the kernel took (or may have): one NOTIFY_REPLY may answer it."""
        st = "fuse_notify_retrieve_out"
        nu = self._notify_field(data, st, "notify_unique")
        node = self._notify_field(data, st, "nodeid")
        offset = self._notify_field(data, st, "offset")
        size = self._notify_field(data, st, "size")
        if nu is None or node is None or offset is None or size is None:
            return
        self._retrieves.setdefault(nu, []).append((idx, node, offset, size))
        if len(self._retrieves) > MEMORY:
            del self._retrieves[next(iter(self._retrieves))]

    @checks("FT509")
    def _notify_reply(self, idx: int, unique: int, nodeid: int, data: bytes) -> None:
        """NOTIFY_REPLY answers exactly one earlier RETRIEVE (protocol.md §6)."""
        st = "fuse_notify_retrieve_in"
        offset = self._request_field(data, st, "offset")
        size = self._request_field(data, st, "size")
        if offset is None or size is None:
            return
        waiting = self._retrieves.get(unique)
        why = ""
        related: tuple[int, ...] = ()
        if waiting:
            for i, (frame, node, off, asked) in enumerate(waiting):
                if node == nodeid and off == offset:
                    del waiting[i]
                    if not waiting:
                        del self._retrieves[unique]
                    self._retrieved.add(unique, idx)
                    if size <= asked:
                        return
                    why = f"carries {size} bytes; the RETRIEVE (frame {frame}) asked for {asked}"
                    related = (frame,)
                    break
            else:
                frame, node, off, asked = waiting[0]
                why = (
                    f"names node {nodeid} at offset {offset}; the RETRIEVE (frame {frame}) "
                    f"asked for node {node} at offset {off}"
                )
                related = (frame,)
        else:
            done = self._retrieved.get(unique)
            if done is not None:
                why = f"is a second answer; the RETRIEVE was answered at frame {done}"
                related = (done,)
            else:
                why = "answers no RETRIEVE with that notify_unique"
        self._emit(
            "FT509",
            idx,
            f"NOTIFY_REPLY {unique} {why}",
            unique=unique,
            opcode=Opcode.NOTIFY_REPLY,
            related=related,
        )

    # ---- the kernel's answer to a daemon frame ----------------------------------------------
    @checks("FT113", "FT511")
    def _refused(self, ex: Exchange) -> None:
        """The capture says the kernel refused this frame; report it unless a rule already
        explained the refusal at this frame (protocol.md §5.3)."""
        rec = ex.record
        if self._explained or not ex.header:
            return
        _length, _error, unique = ex.header
        err = rec.result or 0
        if unique == 0:
            self._emit(
                "FT511",
                rec.index,
                f"the kernel refused this notification with {errno_name(err)}",
            )
        elif unique & FUSE_INT_REQ_BIT and err == ENOENT:
            key = unique & ~FUSE_INT_REQ_BIT
            hit = self._answered.get(key)
            self._late_interrupt_reply(rec.index, unique, key, hit[0] if hit else None)
        else:
            self._emit(
                "FT113",
                rec.index,
                f"the kernel refused this reply with {errno_name(err)}",
                unique=unique,
            )

    # ---- end of capture -------------------------------------------------------------------
    @checks("FT112")
    def _late(
        self, idx: int | None, unique: int, pend: Pending, t_ns: int, *, answered: bool
    ) -> None:
        age = (t_ns - pend.t_ns) / 1e9
        what = "answered after" if answered else "still unanswered after"
        self._emit(
            "FT112",
            idx,
            f"{opcode_name(pend.opcode)} (frame {pend.frame}) {what} {age:.1f} s; the "
            f"negotiated request timeout is {self.negotiated.request_timeout} s",
            unique=unique,
            opcode=pend.opcode,
            related=(pend.frame,),
        )

    @checks("FT111", "FT213", "FT214", "FT510")
    def _finish(self) -> None:
        waiting = sorted(self.pending.items(), key=lambda kv: kv[1].frame)  # by frame
        timeout = self.negotiated.request_timeout
        if timeout:
            for key, p in waiting:
                if self.last_t_ns - p.t_ns > timeout * 1_000_000_000:
                    self._late(None, key, p, self.last_t_ns, answered=False)
        for key, p in waiting[:LIST_AT_END]:
            self._emit(
                "FT111",
                None,
                f"{opcode_name(p.opcode)} (frame {p.frame}) never answered",
                unique=key,
                opcode=p.opcode,
                related=(p.frame,),
            )
        if len(waiting) > LIST_AT_END:
            self._emit(
                "FT111",
                None,
                f"... and {len(waiting) - LIST_AT_END} more requests never answered",
            )
        for target, frame in self._int_waiting.items():
            self._emit(
                "FT510",
                None,
                f"INTERRUPT (frame {frame}) for id {target:#x}: no request with that id "
                "appears in the capture",
                unique=target | FUSE_INT_REQ_BIT,
                opcode=Opcode.INTERRUPT,
                related=(frame,),
            )
        if self.nodes:
            total = sum(n.count for n in self.nodes.values())
            sample = ", ".join(str(n) for n in sorted(self.nodes)[:10])
            self._emit(
                "FT213",
                None,
                f"{len(self.nodes)} node ids still hold {total} lookups "
                f"(e.g. {sample}); the kernel sends no FORGET at unmount",
            )
        if self.handles:
            total = sum(self.handles.values())
            sample = ", ".join(f"{fh:#x}" for fh in sorted({k[1] for k in self.handles})[:10])
            self._emit(
                "FT214",
                None,
                f"{total} file handles never released (e.g. {sample})",
            )


def _flag_names(flags: int) -> list[str]:
    from fusetrace.protocol.abi import flag_names

    return flag_names(int(flags), InitFlag)
