"""The tracker's FT3: framing and sizes (design.md §5).

Functions here are methods of :class:`fusetrace.tracker.machine.Tracker` (bound in its
class body); each raises only its family's rule codes (``@checks``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fusetrace.frame import Frame
from fusetrace.protocol import registry
from fusetrace.protocol.abi import (
    F_RDLCK,
    F_UNLCK,
    F_WRLCK,
    FUSE_IOCTL_MAX_IOV,
    FUSE_ROOT_ID,
    S_IFMT,
    VALID_FILE_TYPES,
    InitFlag,
    IoctlFlag,
    Opcode,
    opcode_name,
)
from fusetrace.protocol.header import IN_HEADER_SIZE, OUT_HEADER_SIZE
from fusetrace.protocol.registry import (
    HandleEffect,
    LookupEffect,
    ReplyShape,
)
from fusetrace.tracker import _layout
from fusetrace.tracker.rules import checks
from fusetrace.tracker.state import (
    _OPS,
    CUSE_DEVINFO_MAX,
    ERRNO_FLOOR,
    INIT_OUT_MAX,
    LLONG_MAX,
    PAGE_SIZE,
    Node,
    Pending,
)

if TYPE_CHECKING:
    from fusetrace.protocol.connection import Exchange
    from fusetrace.tracker.machine import Tracker

_OP_INIT = int(Opcode.INIT)
#: not looked up yet (a length rule may be None)
_UNKNOWN: Any = object()
_OP_CUSE_INIT = int(Opcode.CUSE_INIT)


@checks("FT316")
def _cut(self: Tracker, rec: Frame, unique: int, opcode: int | None) -> None:
    self._cut_reported = True
    self._emit(
        "FT316",
        rec.index,
        f"frame stored with {len(rec.data)} of {rec.orig_len} bytes; body checks skip cut frames",
        unique=unique,
        opcode=opcode,
    )


@checks("FT303", "FT304", "FT318")
def _request_framing(self: Tracker, ex: Exchange) -> bool:
    """A kernel frame's framing: a whole header (else False: nothing more can be judged),
    ``in.len`` equal to the frame, the snap length (FT316, once), and the length its
    arguments make under the negotiated layout."""
    rec = ex.record
    data = rec.data
    idx = rec.index
    orig = rec.orig_len
    if orig < IN_HEADER_SIZE or not ex.header:
        self._emit(
            "FT303",
            idx,
            f"kernel frame of {orig} bytes, shorter than the {IN_HEADER_SIZE}-byte fuse_in_header",
        )
        return False
    length, opcode, unique, _nodeid, _uid, _gid, _pid, extlen, _pad = ex.header
    if length != orig:
        self._emit(
            "FT304",
            idx,
            f"in.len is {length} but the frame is {orig} bytes",
            unique=unique,
            opcode=opcode,
        )
    cut = len(data) < orig
    if cut and not self._cut_reported:
        self._cut(rec, unique, opcode)
    spec = _OPS.get(opcode)
    if spec is None or length != orig or opcode in (_OP_INIT, _OP_CUSE_INIT):
        return True
    body_ok = self.bodies and not cut
    opcode = spec.opcode
    rule = self._len_rules.get(opcode, _UNKNOWN)
    if rule is _UNKNOWN:
        rule = self._len_rules[opcode] = self._length_rule(spec)
    if rule is None:
        # strings: measured up to their NUL, by the layout the negotiation selects
        if not body_ok:
            return True
        want = self._walk_length(data, spec, length, extlen)
        if want == 0:
            return True
        if want < 0:
            self._emit(
                "FT318",
                idx,
                f"{opcode_name(opcode)} has in.len {length}; a string argument has no "
                "NUL before it ends",
                unique=unique,
                opcode=opcode,
            )
            return True
    else:
        fixed, var = rule
        want = IN_HEADER_SIZE + fixed + (8 * extlen if spec.extensions else 0)
        for struct_name, fname, unit in var:
            if not body_ok:
                return True
            n = self._request_field(data, struct_name, fname)
            if n is None:
                return True
            want += n * unit
    if length != want:
        self._emit(
            "FT318",
            idx,
            f"{opcode_name(opcode)} has in.len {length}; its arguments make {want}",
            unique=unique,
            opcode=opcode,
        )
    return True


@checks("FT321")
def _lookup_name(self: Tracker, idx: int, unique: int, name: bytes) -> None:
    """A LOOKUP's name against the connection's name_max."""
    n = len(name)
    if n <= self._name_max():
        return
    self._emit(
        "FT321",
        idx,
        f"LOOKUP of a {n}-byte name; the connection's name_max is {self._name_max()} "
        "(the kernel answers ENAMETOOLONG without sending it)",
        unique=unique,
        opcode=Opcode.LOOKUP,
    )


@checks("FT315")
def _extension_allowed(
    self: Tracker, idx: int, unique: int, opcode: int, spec: registry.OpSpec | None, extlen: int
) -> None:
    """A request with an extension block: only some operations, from 7.38, carry one."""
    minor = self.negotiated.kernel_minor
    if spec is None or not extlen or (spec.extensions and minor >= 38):
        return
    why = "this operation" if not spec.extensions else f"a 7.{minor} kernel"
    self._emit(
        "FT315",
        idx,
        f"total_extlen {extlen} on {opcode_name(opcode)}: {why} cannot carry an extension block",
        unique=unique,
        opcode=opcode,
    )


@checks("FT301", "FT302")
def _reply_framing(self: Tracker, ex: Exchange) -> bool:
    """A daemon frame's framing: a whole header and ``out.len`` equal to what was written
    (else False: the kernel refuses it before anything else), and the snap length (FT316,
    once)."""
    rec = ex.record
    idx = rec.index
    orig = rec.orig_len
    if orig < OUT_HEADER_SIZE or not ex.header:
        self._emit(
            "FT301",
            idx,
            f"daemon message of {orig} bytes, shorter than the "
            f"{OUT_HEADER_SIZE}-byte fuse_out_header",
        )
        return False
    length, _error, unique = ex.header
    if length != orig:
        self._emit(
            "FT302",
            idx,
            f"out.len is {length} but {orig} bytes were written (write() fails with EINVAL)",
            unique=unique,
        )
        return False
    if len(rec.data) < orig and not self._cut_reported:
        self._cut(rec, unique, None)
    return True


@checks("FT305")
def _error_in_range(self: Tracker, idx: int, unique: int, error: int) -> bool:
    """A reply's error must be 0 or a negative errno above -512 (else False: the kernel
    refuses the write and the request stays pending)."""
    if ERRNO_FLOOR < error <= 0:
        return True
    self._emit(
        "FT305",
        idx,
        f"error {error} is outside (-512, 0] (write() fails with "
        "EINVAL, the request stays pending)",
        unique=unique,
    )
    return False


@checks("FT306")
def _error_with_payload(
    self: Tracker, idx: int, unique: int, opcode: int, pend: Pending, error: int, payload: int
) -> bool:
    """An error reply must be the header alone (True when it is not: the caller gets EIO)."""
    if not payload:
        return False
    self._emit(
        "FT306",
        idx,
        f"{opcode_name(opcode)} error reply {error} carries "
        f"{payload} payload bytes (the caller gets EIO)",
        unique=unique,
        opcode=opcode,
        related=(pend.frame,),
    )
    return True


@checks("FT307")
def _reply_size(
    self: Tracker, idx: int, unique: int, spec: registry.OpSpec, pend: Pending, payload: int
) -> bool:
    """A successful reply's payload against its shape: none for a header-only reply, the
    struct size for a fixed one, at least fuse_ioctl_out for IOCTL (False when wrong: EINVAL
    or EIO)."""
    shape = spec.reply
    if shape is ReplyShape.EMPTY:
        if not payload:
            return True
        why = (
            f"{spec.name} takes a header-only reply, got {payload} payload "
            "bytes (EINVAL; the caller gets EIO)"
        )
    elif shape is ReplyShape.FIXED:
        # once per session, in the session's own cache (decode's keys are ints and
        # (id, engine) tuples, so a (name, opcode) key cannot meet them)
        neg = self.negotiated
        key = ("reply-size", spec.opcode)
        want = neg._cache.get(key)
        if want is None:
            want = neg._cache[key] = sum(
                _layout.size_of(a.struct or "", neg) for a in spec.reply_args
            )
        if payload == want:
            return True
        why = (
            f"{spec.name} reply has {payload} payload bytes, must be {want} "
            "(EINVAL; the caller gets EIO)"
        )
    elif shape is ReplyShape.VARIABLE and spec.opcode == Opcode.IOCTL:
        head = _layout.size_of("fuse_ioctl_out", self.negotiated)
        if payload >= head:
            return True
        why = (
            f"IOCTL reply has {payload} payload bytes; the {head}-byte "
            "fuse_ioctl_out must be present (the caller gets EIO)"
        )
    else:
        return True
    self._emit("FT307", idx, why, unique=unique, opcode=spec.opcode, related=(pend.frame,))
    return False


def _success(
    self: Tracker,
    rec: Frame,
    unique: int,
    spec: registry.OpSpec,
    pend: Pending,
    payload: int,
    body_ok: bool,
) -> None:
    idx = rec.index
    opcode = spec.opcode
    neg = self.negotiated
    shape = spec.reply
    if not self._reply_size(idx, unique, spec, pend, payload):
        return
    if shape is ReplyShape.EMPTY:
        if pend.names and body_ok:
            self._names_removed(pend)
        return
    if shape is ReplyShape.VARIABLE and not self._variable_ok(
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
    else:
        check = REPLY_CHECKS.get(opcode)
        if check is not None:
            check(self, idx, unique, pend, data, payload)


@checks("FT319")
def _getlk_reply(
    self: Tracker, idx: int, unique: int, pend: Pending, data: bytes, payload: int
) -> None:
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
def _ioctl_reply(
    self: Tracker, idx: int, unique: int, pend: Pending, data: bytes, payload: int
) -> None:
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
    self: Tracker,
    idx: int,
    unique: int,
    spec: registry.OpSpec,
    pend: Pending,
    payload: int,
    data: bytes,
) -> bool:
    opcode = spec.opcode
    info = pend.info
    bound: int | None
    if spec.reply_probe is not None:
        asked = info.get("size")
        if asked is None:
            return True
        if asked == 0:
            want = sum(_layout.size_of(a.struct or "", self.negotiated) for a in spec.reply_probe)
            if payload != want:
                self._emit(
                    "FT309",
                    idx,
                    f"{opcode_name(opcode)} with size 0 asks for the length; the reply "
                    f"must be {want} bytes, got {payload} (the caller gets EIO)",
                    unique=unique,
                    opcode=opcode,
                    related=(pend.frame,),
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
            f"{opcode_name(opcode)} reply has {payload} payload bytes, more than the "
            f"{bound} allowed (EINVAL; the caller gets EIO)",
            unique=unique,
            opcode=opcode,
            related=(pend.frame,),
        )
        return False
    return True


@checks("FT313", "FT317")
def _dirents(
    self: Tracker, idx: int, unique: int, opcode: int, data: bytes, *, plus: bool, parent: int = 0
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


@checks("FT312")
def _listxattr(
    self: Tracker, idx: int, unique: int, pend: Pending, data: bytes, payload: int
) -> None:
    if not pend.info.get("size"):
        return  # the size probe: answered with getxattr_out, checked by FT309
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
def _short_read(
    self: Tracker, idx: int, unique: int, pend: Pending, data: bytes, payload: int
) -> None:
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


def _attr(self: Tracker, idx: int, unique: int, pend: Pending, data: bytes, payload: int) -> None:
    self._attr_reply(idx, unique, pend.opcode, pend, data, OUT_HEADER_SIZE)


def _readdir(
    self: Tracker, idx: int, unique: int, pend: Pending, data: bytes, payload: int
) -> None:
    self._dirents(idx, unique, Opcode.READDIR, data, plus=False)


def _readdirplus(
    self: Tracker, idx: int, unique: int, pend: Pending, data: bytes, payload: int
) -> None:
    self._dirents(idx, unique, Opcode.READDIRPLUS, data, plus=True, parent=pend.nodeid)


@checks("FT310")
def _write_reply(
    self: Tracker, idx: int, unique: int, pend: Pending, data: bytes, payload: int
) -> None:
    got = self._f.u32.unpack_from(data, OUT_HEADER_SIZE + self._f.write_out_size)[0]
    asked = pend.info.get("size")
    if asked is not None and got > asked:
        self._emit(
            "FT310",
            idx,
            f"WRITE reply says {got} bytes written of {asked} sent (the caller gets EIO)",
            unique=unique,
            opcode=Opcode.WRITE,
            related=(pend.frame,),
        )


@checks("FT311")
def _copy_reply(
    self: Tracker, idx: int, unique: int, pend: Pending, data: bytes, payload: int
) -> None:
    opcode = pend.opcode
    if opcode == Opcode.COPY_FILE_RANGE:
        got = self._f.u32.unpack_from(data, OUT_HEADER_SIZE)[0]
    else:
        got = self._f.u64.unpack_from(data, OUT_HEADER_SIZE)[0]
    asked = pend.info.get("len")
    if asked is not None and got > asked:
        self._emit(
            "FT311",
            idx,
            f"{opcode_name(opcode)} reply says {got} bytes copied of {asked} asked "
            "(the caller gets EIO)",
            unique=unique,
            opcode=opcode,
            related=(pend.frame,),
        )


#: one successful reply's check, after its size was judged: (tracker, frame, unique, the
#: request's state, the frame's bytes, payload length)
ReplyCheck = Callable[["Tracker", int, int, Pending, bytes, int], None]

#: what a successful reply is checked for beyond its size, per opcode (protocol.md §7, §8;
#: §10 rules 13-17). Entry replies and open replies are handled before the table.
REPLY_CHECKS: dict[int, ReplyCheck] = {
    Opcode.GETATTR: _attr,
    Opcode.SETATTR: _attr,
    Opcode.READDIR: _readdir,
    Opcode.READDIRPLUS: _readdirplus,
    Opcode.WRITE: _write_reply,
    Opcode.COPY_FILE_RANGE: _copy_reply,
    Opcode.COPY_FILE_RANGE_64: _copy_reply,
    Opcode.LISTXATTR: _listxattr,
    Opcode.READ: _short_read,
    Opcode.GETLK: _getlk_reply,
    Opcode.IOCTL: _ioctl_reply,
}
