"""What the replay engine needs to know about frames, and nothing more (pure).

The engine itself never looks inside a frame body: it asks a :class:`Codec`. The one codec
shipped, :class:`ProtocolCodec`, answers from :mod:`fusetrace.protocol` (the registry says
which ops have replies, which request fields carry node ids and file handles, and which reply
fields hand them out). Tests may give the engine any object with the same methods.

Identifier kinds (the values of :class:`IdKind`):

* ``nodeid``: handed out by entry replies (LOOKUP, MKNOD, MKDIR, SYMLINK, LINK, CREATE,
  READDIRPLUS entries, TMPFILE); used in request headers and in fields such as
  ``link_in.oldnodeid``, ``rename_in.newdir``, ``copy_file_range_in.nodeid_out`` and the
  entries of BATCH_FORGET.
* ``fh``: handed out by OPEN, OPENDIR and CREATE replies; used in ``fh``, ``fh_in``,
  ``fh_out`` fields.
* ``cookie``: directory offsets handed out in READDIR/READDIRPLUS entries and sent back in
  ``read_in.offset`` of the next READDIR(PLUS) on the same handle.

Lock owners and poll handles (``kh``) are chosen by the kernel, so the replay (which plays
the kernel) sends the recorded values unchanged; request uniques likewise. Notify uniques are
chosen by the daemon and are mapped by the engine itself (RETRIEVE → NOTIFY_REPLY).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from fusetrace.errors import DecodeError


class IdKind(enum.Enum):
    NODEID = "nodeid"
    FH = "fh"
    COOKIE = "cookie"


class StepKind(enum.Enum):
    """How the engine treats a recorded kernel → daemon frame."""

    #: an ordinary request: the daemon answers it.
    REQUEST = "request"
    #: no answer expected (FORGET, BATCH_FORGET).
    NO_REPLY = "no-reply"
    #: INTERRUPT: sent only while its target is outstanding; its answer is optional.
    INTERRUPT = "interrupt"
    #: NOTIFY_REPLY: sent in answer to the daemon's RETRIEVE, never on its own.
    NOTIFY_REPLY = "notify-reply"
    #: INIT: the first request; its reply sets the live session.
    INIT = "init"


@dataclass(frozen=True)
class RequestInfo:
    """The header facts of a kernel → daemon frame, plus how the engine treats it."""

    opcode: int
    name: str
    unique: int
    nodeid: int
    kind: StepKind
    #: INTERRUPT: the unique of the request it interrupts.
    target: int | None = None
    #: the registry's effects: LookupEffect and HandleEffect values ("entry", "opens", ...)
    lookup: str = "none"
    handle: str = "none"
    #: the reply is a directory listing (READDIR, READDIRPLUS)
    listing: bool = False


@dataclass(frozen=True)
class ReplyInfo:
    """A daemon → kernel frame: a reply (``unique`` != 0) or a notification (``unique`` 0)."""

    unique: int
    error: int
    length: int
    #: notifications: the notify code (the header's error field) and its name.
    notify_code: int | None = None
    notify_name: str = ""
    #: RETRIEVE notifications: (notify_unique, nodeid, offset, size).
    retrieve: tuple[int, int, int, int] | None = None


@dataclass(frozen=True)
class Dirent:
    """One directory entry of a READDIR/READDIRPLUS reply."""

    name: bytes
    type: int
    cookie: int
    #: READDIRPLUS: the entry's node id (0 = no entry); None for READDIR.
    nodeid: int | None = None


@dataclass
class ReplyBody:
    """A decoded reply body, as the comparison wants it.

    ``fields``: flat dotted field names (``entry.attr.size``) to values, for fixed-layout
    replies; ``data``: the raw payload for data replies (READ, READLINK, xattr values, ...);
    ``dirents`` for directory listings; ``ids``: (kind, dotted field, value) for every
    identifier the reply hands out, in payload order; ``problems``: what the decoder could not
    make sense of.
    """

    fields: dict[str, Any] = field(default_factory=dict)
    data: bytes | None = None
    dirents: list[Dirent] | None = None
    ids: list[tuple[IdKind, str, int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class IdRef:
    """Where a request carries an identifier: its kind, field name, byte offset and value."""

    kind: IdKind
    field: str
    offset: int
    size: int
    value: int
    #: file handles: the node id the handle belongs to (protocol.md §7.2: a handle is
    #: (nodeid, fh, kind)), and whether it is a directory handle (None: the op does not say)
    node: int = 0
    dir: bool | None = None


class Codec(Protocol):
    """Frame knowledge for the engine. ``session`` objects are opaque to the engine."""

    def request_info(self, data: bytes) -> RequestInfo: ...

    def reply_info(self, data: bytes) -> ReplyInfo: ...

    def session(self, init_request: bytes, init_reply: bytes | None) -> Any: ...

    def decode_reply(self, data: bytes, request: bytes, session: Any) -> ReplyBody: ...

    def request_ids(self, data: bytes, session: Any) -> list[IdRef]: ...

    def patch(self, data: bytes, changes: list[tuple[IdRef, int]], session: Any) -> bytes: ...

    def notify_reply(self, notify_unique: int, nodeid: int, offset: int, data: bytes) -> bytes: ...

    def notify_reply_like(self, recorded: bytes, notify_unique: int, nodeid: int) -> bytes: ...

    def forget_counts(self, data: bytes, session: Any) -> list[tuple[int, int]]: ...

    def forget_frame(self, data: bytes, entries: list[tuple[int, int]], session: Any) -> bytes: ...

    def label(self, data: bytes, session: Any) -> str: ...


# --------------------------------------------------------------------------- the real codec


#: kernel struct fields (besides the header's nodeid) that carry a node id. A field-name
#: rule, not an opcode list: it holds wherever the registry places these structs.
def _prefix(struct_name: str) -> str:
    """``fuse_entry_out_compat`` → ``entry``: the name reply fields are reported under."""
    name = struct_name.removeprefix("fuse_").removeprefix("cuse_")
    for cut in ("_compat22", "_compat"):
        name = name.removesuffix(cut)
    return name.removesuffix("_out").removesuffix("_in")


def _flatten(prefix: str, obj: Any, out: dict[str, Any]) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(f"{prefix}.{k}" if prefix else k, v, out)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _flatten(f"{prefix}[{i}]", v, out)
    else:
        out[prefix] = obj


class ProtocolCodec:
    """:class:`Codec` on :mod:`fusetrace.protocol`: the registry decides everything."""

    def __init__(self, byte_order: str = "little") -> None:
        from fusetrace.protocol import header, schemas

        self.byte_order = byte_order
        self.order = header.byte_order_char(byte_order)
        self._header = header
        self._flat = schemas.flat(self.order)
        self._schemas = schemas.schemas(self.order)
        self._offsets: dict[str, dict[str, tuple[int, int]]] = {}

    # ---- small helpers

    def _struct_name(self, name: str, session: Any, available: int | None = None) -> str:
        from fusetrace.protocol import schemas

        if available is not None and name in schemas.BY_LENGTH:
            return schemas.struct_by_length(name, available, self.order)
        return schemas.struct_for(name, session)

    def _field_offsets(self, struct_name: str) -> dict[str, tuple[int, int]]:
        """Top-level field -> (offset, size) of a fixed-size struct."""
        cached = self._offsets.get(struct_name)
        if cached is not None:
            return cached
        offsets: dict[str, tuple[int, int]] = {}
        pos = 0
        for sub in self._schemas[struct_name].subcons:
            size = sub.sizeof()
            offsets[sub.name] = (pos, size)
            pos += size
        self._offsets[struct_name] = offsets
        return offsets

    def _decode_struct(self, name: str, data: bytes, offset: int) -> tuple[dict[str, Any], int]:
        flat = self._flat[name]
        if len(data) - offset < flat.size:
            raise ValueError(f"{name}: {len(data) - offset} of {flat.size} bytes")
        return flat.unpack_from(data, offset), offset + flat.size

    # ---- Codec

    def request_info(self, data: bytes) -> RequestInfo:
        from fusetrace.protocol.abi import Opcode
        from fusetrace.protocol.registry import OPS, ArgKind

        h = self._header.parse_in_header(data, self.order)
        spec = OPS.get(h.opcode)
        name = spec.name if spec is not None else f"OPCODE_{h.opcode}"
        target = None
        if spec is None:
            kind = StepKind.REQUEST
        elif h.opcode == Opcode.INIT:
            kind = StepKind.INIT
        elif h.opcode == Opcode.NOTIFY_REPLY:
            kind = StepKind.NOTIFY_REPLY
        elif spec.reply_optional:
            kind = StepKind.INTERRUPT
            body, _ = self._decode_struct("fuse_interrupt_in", data, 40)
            target = body["unique"]
        elif not spec.has_reply:
            kind = StepKind.NO_REPLY
        else:
            kind = StepKind.REQUEST
        if spec is None:
            return RequestInfo(h.opcode, name, h.unique, h.nodeid, kind, target)
        listing = any(a.kind in (ArgKind.DIRENTS, ArgKind.DIRENTPLUS) for a in spec.reply_args)
        return RequestInfo(
            h.opcode,
            name,
            h.unique,
            h.nodeid,
            kind,
            target,
            spec.lookup.value,
            spec.handle.value,
            listing,
        )

    def reply_info(self, data: bytes) -> ReplyInfo:
        from fusetrace.protocol.abi import NotifyCode

        h = self._header.parse_out_header(data, self.order)
        if h.unique != 0:
            return ReplyInfo(h.unique, h.error, h.len)
        try:
            name = NotifyCode(h.error).name
        except ValueError:
            name = f"NOTIFY_{h.error}"
        retrieve = None
        if h.error == NotifyCode.RETRIEVE and len(data) >= 16 + 32:
            r, _ = self._decode_struct("fuse_notify_retrieve_out", data, 16)
            retrieve = (r["notify_unique"], r["nodeid"], r["offset"], r["size"])
        return ReplyInfo(0, 0, h.len, h.error, name, retrieve)

    def session(self, init_request: bytes, init_reply: bytes | None) -> Any:
        from fusetrace.protocol.session import Negotiated

        neg = Negotiated.default(self.byte_order)
        name = self._struct_name("fuse_init_in", neg, len(init_request) - 40)
        init_in, _ = self._decode_struct(name, init_request, 40)
        neg = neg.with_init_request(init_in)
        if init_reply is None:
            return neg
        h = self._header.parse_out_header(init_reply, self.order)
        if h.error:
            return neg.with_init_reply({}, h.error)
        padded = init_reply + bytes(max(0, 16 + 64 - len(init_reply)))
        init_out, _ = self._decode_struct("fuse_init_out", padded, 16)
        return neg.with_init_reply(init_out)

    def decode_reply(self, data: bytes, request: bytes, session: Any) -> ReplyBody:
        from fusetrace.protocol.registry import OPS, ArgKind, HandleEffect, LookupEffect

        body = ReplyBody()
        h = self._header.parse_in_header(request, self.order)
        spec = OPS.get(h.opcode)
        if spec is None:
            body.data = data[16:]
            return body
        args = spec.reply_args
        if spec.reply_probe is not None:
            getxattr_in, _ = self._decode_struct("fuse_getxattr_in", request, 40)
            if getxattr_in["size"] == 0:
                args = spec.reply_probe
        pos = 16
        try:
            for arg in args:
                if arg.kind is ArgKind.STRUCT:
                    assert arg.struct is not None
                    avail = len(data) - pos
                    name = self._struct_name(arg.struct, session, avail)
                    if name.startswith("fuse_init_out"):
                        data = data + bytes(max(0, 64 - avail))
                    fields, pos = self._decode_struct(name, data, pos)
                    prefix = _prefix(name)
                    _flatten(prefix, fields, body.fields)
                    if "nodeid" in fields and spec.lookup is LookupEffect.ENTRY:
                        body.ids.append((IdKind.NODEID, f"{prefix}.nodeid", fields["nodeid"]))
                    if "fh" in fields and spec.handle in (
                        HandleEffect.OPENS,
                        HandleEffect.OPENS_DIR,
                    ):
                        body.ids.append((IdKind.FH, f"{prefix}.fh", fields["fh"]))
                elif arg.kind in (ArgKind.DIRENTS, ArgKind.DIRENTPLUS):
                    body.dirents = self._dirents(data, pos, arg.kind is ArgKind.DIRENTPLUS)
                    pos = len(data)
                else:
                    body.data = data[pos:]
                    pos = len(data)
        except (ValueError, KeyError) as e:
            body.problems.append(f"cannot decode the reply: {e}")
        if pos < len(data):
            body.problems.append(f"{len(data) - pos} bytes after the reply")
        return body

    def _dirents(self, data: bytes, pos: int, plus: bool) -> list[Dirent]:
        out: list[Dirent] = []
        while pos < len(data):
            entry = None
            if plus:
                entry, pos = self._decode_struct("fuse_entry_out", data, pos)
            d, pos = self._decode_struct("fuse_dirent", data, pos)
            name = data[pos : pos + d["namelen"]]
            if len(name) < d["namelen"]:
                raise ValueError("directory entry name cut short")
            pos += (d["namelen"] + 7) & ~7
            nodeid = entry["nodeid"] if entry is not None else None
            out.append(Dirent(name, d["type"], d["off"], nodeid))
        return out

    def request_ids(self, data: bytes, session: Any) -> list[IdRef]:
        from fusetrace.protocol.registry import OPS, ArgKind, HandleEffect, LookupEffect

        h = self._header.parse_in_header(data, self.order)
        refs = [IdRef(IdKind.NODEID, "header.nodeid", 16, 8, h.nodeid)] if h.nodeid else []
        spec = OPS.get(h.opcode)
        if spec is None or not spec.request or spec.request[0].kind is not ArgKind.STRUCT:
            return refs
        first = spec.request[0]
        assert first.struct is not None
        name = self._struct_name(first.struct, session)
        offsets = self._field_offsets(name)
        try:
            fields, end = self._decode_struct(name, data, 40)
        except ValueError:
            return refs
        prefix = _prefix(name)
        fh_valid = spec.fh_when is None or bool(fields.get(spec.fh_when[0], 0) & spec.fh_when[1])
        listing = any(a.kind in (ArgKind.DIRENTS, ArgKind.DIRENTPLUS) for a in spec.reply_args)
        is_dir: bool | None = None
        if listing or spec.handle is HandleEffect.RELEASES_DIR:
            is_dir = True
        elif spec.handle is HandleEffect.RELEASES:
            is_dir = False
        if fh_valid:
            for f in spec.fh_fields:
                if f in offsets:
                    off, size = offsets[f]
                    # fh_out belongs to nodeid_out (COPY_FILE_RANGE), fh and fh_in to the
                    # header's node
                    owner = f"nodeid{f[2:]}" if f[2:] else ""
                    node = fields[owner] if owner in spec.node_fields else h.nodeid
                    refs.append(
                        IdRef(IdKind.FH, f"{prefix}.{f}", 40 + off, size, fields[f], node, is_dir)
                    )
        for f in spec.node_fields:
            if f in offsets:
                off, size = offsets[f]
                refs.append(IdRef(IdKind.NODEID, f"{prefix}.{f}", 40 + off, size, fields[f]))
        if any(a.kind in (ArgKind.DIRENTS, ArgKind.DIRENTPLUS) for a in spec.reply_args):
            off, size = offsets["offset"]
            refs.append(IdRef(IdKind.COOKIE, f"{prefix}.offset", 40 + off, size, fields["offset"]))
        if spec.lookup is LookupEffect.BATCH_FORGET:
            for i, (nodeid, _n) in enumerate(self._forget_entries(data, fields, end)):
                refs.append(IdRef(IdKind.NODEID, f"forgets[{i}].nodeid", end + 16 * i, 8, nodeid))
        return refs

    def _forget_entries(
        self, data: bytes, fields: dict[str, Any], end: int
    ) -> list[tuple[int, int]]:
        out = []
        for i in range(fields.get("count", 0)):
            try:
                one, _ = self._decode_struct("fuse_forget_one", data, end + 16 * i)
            except ValueError:
                break
            out.append((one["nodeid"], one["nlookup"]))
        return out

    def patch(self, data: bytes, changes: list[tuple[IdRef, int]], session: Any) -> bytes:
        buf = bytearray(data)
        for ref, value in changes:
            order: Literal["little", "big"] = "little" if self.order == "<" else "big"
            buf[ref.offset : ref.offset + ref.size] = value.to_bytes(ref.size, order)
        return bytes(buf)

    def forget_counts(self, data: bytes, session: Any) -> list[tuple[int, int]]:
        from fusetrace.protocol.registry import OPS, LookupEffect

        h = self._header.parse_in_header(data, self.order)
        spec = OPS.get(h.opcode)
        if spec is None:
            return []
        try:
            if spec.lookup is LookupEffect.FORGET:
                f, _ = self._decode_struct("fuse_forget_in", data, 40)
                return [(h.nodeid, f["nlookup"])]
            if spec.lookup is LookupEffect.BATCH_FORGET:
                f, end = self._decode_struct("fuse_batch_forget_in", data, 40)
                return self._forget_entries(data, f, end)
        except ValueError:
            return []
        return []

    def forget_frame(self, data: bytes, entries: list[tuple[int, int]], session: Any) -> bytes:
        """The FORGET or BATCH_FORGET ``data`` with its (nodeid, nlookup) pairs replaced."""
        from fusetrace.protocol.abi import Opcode
        from fusetrace.protocol.encode import encode_request

        h = self._header.parse_in_header(data, self.order)
        if h.opcode == Opcode.FORGET:
            ((nodeid, nlookup),) = entries
            body: dict[str, Any] = {"nlookup": nlookup}
        else:
            nodeid = 0
            forgets = [{"nodeid": n, "nlookup": c} for n, c in entries]
            body = {"count": len(forgets), "forgets": forgets}
        return encode_request(
            h.opcode,
            body,
            unique=h.unique,
            nodeid=nodeid,
            uid=h.uid,
            gid=h.gid,
            pid=h.pid,
            negotiated=session,
        )

    def label(self, data: bytes, session: Any) -> str:
        """The names a request carries, quoted (``"one"``, ``"a" → "b"``); "" if none."""
        from fusetrace.protocol.decode import decode_request

        try:
            body = decode_request(data, session).body
        except DecodeError:
            return ""
        names = [body[k] for k in ("name", "oldname", "newname") if isinstance(body.get(k), str)]
        return " → ".join(f'"{n}"' for n in names)

    def notify_reply(self, notify_unique: int, nodeid: int, offset: int, data: bytes) -> bytes:
        from fusetrace.protocol.abi import Opcode

        body = self._flat["fuse_notify_retrieve_in"].struct.pack(0, offset, len(data), 0, 0, 0)
        head = self._header.InHeader(
            40 + len(body) + len(data), Opcode.NOTIFY_REPLY, notify_unique, nodeid, 0, 0, 0
        )
        return self._header.pack_in_header(head, self.order) + body + data

    def notify_reply_like(self, recorded: bytes, notify_unique: int, nodeid: int) -> bytes:
        h = self._header.parse_in_header(recorded, self.order)
        head = h._replace(unique=notify_unique, nodeid=nodeid)
        return self._header.pack_in_header(head, self.order) + recorded[40:]
