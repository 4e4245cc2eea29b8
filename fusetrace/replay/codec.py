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
import struct
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


# RequestInfo, ReplyInfo and IdRef are made for every frame: plain slotted classes, not
# frozen ones (a frozen dataclass's __init__ sets each field through object.__setattr__, four
# times the cost); nothing changes them once made.


@dataclass(slots=True)
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


@dataclass(slots=True)
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


@dataclass(slots=True)
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

    def handed_ids(
        self, data: bytes, request: bytes, session: Any
    ) -> list[tuple[IdKind, str, int]] | None: ...

    def ids_apart(
        self, recorded: bytes, live: bytes, request: bytes, rec_session: Any, live_session: Any
    ) -> tuple[list[tuple[IdKind, str, int]], list[tuple[IdKind, str, int]]] | None: ...

    def patch(self, data: bytes, changes: list[tuple[IdRef, int]], session: Any) -> bytes: ...

    def notify_reply(self, notify_unique: int, nodeid: int, offset: int, data: bytes) -> bytes: ...

    def notify_reply_like(self, recorded: bytes, notify_unique: int, nodeid: int) -> bytes: ...

    def forget_counts(self, data: bytes, session: Any) -> list[tuple[int, int]]: ...

    def forget_frame(self, data: bytes, entries: list[tuple[int, int]], session: Any) -> bytes: ...

    def label(self, data: bytes, session: Any) -> str: ...


# --------------------------------------------------------------------------- the real codec


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
        self._plans: dict[tuple[int, bool], tuple[Any, ...]] = {}
        self._facts: dict[int, tuple[str, StepKind, str, str, bool]] = {}
        self._parse_in = header.parse_in_header
        # the first four fields of fuse_in_header (len, opcode, unique, nodeid): all the
        # hot path reads of a request's header
        in_ids = struct.Struct(self.order + "IIQQ")
        in_size = header.IN_HEADER_SIZE

        def unpack_in(data: bytes) -> tuple[int, int, int, int]:
            if len(data) < in_size:
                raise DecodeError(f"request header cut short: {len(data)} of {in_size} bytes")
            return in_ids.unpack_from(data)

        self._unpack_in = unpack_in
        self._nodeid_offset = schemas.field_offset("fuse_in_header", "nodeid")
        out_header = header.out_header_struct(self.order)

        def unpack_out(data: bytes) -> tuple[int, int, int]:
            if len(data) < out_header.size:
                raise DecodeError(f"reply header cut short: {len(data)} of {out_header.size} bytes")
            return out_header.unpack_from(data)

        self._unpack_out = unpack_out
        self._id_plans: dict[tuple[int, int], tuple[Any, ...] | None] = {}
        self._handed_plans: dict[tuple[int, int], tuple[Any, ...] | None] = {}

    # ---- small helpers

    def _struct_name(self, name: str, session: Any, available: int | None = None) -> str:
        from fusetrace.protocol import schemas

        if available is not None and name in schemas.BY_LENGTH:
            return schemas.struct_by_length(name, available, self.order)
        return schemas.struct_for(name, session)

    def _op_facts(self, opcode: int) -> tuple[str, StepKind, str, str, bool]:
        """(name, step kind, lookup effect, handle effect, listing) of an opcode, cached."""
        facts = self._facts.get(opcode)
        if facts is not None:
            return facts
        from fusetrace.protocol.abi import Opcode
        from fusetrace.protocol.registry import OPS, ArgKind

        spec = OPS.get(opcode)
        if spec is None:
            facts = (f"OPCODE_{opcode}", StepKind.REQUEST, "none", "none", False)
        else:
            if opcode == Opcode.INIT:
                kind = StepKind.INIT
            elif opcode == Opcode.NOTIFY_REPLY:
                kind = StepKind.NOTIFY_REPLY
            elif spec.reply_optional:
                kind = StepKind.INTERRUPT
            elif not spec.has_reply:
                kind = StepKind.NO_REPLY
            else:
                kind = StepKind.REQUEST
            listing = any(a.kind in (ArgKind.DIRENTS, ArgKind.DIRENTPLUS) for a in spec.reply_args)
            facts = (spec.name, kind, spec.lookup.value, spec.handle.value, listing)
        self._facts[opcode] = facts
        return facts

    def request_info(self, data: bytes) -> RequestInfo:
        _len, opcode, unique, nodeid = self._unpack_in(data)
        facts = self._facts.get(opcode) or self._op_facts(opcode)
        name, kind, lookup, handle, listing = facts
        target = None
        if kind is StepKind.INTERRUPT:
            target = self._request(data, None).get("unique")
        return RequestInfo(opcode, name, unique, nodeid, kind, target, lookup, handle, listing)

    def reply_info(self, data: bytes) -> ReplyInfo:
        length, error, unique = self._unpack_out(data)
        if unique != 0:
            return ReplyInfo(unique, error, length)
        from fusetrace.protocol.abi import NotifyCode

        h = self._header.parse_out_header(data, self.order)
        try:
            name = NotifyCode(h.error).name
        except ValueError:
            name = f"NOTIFY_{h.error}"
        retrieve = None
        if h.error == NotifyCode.RETRIEVE:
            from fusetrace.protocol.decode import decode_notify

            r = decode_notify(data)
            if r.ok:
                b = r.body
                retrieve = (b["notify_unique"], b["nodeid"], b["offset"], b["size"])
        return ReplyInfo(0, 0, h.len, h.error, name, retrieve)

    def session(self, init_request: bytes, init_reply: bytes | None) -> Any:
        from fusetrace.protocol.abi import Opcode
        from fusetrace.protocol.decode import decode_reply, decode_request
        from fusetrace.protocol.session import Negotiated

        neg = Negotiated.default(self.byte_order)
        neg = neg.with_init_request(decode_request(init_request, neg).body)
        if init_reply is None:
            return neg
        d = decode_reply(init_reply, Opcode.INIT, neg)
        if d.error:
            return neg.with_init_reply({}, d.error)
        return neg.with_init_reply(d.body)

    def _reply_plan(self, opcode: int, probe: bool) -> tuple[Any, ...]:
        """Per opcode: (struct args as (prefix, top-level field names, hands out nodeid,
        hands out fh), listing kind or None, has raw data after the structs)."""
        key = (opcode, probe)
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        from fusetrace.protocol.registry import OPS, ArgKind, HandleEffect, LookupEffect

        spec = OPS[opcode]
        args = spec.reply_probe if probe and spec.reply_probe is not None else spec.reply_args
        structs = []
        listing = None
        raw = False
        for arg in args:
            if arg.kind is ArgKind.STRUCT:
                assert arg.struct is not None
                names = tuple(sc.name for sc in self._schemas[arg.struct].subcons)
                structs.append(
                    (
                        _prefix(arg.struct),
                        names,
                        "nodeid" in names and spec.lookup is LookupEffect.ENTRY,
                        "fh" in names
                        and spec.handle in (HandleEffect.OPENS, HandleEffect.OPENS_DIR),
                    )
                )
            elif arg.kind in (ArgKind.DIRENTS, ArgKind.DIRENTPLUS):
                listing = arg.name
            else:
                raw = True
        plan = self._plans[key] = (tuple(structs), listing, raw)
        return plan

    def decode_reply(self, data: bytes, request: bytes, session: Any) -> ReplyBody:
        """The reply as the comparison wants it, decoded by :mod:`fusetrace.protocol.decode`
        (the registry's layouts and the schemas): struct fields flattened under the struct's
        name (``entry.attr.size``), listings as :class:`Dirent`, data replies raw."""
        from fusetrace.protocol.decode import decode_reply, decode_request
        from fusetrace.protocol.registry import OPS

        body = ReplyBody()
        h = self._header.parse_in_header(request, self.order)
        spec = OPS.get(h.opcode)
        if spec is None:
            body.data = data[16:]
            return body
        request_body = None
        probe = False
        if spec.reply_probe is not None:
            request_body = decode_request(request, session).body
            probe = request_body.get("size", 1) == 0
        structs, listing, raw = self._reply_plan(h.opcode, probe)
        d = decode_reply(data, h.opcode, session, request_body=request_body)
        body.problems = [str(p) for p in d.problems]
        fields = d.body
        out = body.fields
        for prefix, names, gives_node, gives_fh in structs:
            for name in names:
                if name in fields:
                    _flatten(f"{prefix}.{name}", fields[name], out)
            if gives_node and "nodeid" in fields:
                body.ids.append((IdKind.NODEID, f"{prefix}.nodeid", fields["nodeid"]))
            if gives_fh and "fh" in fields:
                body.ids.append((IdKind.FH, f"{prefix}.fh", fields["fh"]))
        if listing is not None:
            body.dirents = [
                Dirent(
                    e["name"].encode("utf-8", "surrogateescape"),
                    e["type"],
                    e["off"],
                    e.get("nodeid"),
                )
                for e in fields.get(listing, ())
            ]
        if raw:
            fixed = sum(
                self._flat[self._struct_name(n, session)].size
                for n in self._arg_structs(h.opcode, probe)
            )
            body.data = data[16 + fixed :]
        return body

    def _handed_plan(self, opcode: int, session: Any) -> tuple[Any, ...] | None:
        """Per opcode and session, for replies of fixed layout that hand out ids: (the
        reply's length, [(kind, dotted field, offset, reader)]) in payload order; None
        when the reply needs a full decode to tell (listings, probes, data after)."""
        key = (opcode, id(session))
        if key in self._handed_plans:
            return self._handed_plans[key]
        from fusetrace.protocol.registry import OPS, ArgKind
        from fusetrace.protocol.schemas import field_reader

        plan: tuple[Any, ...] | None = None
        spec = OPS.get(opcode)
        if spec is not None and spec.reply_probe is None:
            structs, listing, raw = self._reply_plan(opcode, False)
            names = [a.struct for a in spec.reply_args if a.kind is ArgKind.STRUCT]
            if listing is None and not raw and len(names) == len(structs):
                offset = self._flat["fuse_out_header"].size
                ids = []
                readable = True
                for (prefix, _fields, gives_node, gives_fh), name in zip(
                    structs, names, strict=True
                ):
                    assert name is not None
                    wire = self._struct_name(name, session)
                    for kind, f, gives in ((IdKind.NODEID, "nodeid", gives_node),
                                           (IdKind.FH, "fh", gives_fh)):  # fmt: skip
                        r = field_reader(self.order, wire, f) if gives else None
                        if gives and r is None:
                            readable = False
                        elif r is not None:
                            ids.append((kind, f"{prefix}.{f}", offset + r[1], r[0]))
                    offset += self._flat[wire].size
                plan = (offset, ids) if readable else None
        self._handed_plans[key] = plan
        return plan

    def handed_ids(
        self, data: bytes, request: bytes, session: Any
    ) -> list[tuple[IdKind, str, int]] | None:
        """The ids a reply hands out, as :meth:`decode_reply` finds them, read in place for
        a well-formed reply of fixed layout; None when it needs the full decode."""
        opcode = self._unpack_in(request)[1]
        key = (opcode, id(session))
        plan = (
            self._handed_plans[key]
            if key in self._handed_plans
            else self._handed_plan(opcode, session)
        )
        if plan is None or len(data) != plan[0]:
            return None
        return [(kind, path, r.unpack_from(data, off)[0]) for kind, path, off, r in plan[1]]

    def ids_apart(
        self, recorded: bytes, live: bytes, request: bytes, rec_session: Any, live_session: Any
    ) -> tuple[list[tuple[IdKind, str, int]], list[tuple[IdKind, str, int]]] | None:
        """Two well-formed replies of the same fixed layout that differ in nothing but the
        ids they hand out: the ids of each, as :meth:`decode_reply` finds them. None when
        anything else differs, or when it takes the full decode to tell."""
        opcode = self._unpack_in(request)[1]
        plan = self._handed_plan(opcode, rec_session)
        if plan is None or len(recorded) != plan[0] or len(live) != plan[0]:
            return None
        if live_session is not rec_session:
            other = self._handed_plan(opcode, live_session)
            if other is None or [i[:3] for i in other[1]] != [i[:3] for i in plan[1]]:
                return None
        start = 0
        for _kind, _path, off, r in sorted(plan[1], key=lambda i: i[2]):
            if recorded[start:off] != live[start:off]:
                return None
            start = off + r.size
        if recorded[start:] != live[start:]:
            return None
        return (
            [(kind, path, r.unpack_from(recorded, off)[0]) for kind, path, off, r in plan[1]],
            [(kind, path, r.unpack_from(live, off)[0]) for kind, path, off, r in plan[1]],
        )

    def _arg_structs(self, opcode: int, probe: bool) -> list[str]:
        from fusetrace.protocol.registry import OPS, ArgKind

        spec = OPS[opcode]
        args = spec.reply_probe if probe and spec.reply_probe is not None else spec.reply_args
        return [a.struct for a in args if a.kind is ArgKind.STRUCT and a.struct is not None]

    def _request(self, data: bytes, session: Any) -> dict[str, Any]:
        """The request body, decoded by :mod:`fusetrace.protocol.decode`."""
        from fusetrace.protocol.decode import decode_request

        return decode_request(data, session).body

    def _id_plan(self, opcode: int, session: Any) -> tuple[Any, ...] | None:
        """Per opcode and session: where its identifiers sit, from the registry and the
        schemas: (struct name, prefix, [(fh field, offset, size, owner node field)],
        [(node field, offset, size)], (cookie offset, size) or None, is_dir)."""
        key = (opcode, id(session))
        if key in self._id_plans:
            return self._id_plans[key]
        from fusetrace.protocol.registry import OPS, ArgKind, HandleEffect
        from fusetrace.protocol.schemas import field_offset

        spec = OPS.get(opcode)
        plan = None
        if spec is not None and spec.request and spec.request[0].kind is ArgKind.STRUCT:
            assert spec.request[0].struct is not None
            name = self._struct_name(spec.request[0].struct, session)
            start = self._flat["fuse_in_header"].size
            sizes = {sc.name: sc.sizeof() for sc in self._schemas[name].subcons}

            def at(f: str) -> tuple[int, int]:
                return start + field_offset(name, f), sizes[f]

            fhs: list[tuple[str, int, int, str]] = []
            for f in spec.fh_fields:
                if f in sizes:
                    # fh_out belongs to nodeid_out (COPY_FILE_RANGE), fh and fh_in to the
                    # header's node
                    owner = f"nodeid{f[2:]}" if f[2:] else ""
                    fhs.append((f, *at(f), owner if owner in spec.node_fields else ""))
            nodes = [(f, *at(f)) for f in spec.node_fields if f in sizes]
            listing = any(a.kind in (ArgKind.DIRENTS, ArgKind.DIRENTPLUS) for a in spec.reply_args)
            cookie = at("offset") if listing else None
            is_dir: bool | None = None
            if listing or spec.handle is HandleEffect.RELEASES_DIR:
                is_dir = True
            elif spec.handle is HandleEffect.RELEASES:
                is_dir = False
            # the same fields read in place, for a request whose struct is all there
            from fusetrace.protocol.schemas import field_reader

            def reader(f: str) -> Any:
                r = field_reader(self.order, name, f)
                assert r is not None
                return r[0]

            when = spec.fh_when
            fast: tuple[Any, ...] | None = (
                start + self._flat[name].size,
                (at(when[0])[0], reader(when[0]), when[1]) if when and when[0] in sizes else None,
                [(f, off, size, reader(f), (at(o)[0], reader(o)) if o in sizes else None)
                 for f, off, size, o in fhs],
                [(f, off, size, reader(f)) for f, off, size in nodes],
                (*cookie, reader("offset")) if cookie is not None else None,
            )  # fmt: skip
            if when and when[0] not in sizes:
                fast = None
            plan = (name, _prefix(name), fhs, nodes, cookie, is_dir, spec.fh_when, fast)
        self._id_plans[key] = plan
        return plan

    def request_ids(self, data: bytes, session: Any) -> list[IdRef]:
        _len, opcode, _unique, nodeid = self._unpack_in(data)
        refs = []
        if nodeid:
            refs.append(IdRef(IdKind.NODEID, "header.nodeid", self._nodeid_offset, 8, nodeid))
        key = (opcode, id(session))
        plan = self._id_plans[key] if key in self._id_plans else self._id_plan(opcode, session)
        if plan is None:
            return refs
        _name, prefix, fhs, nodes, cookie, is_dir, fh_when, fast = plan
        if fast is not None and len(data) >= fast[0]:
            _end, when, fast_fhs, fast_nodes, fast_cookie = fast
            if when is None or when[1].unpack_from(data, when[0])[0] & when[2]:
                for f, off, size, r, owner in fast_fhs:
                    node = owner[1].unpack_from(data, owner[0])[0] if owner else nodeid
                    value = r.unpack_from(data, off)[0]
                    refs.append(IdRef(IdKind.FH, f"{prefix}.{f}", off, size, value, node, is_dir))
            for f, off, size, r in fast_nodes:
                refs.append(
                    IdRef(IdKind.NODEID, f"{prefix}.{f}", off, size, r.unpack_from(data, off)[0])
                )
            if fast_cookie is not None:
                off, size, r = fast_cookie
                refs.append(
                    IdRef(IdKind.COOKIE, f"{prefix}.offset", off, size, r.unpack_from(data, off)[0])
                )
            return refs
        fields = self._request(data, session)
        fh_valid = fh_when is None or bool(fields.get(fh_when[0], 0) & fh_when[1])
        if fh_valid:
            for f, off, size, owner in fhs:
                if f in fields:
                    node = fields.get(owner, nodeid) if owner else nodeid
                    refs.append(
                        IdRef(IdKind.FH, f"{prefix}.{f}", off, size, fields[f], node, is_dir)
                    )
        for f, off, size in nodes:
            if f in fields:
                refs.append(IdRef(IdKind.NODEID, f"{prefix}.{f}", off, size, fields[f]))
        if cookie is not None and "offset" in fields:
            off, size = cookie
            refs.append(IdRef(IdKind.COOKIE, f"{prefix}.offset", off, size, fields["offset"]))
        return refs

    def patch(self, data: bytes, changes: list[tuple[IdRef, int]], session: Any) -> bytes:
        buf = bytearray(data)
        for ref, value in changes:
            order: Literal["little", "big"] = "little" if self.order == "<" else "big"
            buf[ref.offset : ref.offset + ref.size] = value.to_bytes(ref.size, order)
        return bytes(buf)

    def forget_counts(self, data: bytes, session: Any) -> list[tuple[int, int]]:
        from fusetrace.protocol.decode import decode_request
        from fusetrace.protocol.registry import OPS, LookupEffect

        d = decode_request(data, session)
        spec = OPS.get(d.header.opcode)  # type: ignore[union-attr]
        if spec is None:
            return []
        if spec.lookup is LookupEffect.FORGET and "nlookup" in d.body:
            return [(d.header.nodeid, d.body["nlookup"])]  # type: ignore[union-attr]
        if spec.lookup is LookupEffect.BATCH_FORGET:
            return [(f["nodeid"], f["nlookup"]) for f in d.body.get("forgets", ())]
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
