"""Rewriting a capture so it can be shared: file data, names and ids out, lengths kept.

Pure: records in, records out. Every frame keeps its length, so every ``len``, ``size``,
``namelen`` and record length in it stays valid; only the bytes of names and data change:

* file data (READ/WRITE payloads, NOTIFY_STORE and NOTIFY_REPLY data, xattr values, symlink
  targets, IOCTL data) becomes a fixed pattern of the same length;
* names (every name a request, a directory listing, an xattr listing or a notification
  carries) become pseudonyms of the same length: the same name is the same pseudonym
  everywhere, different names stay different, "." and ".." stay as they are, and no '/' or
  NUL is introduced;
* with ``map_ids``, uid, gid and pid (request headers, attributes, SETATTR, locks) become
  small stable numbers (0 stays 0).

Where names and data sit is read from the protocol registry (argument layouts) and the
schemas (struct sizes, field offsets); nothing here knows an offset of its own.
"""

from __future__ import annotations

import itertools
import string
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from fusetrace.frame import Frame
from fusetrace.protocol.abi import FUSE_EXT_GROUPS, IoctlFlag, Opcode
from fusetrace.protocol.decode import Decoded
from fusetrace.protocol.header import IN_HEADER_SIZE, OUT_HEADER_SIZE, byte_order_char
from fusetrace.protocol.registry import NOTIFY, OPS, Arg, ArgKind
from fusetrace.protocol.schemas import (
    BY_LENGTH,
    field_offset,
    field_reader,
    flat,
    schemas,
    struct_by_length,
    struct_for,
)
from fusetrace.protocol.session import Negotiated
from fusetrace.protocol.stream import FrameDecoder

#: what redacted file data is made of (repeated, cut to length)
DATA_PATTERN = b"fusetrace-redacted."
#: the first letters a pseudonym is made of; other bytes only when these run out
_NAME_ALPHABET = (string.ascii_lowercase + string.digits).encode()
#: every byte a name may hold, for when the alphabet above has too few names of a length
_ALL_NAME_BYTES = bytes(b for b in range(1, 256) if b != ord("/"))
_KEPT_NAMES = frozenset({b".", b".."})
#: xattr namespaces whose names are the kernel's, not the user's: kept whole
_KERNEL_XATTR_PREFIXES = (b"security.", b"system.")

#: request arguments (by opcode, argument name) that are data, not names
_DATA_CSTRINGS = {(int(Opcode.SYMLINK), "target")}
#: ops whose ``name`` is an xattr name
_XATTR_OPS = frozenset({int(Opcode.GETXATTR), int(Opcode.SETXATTR), int(Opcode.REMOVEXATTR)})

#: struct -> the dotted fields in it that hold a uid, gid or pid
_ID_FIELDS: dict[str, tuple[str, ...]] = {
    "fuse_in_header": ("uid", "gid", "pid"),
    "fuse_entry_out": ("attr.uid", "attr.gid"),
    "fuse_entry_out_compat": ("attr.uid", "attr.gid"),
    "fuse_attr_out": ("attr.uid", "attr.gid"),
    "fuse_attr_out_compat": ("attr.uid", "attr.gid"),
    "fuse_setattr_in": ("uid", "gid"),
    "fuse_statx_out": ("stat.uid", "stat.gid"),
    "fuse_lk_in": ("lk.pid",),
    "fuse_lk_out": ("lk.pid",),
}

#: capture metadata kept as it is: nothing in it names the host, a user or a path
SAFE_META = frozenset(
    {
        "fusetrace_capture",
        "byte_order",
        "mount_type",
        "handoff",
        "kernel_release",
        "connection",
        "snaplen",
        "redacted",
    }
)
REDACTED = "<redacted>"


def pattern(length: int) -> bytes:
    """``length`` bytes of the redaction pattern."""
    reps = length // len(DATA_PATTERN) + 1
    return (DATA_PATTERN * reps)[:length]


class Pseudonyms:
    """Stable, same-length, collision-free stand-ins for names.

    Pseudonyms are handed out in order of first appearance (they say nothing about the name
    but its length): the k-th new name of length n gets the k-th unused string of n letters
    and digits, then, when those run out, of any bytes but '/' and NUL.
    """

    def __init__(self, avoid: Iterable[bytes] = ()) -> None:
        self.map: dict[bytes, bytes] = {}
        #: never handed out: the kept names, and the original names when they are known
        #: beforehand (so no original name shows up as another name's pseudonym)
        self._used: set[bytes] = set(_KEPT_NAMES) | set(avoid)
        self._gens: dict[int, Iterator[bytes]] = {}

    def _candidates(self, n: int) -> Iterator[bytes]:
        for alphabet in (_NAME_ALPHABET, _ALL_NAME_BYTES):
            for combo in itertools.product(alphabet, repeat=n):
                yield bytes(combo)

    def __call__(self, name: bytes) -> bytes:
        if name in _KEPT_NAMES or not name:
            return name
        got = self.map.get(name)
        if got is not None:
            return got
        gen = self._gens.get(len(name))
        if gen is None:
            gen = self._gens[len(name)] = self._candidates(len(name))
        for cand in gen:
            if cand not in self._used:
                break
        else:  # pragma: no cover - more distinct names than byte strings of that length
            raise ValueError(f"no pseudonym left for a name of {len(name)} bytes")
        self._used.add(cand)
        self.map[name] = cand
        return cand

    def xattr(self, name: bytes) -> bytes:
        """An xattr name: the namespace ("user.") kept, kernel-defined names kept whole."""
        if name.startswith(_KERNEL_XATTR_PREFIXES):
            return name
        dot = name.find(b".")
        if dot < 0:
            return self(name)
        return name[: dot + 1] + self(name[dot + 1 :])


class IdMap:
    """uid/gid/pid -> small stable numbers; 0 (root, the kernel) stays 0."""

    def __init__(self) -> None:
        self.map: dict[tuple[str, int], int] = {}
        self._next: dict[str, int] = {}

    def __call__(self, kind: str, value: int) -> int:
        if value == 0 or value == 0xFFFFFFFF:
            return value
        key = (kind, value)
        got = self.map.get(key)
        if got is None:
            got = self.map[key] = self._next.get(kind, 1000)
            self._next[kind] = got + 1
        return got


class Redactor:
    """Rewrites the records of one capture, in capture order."""

    def __init__(
        self,
        byte_order: str = "little",
        *,
        names: bool = True,
        data: bool = True,
        map_ids: bool = False,
        avoid: Iterable[bytes] = (),
    ) -> None:
        self.order = byte_order_char(byte_order)
        self.decoder = FrameDecoder(byte_order)
        self.names = names
        self.data = data
        self.map_ids = map_ids
        self.pseudonyms = Pseudonyms(avoid)
        #: when set, names are collected here instead of rewritten (:func:`names_in`)
        self.collected: set[bytes] | None = None
        self.ids = IdMap()
        self._flat = flat(self.order)
        #: how many names, data bytes and ids were rewritten
        self.counts = {"names": 0, "data_bytes": 0, "ids": 0}

    # ---- public ------------------------------------------------------------------------
    def record(self, rec: Frame) -> Frame:
        """The redacted copy of ``rec``."""
        neg = self.decoder.negotiated
        df = self.decoder.feed(rec)
        d = df.decoded
        if d is None:
            return rec
        buf = bytearray(rec.data)
        end = min(len(buf), d.header.len)
        try:
            if d.kind == "request":
                self._request(buf, d, end, neg)
            elif d.kind == "reply" and not d.error and d.opcode is not None:
                req = df.request.decoded if df.request is not None else None
                self._reply(buf, d, req, end, neg)
            elif d.kind == "notify":
                spec = NOTIFY.get(d.opcode or 0)
                if spec is not None:
                    self._walk(buf, spec.args, OUT_HEADER_SIZE, end, d.body, neg, None)
            # what the decoder could not place (a malformed or unknown body) may hold
            # anything: it goes too
            if d.remainder and (self.names or self.data):
                self._data(buf, len(buf) - len(d.remainder), len(buf), force=True)
        except (IndexError, KeyError, ValueError):  # a malformed frame: nothing of the body
            if self.names or self.data:
                start = IN_HEADER_SIZE if d.kind == "request" else OUT_HEADER_SIZE
                self._data(buf, start, len(buf), force=True)
        if bytes(buf) == rec.data:
            return rec
        return rec._replace(data=bytes(buf))

    def records(self, records: Iterable[Frame]) -> Iterator[Frame]:
        for rec in records:
            yield self.record(rec)

    # ---- frames -------------------------------------------------------------------------
    def _request(self, buf: bytearray, d: Decoded, end: int, neg: Negotiated) -> None:
        op = d.opcode
        if self.map_ids:
            self._ids(buf, 0, "fuse_in_header")
        spec = OPS.get(op or -1)
        if spec is None or op == Opcode.INIT or op == Opcode.CUSE_INIT:
            return
        body_end = end - d.header.total_extlen * 8  # type: ignore[union-attr]
        self._walk(buf, spec.request, IN_HEADER_SIZE, body_end, d.body, neg, op)
        if self.map_ids and body_end < end:
            self._ext_groups(buf, body_end, end)

    def _reply(
        self, buf: bytearray, d: Decoded, req: Decoded | None, end: int, neg: Negotiated
    ) -> None:
        op = d.opcode
        spec = OPS.get(op or -1)
        if spec is None or op in (Opcode.INIT, Opcode.CUSE_INIT):
            return
        args = spec.reply_args
        if spec.reply_probe is not None:
            size = req.body.get("size", 1) if req is not None else None
            if size == 0 or (size is None and end - OUT_HEADER_SIZE == 8):
                args = spec.reply_probe
        if op == Opcode.IOCTL and d.body.get("flags", 0) & IoctlFlag.RETRY:
            return  # the data is iovec records, not file data
        self._walk(buf, args, OUT_HEADER_SIZE, end, d.body, neg, op)

    def _walk(
        self,
        buf: bytearray,
        args: tuple[Arg, ...],
        pos: int,
        end: int,
        body: Mapping[str, Any],
        neg: Negotiated,
        op: int | None,
    ) -> None:
        for a in args:
            kind = a.kind
            if kind is ArgKind.STRUCT:
                assert a.struct is not None
                if a.struct in BY_LENGTH:
                    name = struct_by_length(a.struct, end - pos, self.order)
                else:
                    name = struct_for(a.struct, neg)
                size = self._flat[name].size
                if pos + size > end:
                    return
                if self.map_ids:
                    self._ids(buf, pos, name)
                pos += size
            elif kind is ArgKind.CSTRING:
                nul = buf.find(0, pos, end)
                if nul < 0:
                    return
                if op is not None and (op, a.name) in _DATA_CSTRINGS:
                    self._data(buf, pos, nul)
                elif op in _XATTR_OPS:
                    self._name(buf, pos, nul, xattr=True)
                else:
                    self._name(buf, pos, nul)
                pos = nul + 1
            elif kind is ArgKind.BYTES:
                assert a.length_from is not None
                stop = min(end, pos + int(body.get(a.length_from, 0)))
                self._data(buf, pos, stop)
                pos = stop
            elif kind is ArgKind.REST or kind is ArgKind.TEXT:
                self._data(buf, pos, end)
                pos = end
            elif kind is ArgKind.ARRAY:
                assert a.struct is not None and a.length_from is not None
                pos += int(body.get(a.length_from, 0)) * self._flat[a.struct].size
            elif kind is ArgKind.DIRENTS or kind is ArgKind.DIRENTPLUS:
                self._dirents(buf, pos, end, kind is ArgKind.DIRENTPLUS, neg)
                return
            elif kind is ArgKind.NAMES:
                start = pos
                while start < end:
                    nul = buf.find(0, start, end)
                    if nul < 0:
                        nul = end
                    self._name(buf, start, nul, xattr=True)
                    start = nul + 1
                return
            else:  # EXT, DEVINFO: no user data
                return

    def _dirents(self, buf: bytearray, pos: int, end: int, plus: bool, neg: Negotiated) -> None:
        dirent = self._flat["fuse_dirent"].size
        entry_name = struct_for("fuse_entry_out", neg)
        head = self._flat[entry_name].size if plus else 0
        fixed = head + dirent
        namelen_at = head + field_offset("fuse_dirent", "namelen")
        reader = field_reader(self.order, "fuse_dirent", "namelen")
        assert reader is not None
        while end - pos >= fixed:
            (namelen,) = reader[0].unpack_from(buf, pos + namelen_at)
            size = (fixed + namelen + 7) & ~7
            if size > end - pos:
                return
            if plus and self.map_ids:
                self._ids(buf, pos, entry_name)
            self._name(buf, pos + fixed, pos + fixed + namelen)
            pos += size

    def _ext_groups(self, buf: bytearray, pos: int, end: int) -> None:
        """The supplementary groups of a request's extension block, mapped as gids."""
        head = self._flat["fuse_ext_header"]
        size_at = field_offset("fuse_ext_header", "size")
        type_at = field_offset("fuse_ext_header", "type")
        sizes = field_reader(self.order, "fuse_ext_header", "size")
        assert sizes is not None
        u32 = sizes[0]
        # fuse_supp_groups: nr_groups, then that many gids (a variable-size schema)
        groups = schemas(self.order)["fuse_supp_groups"]
        nr_size = groups.subcons[0].sizeof()
        while end - pos >= head.size:
            (size,) = u32.unpack_from(buf, pos + size_at)
            (kind,) = u32.unpack_from(buf, pos + type_at)
            if size < head.size or size > end - pos:
                return
            if kind == FUSE_EXT_GROUPS:
                at = pos + head.size
                (nr,) = u32.unpack_from(buf, at)
                at += nr_size
                for _ in range(nr):
                    if at + u32.size > pos + size:
                        break
                    (gid,) = u32.unpack_from(buf, at)
                    new = self.ids("gid", gid)
                    if new != gid:
                        u32.pack_into(buf, at, new)
                        self.counts["ids"] += 1
                    at += u32.size
            pos += size

    # ---- the rewriting --------------------------------------------------------------------
    def _name(self, buf: bytearray, start: int, stop: int, *, xattr: bool = False) -> None:
        if not self.names or stop <= start:
            return
        old = bytes(buf[start:stop])
        if self.collected is not None:
            self.collected.add(old)
            if xattr and b"." in old:
                self.collected.add(old.split(b".", 1)[1])
            return
        new = self.pseudonyms.xattr(old) if xattr else self.pseudonyms(old)
        if new != old:
            buf[start:stop] = new
            self.counts["names"] += 1

    def _data(self, buf: bytearray, start: int, stop: int, *, force: bool = False) -> None:
        if not (self.data or force) or stop <= start:
            return
        buf[start:stop] = pattern(stop - start)
        self.counts["data_bytes"] += stop - start

    def _ids(self, buf: bytearray, pos: int, struct_name: str) -> None:
        for path in _ID_FIELDS.get(struct_name, ()):
            reader = field_reader(self.order, struct_name, path)
            if reader is None:
                continue
            st, off = reader
            (value,) = st.unpack_from(buf, pos + off)
            new = self.ids(path.rsplit(".", 1)[-1], value)
            if new != value:
                st.pack_into(buf, pos + off, new)
                self.counts["ids"] += 1


def names_in(records: Iterable[Frame], byte_order: str = "little") -> set[bytes]:
    """Every name the records carry (to keep pseudonyms clear of them)."""
    r = Redactor(byte_order)
    r.collected = set()
    for rec in records:
        r.record(rec)
    return r.collected


def _scrub_text(value: str, secrets: Iterable[str]) -> str:
    if "/" in value:
        return REDACTED
    for s in secrets:
        if s and s in value:
            return REDACTED
    return value


def scrub_meta(meta: Mapping[str, Any], secrets: Iterable[str] = ()) -> dict[str, Any]:
    """The capture metadata without host names and paths.

    Keys in :data:`SAFE_META` stay; the daemon's argv keeps its program name (without the
    directory) and its arguments that name no path; every other string that holds a path
    ('/') or one of ``secrets`` (the host name, names seen in the capture) is replaced.
    """
    secrets = [s for s in secrets if len(s) >= 3]
    out: dict[str, Any] = {}
    for key, value in meta.items():
        if key in SAFE_META:
            out[key] = value
        elif key in ("daemon", "daemon_run_as") and isinstance(value, list):
            argv = [str(v) for v in value]
            head = [_scrub_text(argv[0].rsplit("/", 1)[-1], secrets)] if argv else []
            out[key] = head + [_scrub_text(v, secrets) for v in argv[1:]]
        elif key == "mountpoint":
            out[key] = None
        else:
            out[key] = _scrub_value(value, secrets)
    return out


def _scrub_value(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return _scrub_text(value, secrets)
    if isinstance(value, list):
        return [_scrub_value(v, secrets) for v in value]
    if isinstance(value, dict):
        return {k: _scrub_value(v, secrets) for k, v in value.items()}
    return value
