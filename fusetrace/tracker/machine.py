"""The tracker: a sans-IO model of one FUSE connection, judging every frame (design.md §5).

Feed it :class:`~fusetrace.frame.Frame` objects in capture order; it answers each with the
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

Shape: the connection model (:mod:`fusetrace.protocol.connection`) reads each header, pairs
replies with requests and learns the session; this module dispatches each exchange to the
rule families, each in its own module and each raising only its own codes: :mod:`.ids`
(FT1), :mod:`.lifecycle` (FT2), :mod:`.sizes` (FT3, with the per-opcode reply table
``REPLY_CHECKS``), :mod:`.init` (FT4), :mod:`.notify` (FT5); what they keep is declared in
:mod:`.state`. Their functions are bound into :class:`Tracker`'s class body as methods.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from typing import Any

from fusetrace.frame import Direction, Frame
from fusetrace.protocol import registry
from fusetrace.protocol.abi import (
    FUSE_INT_REQ_BIT,
    FUSE_NAME_MAX,
    FUSE_NAME_MAX_LARGE,
    S_IFDIR,
    S_IFMT,
    FopenFlag,
    Opcode,
    opcode_name,
)
from fusetrace.protocol.connection import Connection, Exchange
from fusetrace.protocol.header import IN_HEADER_SIZE, OUT_HEADER_SIZE
from fusetrace.protocol.registry import (
    ArgKind,
    HandleEffect,
    LookupEffect,
)
from fusetrace.protocol.session import Negotiated
from fusetrace.tracker import _layout, ids, init, lifecycle, notify, sizes
from fusetrace.tracker.findings import Finding, Severity
from fusetrace.tracker.rules import RULES
from fusetrace.tracker.state import (
    _INFO_FIELDS,
    _NAMED,
    _OPS,
    _PREDICTS_REFUSAL,
    ENOSYS,
    MEMORY,
    RENAME_EXCHANGE,
    SESSION_TRANSITIONS,
    Node,
    Pending,
    SessionEvent,
    SessionState,
    Summary,
    _Memory,
    new_pending,
)

_OP_INIT = int(Opcode.INIT)
_OP_CUSE_INIT = int(Opcode.CUSE_INIT)
_OP_INTERRUPT = int(Opcode.INTERRUPT)
_OP_NOTIFY_REPLY = int(Opcode.NOTIFY_REPLY)
_NO_REPLY_SHAPE = registry.ReplyShape.NONE
_INBOUND = Direction.INBOUND
#: see Tracker._body_plan
_BodyPlan = tuple[
    list[tuple[str, struct.Struct, int]],
    "tuple[struct.Struct | None, int, int] | None",
    "list[tuple[str, struct.Struct, int, str]] | None",
    "tuple[struct.Struct, int] | None",
    "tuple[struct.Struct, int] | None",
]


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
        #: the last frame judged (its time ends the capture's clock)
        self._last: Frame | None = None
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
        #: opcode -> what a request body is read for (:meth:`_body_plan`)
        self._body_plans: dict[int, _BodyPlan] = {}
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
        #: the session in force (learnt by the connection model from the INIT pair; the
        #: tracker takes the connection's after each frame)
        self.negotiated: Negotiated = self.connection.negotiated

    # ---- public API -------------------------------------------------------------------
    @property
    def pending(self) -> dict[int, Pending]:
        """Requests read and not yet answered: unique (bit 0 masked) -> state."""
        return {
            ex.header[2] & ~FUSE_INT_REQ_BIT: ex.state
            for ex in self.connection.outstanding.values()
            if ex.state is not None
        }

    @property
    def last_t_ns(self) -> int:
        """The capture time of the last frame judged (0 before the first)."""
        return self._last.t_ns if self._last is not None else 0

    def feed(self, record: Frame) -> list[Finding]:
        """Judge one frame; returns the findings it shows (often none). Never raises."""
        return self.judge(self.connection.feed(record))

    def judge(self, ex: Exchange) -> list[Finding]:
        """Judge the exchange a connection made of one frame (fed in capture order)."""
        record = ex.record
        self.negotiated = self.connection.negotiated
        found: list[Finding] = []
        self._findings = found
        self.summary.frames += 1
        self._last = record
        try:
            if record.direction is _INBOUND:
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

    def feed_all(self, records: Iterable[Frame]) -> list[Finding]:
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

    _cut = sizes._cut

    _enosys_again = lifecycle._enosys_again

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
    def _kernel_frame(self, ex: Exchange) -> None:
        rec = ex.record
        data = rec.data
        idx = rec.index
        if not self._request_framing(ex):
            return
        _len, opcode, unique, nodeid, _uid, _gid, _pid, extlen, _pad = ex.header
        self.summary.requests += 1
        spec = _OPS.get(opcode)
        body_ok = self.bodies and len(data) >= rec.orig_len

        if opcode == _OP_INTERRUPT:
            self._interrupt(rec, unique, data if body_ok else None)
            return
        if spec is not None and spec.reply is _NO_REPLY_SHAPE:  # not spec.has_reply
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
            elif body_ok and opcode == _OP_NOTIFY_REPLY:
                self._notify_reply(idx, unique, nodeid, data)
            return

        # an ordinary request
        self._request_id(idx, unique, opcode)
        key = unique & ~FUSE_INT_REQ_BIT
        if self._int_waiting:
            self._int_waiting.pop(key, None)
        if opcode in (_OP_INIT, _OP_CUSE_INIT):
            self._init_request(rec, unique, opcode, data)
        elif self.state is not SessionState.READY and self.state is not SessionState.FAILED:
            self._before_init(idx, unique, opcode)
        if ex.replaced is not None:
            self._id_reused(ex, idx, unique, opcode)
        if self._enosys:
            self._enosys_again(idx, unique, opcode)
        if extlen:
            self._extension_allowed(idx, unique, opcode, spec, extlen)
        pend = new_pending(opcode, idx, rec.channel, nodeid, rec.t_ns)
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

    _before_init = init._before_init

    _init_request = init._init_request

    _check_nodeid = lifecycle._check_nodeid

    def _body_plan(self, spec: registry.OpSpec) -> _BodyPlan:
        """What :meth:`_request_body` reads from a request of ``spec``: (field name, reader,
        offset) of the fields reply checks need, of the flags field a handle depends on
        (``fh_when``: None when the handle is unconditional), of the handles in use (with
        the field naming their node) or released, and of the flags RENAME2/IOCTL keep.
        Offsets are derived from the schemas, once per opcode."""
        first = spec.request[0] if spec.request else None
        sname = first.struct if first is not None and first.struct else ""
        order = self._order

        def at(name: str) -> tuple[struct.Struct, int] | None:
            r = _layout.field(order, sname, name) if sname else None
            return None if r is None else (r[0], r[1] + IN_HEADER_SIZE)

        readers = self._info_readers.get(sname)
        if readers is None:
            readers = self._info_readers[sname] = [
                (name, r[0], r[1]) for name in _INFO_FIELDS if (r := at(name)) is not None
            ]
        h = spec.handle
        fh_when: tuple[struct.Struct | None, int, int] | None = None
        uses: list[tuple[str, struct.Struct, int, str]] | None = None
        releases: tuple[struct.Struct, int] | None = None
        if h is HandleEffect.USES_FH:
            if spec.fh_when is not None:
                w = at(spec.fh_when[0])
                fh_when = (None, 0, 0) if w is None else (w[0], w[1], spec.fh_when[1])
            uses = []
            for i, fname in enumerate(spec.fh_fields):
                r = at(fname)
                if r is not None:
                    node = spec.fh_nodes[i] if spec.fh_nodes else ""
                    uses.append((fname, r[0], r[1], node))
        elif h in (HandleEffect.RELEASES, HandleEffect.RELEASES_DIR):
            releases = at("fh")
        flags = at("flags") if spec.opcode in (Opcode.RENAME2, Opcode.IOCTL) else None
        return readers, fh_when, uses, releases, flags

    def _request_body(self, rec: Frame, unique: int, spec: registry.OpSpec, pend: Pending) -> None:
        data = rec.data
        idx = rec.index
        opcode = spec.opcode
        info = pend.info
        plan = self._body_plans.get(opcode)
        if plan is None:
            plan = self._body_plans[opcode] = self._body_plan(spec)
        readers, fh_when, uses, releases, flags_at = plan
        # fields the reply checks need
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
                self._lookup_name(idx, unique, looked)
            if opcode == Opcode.RENAME2 and flags_at is not None:
                st, off = flags_at
                if off + st.size <= end:
                    info["rename_flags"] = st.unpack_from(data, off)[0]
        elif opcode == Opcode.IOCTL and flags_at is not None:
            st, off = flags_at
            if off + st.size <= end:
                info["ioctl_flags"] = st.unpack_from(data, off)[0]
        # file handles
        if uses is not None:
            if fh_when is not None:
                st_when, off, mask = fh_when
                if st_when is None or off + st_when.size > end:
                    return
                if not st_when.unpack_from(data, off)[0] & mask:
                    return
            kind = spec.fh_kind
            for fname, st, off, node_field in uses:
                if off + st.size > end:
                    continue
                fh = st.unpack_from(data, off)[0]
                if fname == "fh":
                    info["fh"] = fh
                node = pend.nodeid
                if node_field:
                    node = info.get(node_field, node)
                self._check_fh(idx, unique, opcode, node, fh, kind)
        elif releases is not None:
            st, off = releases
            if off + st.size <= end:
                fh = st.unpack_from(data, off)[0]
                self._release(
                    idx, unique, opcode, pend.nodeid, fh, spec.handle is HandleEffect.RELEASES_DIR
                )

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

    _lookup_name = sizes._lookup_name

    _check_fh = lifecycle._check_fh

    _unknown_handle = lifecycle._unknown_handle

    _foreign_handle = lifecycle._foreign_handle

    _release = lifecycle._release

    _forget = lifecycle._forget

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

    _interrupt = notify._interrupt

    # ---- daemon -> kernel ---------------------------------------------------------------
    def _daemon_frame(self, ex: Exchange) -> None:
        rec = ex.record
        idx = rec.index
        if not self._reply_framing(ex):
            return
        _len, error, unique = ex.header
        if unique == 0:
            self.summary.notifications += 1
            self._notification(rec, error, len(rec.data) < rec.orig_len)
            return
        self.summary.replies += 1
        if not self._error_in_range(idx, unique, error):
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
        if not self._reply_channel(idx, unique, pend, rec.channel):
            return
        if unique & FUSE_INT_REQ_BIT:
            # an interrupt reply: the target stays outstanding
            self._interrupt_reply(idx, unique, error, payload, pend)
            return
        self._answered.add(key, (idx, self.summary.requests))
        self._before = ex.negotiated  # the session in force before this reply
        timeout = ex.negotiated.request_timeout
        if timeout and rec.t_ns - pend.t_ns > timeout * 1_000_000_000:
            self._late(idx, unique, pend, rec.t_ns, answered=True)
        spec = _OPS.get(opcode)
        if error:
            bad = self._error_with_payload(idx, unique, opcode, pend, error, payload)
            if pend.frame == self._init_frame:
                self._init_failed(idx, unique, opcode, pend, error)
            elif not bad and error == -ENOSYS and spec is not None and spec.enosys_remembered:
                self._enosys.add(opcode)
                if opcode == Opcode.OPEN:
                    self.no_open = True
                elif opcode == Opcode.OPENDIR:
                    self.no_opendir = True
            return
        if spec is None:
            return
        body_ok = self.bodies and len(rec.data) >= rec.orig_len
        self._success(rec, unique, spec, pend, payload, body_ok)

    _unmatched = ids._unmatched

    _late_interrupt_reply = ids._late_interrupt_reply

    _init_failed = init._init_failed

    # ---- successful replies ---------------------------------------------------------------
    _success = sizes._success

    def _ioctl_out(self, data: bytes) -> dict[str, Any]:
        return _layout.unpack_padded(self._order, "fuse_ioctl_out", data[OUT_HEADER_SIZE:])

    _getlk_reply = sizes._getlk_reply

    _ioctl_reply = sizes._ioctl_reply

    _variable_ok = sizes._variable_ok

    _init_reply = init._init_reply

    _entry_reply = lifecycle._entry_reply

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

    _count = lifecycle._count

    _type_changed = lifecycle._type_changed

    _recycled = lifecycle._recycled

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

    _dirents = sizes._dirents

    _rejected_direntplus = lifecycle._rejected_direntplus

    _listxattr = sizes._listxattr

    _short_read = sizes._short_read

    # ---- notifications --------------------------------------------------------------------
    _notification = notify._notification

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

    _notify_reply = notify._notify_reply

    # ---- the kernel's answer to a daemon frame ----------------------------------------------
    def _refused(self, ex: Exchange) -> None:
        """The capture says the kernel refused this frame; report it unless a rule already
        explained the refusal at this frame (protocol.md §5.3)."""
        rec = ex.record
        if self._explained or not ex.header:
            return
        err = rec.result or 0
        if ex.header[2] == 0:
            self._notification_refused(rec.index, err)
        else:
            self._reply_refused(ex, err)

    _request_framing = sizes._request_framing

    _request_id = ids._request_id

    _id_reused = ids._id_reused

    _init_id = ids._init_id

    _extension_allowed = sizes._extension_allowed

    _reply_framing = sizes._reply_framing

    _error_in_range = sizes._error_in_range

    _reply_channel = ids._reply_channel

    _interrupt_reply = ids._interrupt_reply

    _error_with_payload = sizes._error_with_payload

    _reply_size = sizes._reply_size

    _reply_before_init = init._reply_before_init

    _reply_refused = ids._reply_refused

    _notification_refused = notify._notification_refused

    _unanswered_at_end = ids._unanswered_at_end

    _held_at_end = lifecycle._held_at_end

    _interrupts_at_end = notify._interrupts_at_end

    # ---- end of capture -------------------------------------------------------------------
    _late = ids._late

    def _finish(self) -> None:
        waiting = sorted(self.pending.items(), key=lambda kv: kv[1].frame)  # by frame
        self._unanswered_at_end(waiting)
        self._interrupts_at_end()
        self._held_at_end()
