"""Decoding one frame: header + body as plain dicts (design.md §2, style.md §3).

Strict and lossless: a body that is cut short, has bytes left over, names an unknown opcode or
notification code, or carries a string without its NUL is decoded as far as it goes; what
could not be decoded stays in ``Decoded.remainder`` and every oddity is listed in
``Decoded.problems``. Only :class:`fusetrace.errors.DecodeError` escapes, and only when the
header itself cannot be read.

Two engines, with the same result (a test checks it on every fixture and on fuzzed frames):
``"fast"`` (default) reads fixed structs with the ``struct`` layouts derived from the
construct schemas (:func:`fusetrace.protocol.schemas.flat`) and takes short cuts for the
common well-formed shapes (fixed structs only, one name, one run of data); ``"construct"`` is
the reference: every frame through the general interpreter, structs parsed by the construct
schemas themselves.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from operator import itemgetter
from typing import Any, ClassVar, Literal, NamedTuple

import construct as c

from fusetrace.errors import DecodeError
from fusetrace.protocol.abi import (
    FUSE_EXT_GROUPS,
    FUSE_INT_REQ_BIT,
    InitFlag,
    IoctlFlag,
    Opcode,
    notify_name,
    opcode_name,
)
from fusetrace.protocol.header import (
    IN_HEADER_SIZE,
    OUT_HEADER_SIZE,
    InHeader,
    OutHeader,
    in_header_struct,
    out_header_struct,
)
from fusetrace.protocol.registry import NOTIFY, OPS, Arg, ArgKind, OpSpec, ReplyShape
from fusetrace.protocol.schemas import BY_LENGTH, Flat, flat, plain, schemas, struct_for
from fusetrace.protocol.session import Negotiated

Engine = Literal["fast", "construct"]
Kind = Literal["request", "reply", "notify", "interrupt-reply"]


class Problem(NamedTuple):
    """Something a decoded frame got wrong. ``code`` is a stable marker, ``message`` prose.

    Codes: ``truncated`` (body shorter than its layout), ``trailing`` (bytes left over),
    ``length`` (header len differs from the frame size), ``snapped`` (frame stored cut to the
    snap length), ``unknown-opcode``, ``unknown-notify``, ``string`` (name without NUL, or
    namelen disagreeing), ``ext`` (bad extension block), ``dirent`` (bad directory record),
    ``error-payload`` (error reply with a body), ``no-reply`` (reply to an op that has none),
    ``ioctl`` (an IOCTL retry reply whose data is not its iovecs),
    ``unpaired`` (reply whose request is unknown), ``interrupt-payload``, ``internal``.
    """

    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(slots=True, eq=False)
class Decoded:
    """One decoded frame.

    ``opcode`` is the request's opcode (for a reply: the paired request's, ``None`` if
    unknown; for an interrupt reply: INTERRUPT) or, for a notification, the notify code.
    ``body`` holds the fields of the body (struct fields flattened, nested structs nested,
    names and link targets as text, file data as bytes).

    A decoder asked to (``FrameDecoder(lazy=True)``) checks a well-formed body but builds
    its dict only when ``body`` is first read: until then ``lazy`` is the :class:`Lazy` that
    builds it from the frame's bytes, and lets a reader that needs a few fields take them
    from the bytes directly (the summary line). ``lazy`` is None for a body decoded at once.
    """

    kind: Kind
    header: InHeader | OutHeader
    opcode: int | None
    name: str
    body: dict[str, Any] = field(default_factory=dict)
    remainder: bytes = b""
    problems: list[Problem] = field(default_factory=list)
    lazy: ClassVar[Lazy | None] = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Decoded):
            return NotImplemented
        return (self.kind, self.header, self.opcode, self.name, self.body, self.remainder,
                self.problems) == (other.kind, other.header, other.opcode, other.name,
                                   other.body, other.remainder, other.problems)  # fmt: skip

    __hash__ = None  # type: ignore[assignment]

    @property
    def unique(self) -> int:
        return self.header.unique

    @property
    def error(self) -> int | None:
        """The reply's error (0 or negative errno); None for requests and notifications."""
        if self.kind in ("reply", "interrupt-reply"):
            return self.header.error  # type: ignore[union-attr]
        return None

    @property
    def nodeid(self) -> int | None:
        return self.header.nodeid if isinstance(self.header, InHeader) else None

    @property
    def ok(self) -> bool:
        return not self.problems


class _Unbuilt(Decoded):
    """A :class:`Decoded` whose body is built from the frame's bytes when first read (when
    ``lazy`` is set); the lazy decoder makes every frame of its fast paths of this class."""

    __slots__ = ("_built", "_data", "lazy")

    _built: dict[str, Any] | None
    _data: bytes

    @property
    def body(self) -> dict[str, Any]:
        body = self._built
        if body is None:
            lazy: Lazy = self.lazy  # type: ignore[assignment]
            body = lazy.unpack(self._data, lazy.pos) if lazy.simple else lazy.build(self._data)
            self._built = body
        return body

    @body.setter
    def body(self, value: dict[str, Any]) -> None:
        self._built = value


_new_object = object.__new__


def _decoded(
    kind: Kind, header: InHeader | OutHeader, opcode: int | None, name: str, body: dict[str, Any]
) -> Decoded:
    """``Decoded(kind, header, opcode, name, body)`` for the hot paths, built without the
    dataclass's Python-level ``__init__`` (no remainder, no problems)."""
    d: Decoded = _new_object(Decoded)
    d.kind = kind
    d.header = header
    d.opcode = opcode
    d.name = name
    d.body = body
    d.remainder = b""
    d.problems = []
    return d


def _kept(
    kind: Kind, header: InHeader | OutHeader, opcode: int | None, name: str, body: dict[str, Any]
) -> Decoded:
    """:func:`_decoded` as the lazy decoder makes it (one class on its hot paths): the body
    built already."""
    d: _Unbuilt = _new_object(_Unbuilt)
    d.kind = kind
    d.header = header
    d.opcode = opcode
    d.name = name
    d._built = body
    d.remainder = b""
    d.problems = []
    d.lazy = None  # type: ignore[misc]
    return d


def _deferred(
    kind: Kind, header: InHeader | OutHeader, opcode: int | None, name: str, lazy: Lazy,
    data: bytes,
) -> Decoded:  # fmt: skip
    """A well-formed frame whose body ``lazy`` builds from ``data`` when it is read."""
    d: _Unbuilt = _new_object(_Unbuilt)
    d.kind = kind
    d.header = header
    d.opcode = opcode
    d.name = name
    d._built = None
    d._data = data
    d.remainder = b""
    d.problems = []
    d.lazy = lazy  # type: ignore[misc]
    return d


class Lazy:
    """How a body the fast path checked and left unbuilt is read: one fixed struct at
    ``pos`` (``frame_len``: the frame's length then), optionally followed by a run of bytes
    named ``tail`` that a field of the struct sizes (WRITE); one run of bytes named ``rest``
    (READ's reply); or a directory listing (``dirents``: the body's name and whether it is
    READDIRPLUS).

    ``build(data)`` makes the body dict; ``picker(paths)`` gives a function that reads the
    struct's fields at those dotted paths (``"attr.mode"``) from a frame's bytes with one
    unpack, as a tuple (None without a struct); ``names(data)`` the names of a listing's
    records, in order.
    """

    __slots__ = ("_flat", "_pickers", "dirents", "frame_len", "length", "order", "pos", "rest",
                 "simple", "tail", "unpack")  # fmt: skip

    def __init__(
        self,
        flat_: Flat | None,
        pos: int,
        order: str,
        *,
        dirents: tuple[str, bool] | None = None,
        tail: tuple[str, str] | None = None,
        rest: str | None = None,
    ) -> None:
        self._flat = flat_
        self.pos = pos
        self.order = order
        self.dirents = dirents
        self.rest = rest
        self.tail: str | None = None
        #: data -> (the length field's value,) when there is a tail
        self.length: Any = None
        #: the length of a frame that is header and struct exactly (-1: none such)
        self.frame_len = pos + flat_.size if flat_ is not None and tail is None else -1
        if tail is not None and flat_ is not None:
            self.tail, length_from = tail
            _, offset, code = flat_.fields[length_from]
            self.length = struct.Struct(f"{order}{pos + offset}x{code}").unpack_from
            self.frame_len = -1
        #: one fixed struct and nothing else: the body is ``unpack(data, pos)``
        self.simple = flat_ is not None and tail is None
        self._pickers: dict[tuple[str, ...], Any] = {}
        #: (data, pos) -> the dict of the fixed struct
        self.unpack: Any = flat_.unpack_from if flat_ is not None else None

    @property
    def head_end(self) -> int:
        """Where the fixed struct ends (a tail starts)."""
        return self.pos + (self._flat.size if self._flat is not None else 0)

    def build(self, data: bytes) -> dict[str, Any]:
        if self.simple:
            body: dict[str, Any] = self.unpack(data, self.pos)
            return body
        if self.tail is not None:
            body = self.unpack(data, self.pos)
            body[self.tail] = data[self.head_end :]
            return body
        if self.rest is not None:
            return {self.rest: data[self.pos :]}
        assert self.dirents is not None
        name, plus = self.dirents
        out = _Out(self.pos)
        _dirents(data, self.pos, len(data), out, self.order, plus, "fast")
        return {name: out.body["__entries"]}

    def picker(self, paths: tuple[str, ...]) -> Any:
        """data -> the values at ``paths``, read by one ``struct`` that skips every other
        byte; None when the body has no struct or the struct lacks one of them."""
        get = self._pickers.get(paths)
        if get is None:
            if self._flat is None or not all(p in self._flat.fields for p in paths):
                return None
            fields = self._flat.fields
            wanted = sorted(paths, key=lambda p: fields[p][1])
            codes = [self.order]
            pos = 0
            for path in wanted:
                _, offset, code = fields[path]
                codes.append(f"{self.pos + offset - pos}x{code}")
                pos = self.pos + offset + struct.calcsize("<" + code)
            get = struct.Struct("".join(codes)).unpack_from
            if wanted != list(paths):
                items = itemgetter(*[wanted.index(p) for p in paths])
                read = get

                def get(data: bytes) -> tuple[Any, ...]:
                    return items(read(data))

            self._pickers[paths] = get
        return get

    def names(self, data: bytes) -> list[str]:
        assert self.dirents is not None
        size, offset = _dirent_head(self.order, self.dirents[1])
        namelen = _U32[self.order].unpack_from
        names = []
        pos = self.pos
        end = len(data)
        while pos < end:
            (n,) = namelen(data, pos + offset)
            start = pos + size
            names.append(data[start : start + n].decode("utf-8", "surrogateescape"))
            pos += (size + n + 7) & ~7
        return names


_U32 = {o: struct.Struct(o + "I") for o in "<>"}


# ---- layouts ---------------------------------------------------------------------------

_Step = tuple[ArgKind, str, Any]  # (kind, body name, payload)


@cache
def _steps(
    args: tuple[Arg, ...], order: str, minor: int, setxattr_ext: bool, engine: Engine
) -> tuple[_Step, ...]:
    neg = Negotiated(
        byte_order="little" if order == "<" else "big",
        minor=minor,
        flags=InitFlag.SETXATTR_EXT if setxattr_ext else InitFlag(0),
    )
    fl = flat(order)
    sc = schemas(order)
    out: list[_Step] = []
    for a in args:
        if a.kind is ArgKind.STRUCT:
            assert a.struct is not None
            variants = BY_LENGTH.get(a.struct, (struct_for(a.struct, neg),))
            out.append((a.kind, a.name, tuple(_reader(v, fl, sc, engine) for v in variants)))
        elif a.kind is ArgKind.ARRAY:
            assert a.struct is not None
            out.append((a.kind, a.name, (_reader(a.struct, fl, sc, engine), a.length_from)))
        elif a.kind is ArgKind.BYTES:
            out.append((a.kind, a.name, a.length_from))
        else:
            out.append((a.kind, a.name, None))
    return tuple(out)


class _Reader(NamedTuple):
    name: str
    size: int
    read: Any  # (data, offset) -> dict | int


def _reader(name: str, fl: dict[str, Any], sc: dict[str, Any], engine: Engine) -> _Reader:
    f = fl[name]
    if engine == "fast":
        return _Reader(name, f.size, f.unpack_from)
    schema = sc[name]
    size = f.size

    def read(data: bytes, offset: int) -> Any:
        return plain(schema.parse(data[offset : offset + size]))

    return _Reader(name, size, read)


class _Plan(NamedTuple):
    """A layout ready to run; ``fixed`` is set when it is fixed structs only (fast path)."""

    steps: tuple[_Step, ...]
    fixed_size: int
    fixed: tuple[Any, ...] | None
    #: the layout is one string (LOOKUP...) or one run of raw bytes (READ reply...)
    cstring: str | None
    rest: str | None
    #: the reader of the only fixed struct, when there is exactly one
    one: Any
    #: fixed structs then one string or one run of bytes (MKDIR, WRITE...): the structs'
    #: readers, their size and the last step (extension blocks aside)
    head: tuple[Any, ...] | None
    head_size: int
    tail: _Step | None


def _layout(args: tuple[Arg, ...], neg: Negotiated, engine: Engine) -> _Plan:
    # cached on the session object; keyed by id(): the argument tuples are the registry's
    key = (id(args), engine)
    plan: _Plan | None = neg._cache.get(key)
    if plan is None:
        steps = _steps(args, neg.order, neg.minor, bool(neg.flags & InitFlag.SETXATTR_EXT), engine)
        fixed = None
        size = 0
        if all(k is ArgKind.STRUCT and len(p) == 1 for k, _, p in steps):
            fixed = tuple(p[0] for _, _, p in steps)
            size = sum(r.size for r in fixed)
        single = steps[0] if len(steps) == 1 else None
        cstring = single[1] if single and single[0] is ArgKind.CSTRING else None
        rest = single[1] if single and single[0] is ArgKind.REST else None
        one = fixed[0].read if fixed is not None and len(fixed) == 1 else None
        body_steps = [st for st in steps if st[0] is not ArgKind.EXT]
        n = 0
        while (
            n < len(body_steps)
            and body_steps[n][0] is ArgKind.STRUCT
            and len(body_steps[n][2]) == 1
        ):
            n += 1
        head = tail = None
        head_size = 0
        last = (ArgKind.CSTRING, ArgKind.BYTES, ArgKind.ARRAY)
        if n and n == len(body_steps) - 1 and body_steps[n][0] in last:
            head = tuple(p[0] for _, _, p in body_steps[:n])
            head_size = sum(r.size for r in head)
            tail = body_steps[n]
        plan = neg._cache[key] = _Plan(
            steps, size, fixed, cstring, rest, one, head, head_size, tail
        )
    return plan


# ---- the body interpreter --------------------------------------------------------------


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _align8(n: int) -> int:
    return (n + 7) & ~7


class _Out:
    """What the interpreter found; ``pos`` is how far it got."""

    __slots__ = ("body", "pos", "problems", "snapped", "stopped")

    def __init__(self, pos: int) -> None:
        self.body: dict[str, Any] = {}
        self.pos = pos
        self.problems: list[Problem] = []
        self.stopped = False
        #: the frame was stored cut to the snap length: missing data is expected
        self.snapped = False

    def problem(self, code: str, message: str) -> None:
        self.problems.append(Problem(code, message))


def _run(
    steps: tuple[_Step, ...],
    data: bytes,
    pos: int,
    end: int,
    out: _Out,
    order: str,
    engine: Engine,
) -> None:
    body = out.body
    for kind, name, payload in steps:
        avail = end - pos
        if kind is ArgKind.STRUCT:
            reader = payload[0]
            if len(payload) > 1:  # INIT structs: the largest variant that fits
                for r in payload:
                    if r.size <= avail:
                        reader = r
                        break
                else:
                    reader = payload[-1]
            if avail < reader.size:
                out.problem(
                    "truncated", f"{reader.name} needs {reader.size} bytes, {avail} present"
                )
                out.stopped = True
                break
            body.update(reader.read(data, pos))
            pos += reader.size
        elif kind is ArgKind.CSTRING:
            nul = data.find(b"\0", pos, end)
            if nul < 0:
                out.problem("string", f"{name}: no terminating NUL in {avail} bytes")
                out.stopped = True
                break
            body[name] = _text(data[pos:nul])
            pos = nul + 1
        elif kind is ArgKind.BYTES:
            want = body.get(payload, 0)
            if want > avail:
                if not out.snapped:
                    out.problem(
                        "truncated", f"{name}: {payload} says {want} bytes, {avail} present"
                    )
                body[name] = data[pos:end]
                pos = end
            else:
                body[name] = data[pos : pos + want]
                pos += want
        elif kind is ArgKind.REST:
            body[name] = data[pos:end]
            pos = end
        elif kind is ArgKind.TEXT:
            body[name] = _text(data[pos:end])
            pos = end
        elif kind is ArgKind.ARRAY:
            reader, count_from = payload
            count = body.get(count_from, 0)
            fit = min(count, avail // reader.size) if reader.size else 0
            if reader.name == "u64" and engine == "fast":
                body[name] = list(struct.unpack_from(f"{order}{fit}Q", data, pos))
            else:
                body[name] = [reader.read(data, pos + i * reader.size) for i in range(fit)]
            pos += fit * reader.size
            if fit < count:
                out.problem(
                    "truncated",
                    f"{name}: {count_from} says {count} records, {fit} present",
                )
                out.stopped = True
                break
        elif kind is ArgKind.DIRENTS or kind is ArgKind.DIRENTPLUS:
            pos = _dirents(data, pos, end, out, order, kind is ArgKind.DIRENTPLUS, engine)
            body[name] = out.body.pop("__entries")
        elif kind is ArgKind.NAMES or kind is ArgKind.DEVINFO:
            chunk = data[pos:end]
            parts = chunk.split(b"\0")
            tail = parts.pop()  # after the last NUL: empty when well-formed
            body[name] = [_text(p) for p in parts]
            pos = end - len(tail)
            if tail:
                out.problem("string", f"{name}: {len(tail)} bytes without terminating NUL")
        elif kind is ArgKind.EXT:  # pragma: no cover - the extension block is cut off first
            pass
    out.pos = pos


@cache
def _dirent_reader(order: str, plus: bool, engine: Engine) -> tuple[Any, int]:
    """(read, size) of one record head: fuse_dirent, or fuse_entry_out + fuse_dirent
    flattened into one dict (READDIRPLUS), derived from the kernel structs' schemas."""
    sc = schemas(order)
    if not plus:
        r = _reader("fuse_dirent", flat(order), sc, engine)
        return r.read, r.size
    if engine == "fast":
        f = _dirent_flat(order, plus)
        return f.unpack_from, f.size
    merged = c.Struct(*sc["fuse_entry_out"].subcons, *sc["fuse_dirent"].subcons)
    size = merged.sizeof()

    def read(data: bytes, offset: int) -> Any:
        return plain(merged.parse(data[offset : offset + size]))

    return read, size


@cache
def _dirent_flat(order: str, plus: bool) -> Flat:
    """The derived layout of one record head (:func:`_dirent_reader`, engine "fast")."""
    if not plus:
        return flat(order)["fuse_dirent"]
    sc = schemas(order)
    merged = c.Struct(*sc["fuse_entry_out"].subcons, *sc["fuse_dirent"].subcons)
    return Flat("direntplus", merged, order)


@cache
def _dirent_head(order: str, plus: bool) -> tuple[int, int]:
    """(size of a record head, byte offset of its ``namelen``)."""
    f = _dirent_flat(order, plus)
    return f.size, f.fields["namelen"][1]


def _dirents_whole(data: bytes, pos: int, order: str, plus: bool) -> bool:
    """Do whole records fill ``data`` from ``pos`` to its end, with zero padding? (What
    :func:`_dirents` reads without a problem.)"""
    size, offset = _dirent_head(order, plus)
    namelen = _U32[order].unpack_from
    end = len(data)
    while pos < end:
        if end - pos < size:
            return False
        (n,) = namelen(data, pos + offset)
        stop = pos + size + n
        step = (size + n + 7) & ~7
        if step > end - pos:
            return False
        if stop < pos + step and data[stop : pos + step].strip(b"\0"):
            return False
        pos += step
    return True


def _dirents(
    data: bytes, pos: int, end: int, out: _Out, order: str, plus: bool, engine: Engine
) -> int:
    read, fixed = _dirent_reader(order, plus, engine)
    entries: list[dict[str, Any]] = []
    append = entries.append
    while pos < end:
        avail = end - pos
        if avail < fixed:
            out.problem("dirent", f"{avail} trailing bytes, shorter than a record header")
            break
        rec = read(data, pos)
        namelen = rec["namelen"]
        size = (fixed + namelen + 7) & ~7
        if size > avail:
            out.problem("dirent", f"record of {size} bytes (namelen {namelen}) overruns the reply")
            break
        start = pos + fixed
        stop = start + namelen
        rec["name"] = data[start:stop].decode("utf-8", "surrogateescape")
        if stop < pos + size and data[stop : pos + size].strip(b"\0"):
            out.problem("dirent", f"nonzero padding after {rec['name']!r}")
        append(rec)
        pos += size
    out.body["__entries"] = entries
    return pos


def _ext(data: bytes, pos: int, end: int, out: _Out, order: str) -> list[dict[str, Any]]:
    """The extension block (protocol.md §3.3) as a list of sub-blocks."""
    blocks: list[dict[str, Any]] = []
    u32x2 = struct.Struct(order + "II")
    while pos < end:
        if end - pos < 8:
            out.problem("ext", f"{end - pos} bytes left, shorter than an extension header")
            break
        size, second = u32x2.unpack_from(data, pos)
        if size < 8 or size > end - pos or size % 8:
            out.problem("ext", f"extension of size {size} at body offset {pos}")
            break
        raw = data[pos : pos + size]
        if second < FUSE_EXT_GROUPS:
            block = {"type": "secctx", "size": size, "nr_secctx": second, "entries": []}
            p = 8
            for _ in range(second):
                if p + 8 > size:
                    out.problem("ext", "security context entry cut short")
                    break
                csize, cpad = u32x2.unpack_from(raw, p)
                nul = raw.find(b"\0", p + 8)
                if nul < 0 or nul + 1 + csize > size:
                    out.problem("ext", "security context name or value cut short")
                    break
                ctx = raw[nul + 1 : nul + 1 + csize]
                block["entries"].append(
                    {"size": csize, "padding": cpad, "name": _text(raw[p + 8 : nul]),
                     "context": ctx}
                )  # fmt: skip
                p = _align8(nul + 1 + csize)
        elif second == FUSE_EXT_GROUPS:
            (nr,) = struct.unpack_from(order + "I", raw, 8) if size >= 12 else (0,)
            n = min(nr, (size - 12) // 4)
            groups = list(struct.unpack_from(f"{order}{n}I", raw, 12))
            if n < nr:
                out.problem("ext", f"supplementary groups: {nr} announced, {n} present")
            block = {"type": "supp_groups", "size": size, "nr_groups": nr, "groups": groups}
        else:
            block = {"type": second, "size": size, "data": raw[8:]}
            out.problem("ext", f"unknown extension type {second}")
        blocks.append(block)
        pos += size
    return blocks


# ---- public decoders -------------------------------------------------------------------


def _fixed(readers: tuple[Any, ...], data: bytes, pos: int) -> dict[str, Any]:
    if len(readers) == 1:
        body: dict[str, Any] = readers[0].read(data, pos)
        return body
    body = {}
    for r in readers:
        body.update(r.read(data, pos))
        pos += r.size
    return body


def _finish(
    kind: Kind,
    header: InHeader | OutHeader,
    opcode: int | None,
    name: str,
    data: bytes,
    out: _Out,
    end: int,
) -> Decoded:
    pos = out.pos
    if pos < len(data):
        if not out.stopped and pos < end:
            out.problem("trailing", f"{end - pos} bytes after the {name} body")
        remainder = data[pos:]
    else:
        remainder = b""
    return Decoded(kind, header, opcode, name, out.body, remainder, out.problems)


def _bounds(data: bytes, hlen: int, hsize: int, orig_len: int | None, out: _Out) -> int:
    n = len(data)
    if orig_len is not None and orig_len > n:
        out.problem("snapped", f"{n} of {orig_len} bytes stored")
        out.snapped = True
        if hlen != orig_len:
            out.problem("length", f"header len {hlen}, frame {orig_len} bytes")
        return n
    if hlen != n:
        out.problem("length", f"header len {hlen}, frame {n} bytes")
        if hsize <= hlen < n:
            return hlen
    return n


def decode_request(
    data: bytes,
    negotiated: Negotiated | None = None,
    *,
    engine: Engine = "fast",
    orig_len: int | None = None,
    header: InHeader | None = None,
) -> Decoded:
    """Decode a kernel → daemon frame (request, FORGET, INTERRUPT, NOTIFY_REPLY).

    ``orig_len``: the frame's real length when the stored ``data`` was cut to a snap length.
    ``header``: the header when the caller has read it already (the connection model).
    Raises DecodeError only if ``data`` is shorter than the 40-byte header.
    """
    neg = negotiated or _DEFAULT
    order = neg._order
    if header is None:
        try:
            header = _in_make(_IN_UNPACK[order](data))
        except struct.error:
            raise DecodeError(
                f"request header cut short: {len(data)} of {IN_HEADER_SIZE} bytes"
            ) from None
    op = header.opcode
    if engine == "fast":
        d = request_fast(data, header, neg)
        if d is not None:
            return d
    spec = OPS.get(op)
    out = _Out(IN_HEADER_SIZE)
    end = _bounds(data, header.len, IN_HEADER_SIZE, orig_len, out)
    name = opcode_name(header.opcode)
    if spec is None:
        out.problem("unknown-opcode", f"opcode {header.opcode} is not a FUSE opcode")
        out.stopped = True
        return _finish("request", header, header.opcode, name, data, out, end)
    ext_len = header.total_extlen * 8
    body_end = end
    if ext_len:
        if not spec.extensions:
            out.problem("ext", f"total_extlen {header.total_extlen} on {name}")
        if ext_len > end - IN_HEADER_SIZE:
            out.problem("ext", f"total_extlen {header.total_extlen} exceeds the body")
            ext_len = 0
        else:
            body_end = end - ext_len
    try:
        _run(_layout(spec.request, neg, engine).steps, data, IN_HEADER_SIZE, body_end, out,
             order, engine)  # fmt: skip
        if ext_len and not out.stopped:
            if out.pos < body_end:
                out.problem("trailing", f"{body_end - out.pos} bytes before the extensions")
                out.stopped = True
            else:
                out.body["ext"] = _ext(data, body_end, end, out, order)
                out.pos = end
    except (c.ConstructError, struct.error, ValueError) as e:  # pragma: no cover - defensive
        out.problem("internal", f"{type(e).__name__}: {e}")
        out.stopped = True
    return _finish("request", header, header.opcode, name, data, out, end)


def request_fast(
    data: bytes, header: InHeader, neg: Negotiated, lazy_body: bool = False
) -> Decoded | None:
    """:func:`decode_request`'s fast path (engine "fast"; the header already read): a
    request whose ``in.len`` is its length, without extensions, made of fixed structs only
    or of one name, decoded by a plan cached per session and opcode. None for any other
    frame (then :func:`decode_request` decodes it in full). ``lazy_body``: leave a body of
    one fixed struct unbuilt until it is read (:attr:`Decoded.lazy`)."""
    n = len(data)
    if header[0] != n or header[7]:  # len, total_extlen
        return None
    op = header[1]
    fast = neg._cache.get(op)  # int keys: requests; ~op: replies; tuples: layouts
    if fast is None:
        fast = neg._cache[op] = _fast_request_plan(op, neg)
    plan, name, lazy = fast
    if lazy_body:
        if lazy is not None:
            length = lazy.length
            if n == lazy.frame_len or (
                length is not None and n >= lazy.head_end and length(data)[0] == n - lazy.head_end
            ):
                return _deferred("request", header, op, name, lazy, data)
        new = _kept
    else:
        new = _decoded
    if plan is not None:
        if plan.fixed is not None and n - IN_HEADER_SIZE == plan.fixed_size:
            one = plan.one
            body = one(data, IN_HEADER_SIZE) if one else _fixed(plan.fixed, data, 40)
            return new("request", header, op, name, body)
        if plan.cstring is not None and data.find(b"\0", IN_HEADER_SIZE) == n - 1:
            body = {plan.cstring: _text(data[IN_HEADER_SIZE:-1])}
            return new("request", header, op, name, body)
        tail = plan.tail
        if tail is not None:
            pos = IN_HEADER_SIZE + plan.head_size
            if n < pos:
                return None
            body = _fixed(plan.head, data, IN_HEADER_SIZE)  # type: ignore[arg-type]
            kind, tname, payload = tail
            if kind is ArgKind.CSTRING:
                if data.find(b"\0", pos) != n - 1:
                    return None
                body[tname] = _text(data[pos:-1])
            elif kind is ArgKind.BYTES:  # exactly the length its field says
                if body.get(payload, 0) != n - pos:
                    return None
                body[tname] = data[pos:]
            else:  # ARRAY: exactly the records its count field says (BATCH_FORGET)
                reader, count_from = payload
                count = body.get(count_from, 0)
                size = reader.size
                if not size or count * size != n - pos:
                    return None
                if reader.name == "u64":
                    body[tname] = list(struct.unpack_from(f"{neg._order}{count}Q", data, pos))
                else:
                    read = reader.read
                    body[tname] = [read(data, pos + i * size) for i in range(count)]
            return new("request", header, op, name, body)
    return None


def _fast_request_plan(op: int, neg: Negotiated) -> tuple[_Plan | None, str, Lazy | None]:
    """(plan, name, lazy body of a request of one fixed struct) for the request fast path."""
    spec = OPS.get(op)
    if spec is None:
        return None, "", None
    plan = _layout(spec.request, neg, "fast")
    return plan, opcode_name(op), _lazy_struct(plan, IN_HEADER_SIZE, neg)


def _lazy_struct(plan: _Plan, pos: int, neg: Negotiated) -> Lazy | None:
    """A :class:`Lazy` for a plan of exactly one fixed struct (not empty), or of one fixed
    struct and the bytes one of its fields sizes; else None."""
    if plan.one is not None and plan.fixed_size:
        reader = plan.fixed[0]  # type: ignore[index]
        return Lazy(flat(neg._order)[reader.name], pos, neg._order)
    tail = plan.tail
    if plan.head is not None and len(plan.head) == 1 and tail and tail[0] is ArgKind.BYTES:
        return Lazy(flat(neg._order)[plan.head[0].name], pos, neg._order, tail=tail[1:])
    return None


_IN_UNPACK = {o: in_header_struct(o).unpack_from for o in "<>"}
_OUT_UNPACK = {o: out_header_struct(o).unpack_from for o in "<>"}
_in_make = InHeader._make
_out_make = OutHeader._make


def _out_header(data: bytes, order: str) -> OutHeader:
    try:
        return _out_make(_OUT_UNPACK[order](data))
    except struct.error:
        raise DecodeError(
            f"reply header cut short: {len(data)} of {OUT_HEADER_SIZE} bytes"
        ) from None


def decode_reply(
    data: bytes,
    request_opcode: int | None,
    negotiated: Negotiated | None = None,
    *,
    request_body: Mapping[str, Any] | None = None,
    engine: Engine = "fast",
    orig_len: int | None = None,
    header: OutHeader | None = None,
) -> Decoded:
    """Decode a daemon → kernel reply to a request of ``request_opcode``.

    ``request_opcode`` None: the request is unknown; only the header is decoded (problem
    ``unpaired``). ``request_body``: the decoded request body, which decides the GETXATTR /
    LISTXATTR reply shape (``size`` 0: the 8-byte probe reply); without it an 8-byte payload
    is read as the probe reply. A frame with ``unique`` 0 is a notification: use
    :func:`decode_notify` (or :func:`decode_outbound`). Raises DecodeError only when the
    16-byte header is cut short.
    """
    neg = negotiated or _DEFAULT
    order = neg._order
    if header is None:
        header = _out_header(data, order)
    if engine == "fast" and request_opcode is not None and orig_len is None:
        d = reply_fast(data, request_opcode, header, neg)
        if d is not None:
            return d
    out = _Out(OUT_HEADER_SIZE)
    end = _bounds(data, header.len, OUT_HEADER_SIZE, orig_len, out)
    payload = end - OUT_HEADER_SIZE
    if header.unique & FUSE_INT_REQ_BIT:
        if payload:
            out.problem("interrupt-payload", f"interrupt reply with {payload} payload bytes")
            out.stopped = True
        return _finish("interrupt-reply", header, int(Opcode.INTERRUPT), "INTERRUPT", data,
                       out, end)  # fmt: skip
    if request_opcode is None:
        out.problem("unpaired", f"no outstanding request with unique {header.unique}")
        out.stopped = True
        return _finish("reply", header, None, "?", data, out, end)
    request_opcode = int(request_opcode)
    name = opcode_name(request_opcode)
    spec = OPS.get(request_opcode)
    if header.error:
        if payload:
            out.problem("error-payload", f"error reply with {payload} payload bytes")
            out.stopped = True
        return _finish("reply", header, request_opcode, name, data, out, end)
    if spec is None:
        out.problem("unknown-opcode", f"reply to unknown opcode {request_opcode}")
        out.stopped = True
        return _finish("reply", header, request_opcode, name, data, out, end)
    if spec.reply is ReplyShape.NONE:
        out.problem("no-reply", f"{name} has no reply")
        out.stopped = True
        return _finish("reply", header, request_opcode, name, data, out, end)
    args = _reply_args(spec, request_body, payload)
    plan = _layout(args, neg, engine)
    if plan.fixed is not None and payload == plan.fixed_size and not out.problems:
        return Decoded("reply", header, request_opcode, name,
                       _fixed(plan.fixed, data, OUT_HEADER_SIZE))  # fmt: skip
    try:
        _run(plan.steps, data, OUT_HEADER_SIZE, end, out, order, engine)
        if request_opcode == Opcode.IOCTL and out.body.get("flags", 0) & IoctlFlag.RETRY:
            _ioctl_iovecs(out, order, engine)
    except (c.ConstructError, struct.error, ValueError) as e:  # pragma: no cover - defensive
        out.problem("internal", f"{type(e).__name__}: {e}")
        out.stopped = True
    return _finish("reply", header, request_opcode, name, data, out, end)


def reply_fast(
    data: bytes, request_opcode: int, header: OutHeader, neg: Negotiated, lazy_body: bool = False
) -> Decoded | None:
    """:func:`decode_reply`'s fast path (engine "fast"; the header already read; the frame
    whole): a header-only error reply (whatever the request), or a well-formed reply to a
    request whose reply shape does not depend on its body, decoded by a plan cached per
    session and opcode. None for any other frame (then :func:`decode_reply` decodes it in
    full). ``lazy_body``: leave a body of one fixed struct, or a directory listing, unbuilt
    until it is read (:attr:`Decoded.lazy`)."""
    n = len(data)
    if header[0] != n or header[2] & FUSE_INT_REQ_BIT:  # len, unique
        return None
    fast = neg._cache.get(~request_opcode)
    if fast is None:
        fast = neg._cache[~request_opcode] = _fast_reply_plan(int(request_opcode), neg)
    name, plan, empty, lazy = fast
    new = _kept if lazy_body else _decoded
    if header[1]:  # error: the header alone, whatever the request asked for
        if n == OUT_HEADER_SIZE:
            return new("reply", header, request_opcode, name, {})
        return None
    if lazy_body and lazy is not None and n == lazy.frame_len:
        # the most common reply of a summary's hot path (one fixed struct)
        return _deferred("reply", header, request_opcode, name, lazy, data)
    if plan is None:
        return None
    if plan.fixed is not None and n - OUT_HEADER_SIZE == plan.fixed_size:
        if plan.fixed or empty:
            one = plan.one
            body = one(data, 16) if one else _fixed(plan.fixed, data, 16)
            return new("reply", header, request_opcode, name, body)
    elif plan.rest is not None:
        if lazy_body:
            return _deferred("reply", header, request_opcode, name, lazy, data)  # type: ignore[arg-type]
        return new("reply", header, request_opcode, name, {plan.rest: data[16:]})
    elif lazy is not None and lazy.dirents is not None:
        # READDIR(PLUS): whole records up to the end, nothing odd
        if lazy_body:
            if _dirents_whole(data, OUT_HEADER_SIZE, neg._order, lazy.dirents[1]):
                return _deferred("reply", header, request_opcode, name, lazy, data)
            return None
        out = _Out(OUT_HEADER_SIZE)
        end = _dirents(data, OUT_HEADER_SIZE, n, out, neg._order, lazy.dirents[1], "fast")
        if end == n and not out.problems:
            body = {lazy.dirents[0]: out.body["__entries"]}
            return new("reply", header, request_opcode, name, body)
    return None


def _ioctl_iovecs(out: _Out, order: str, engine: Engine) -> None:
    """FUSE_IOCTL_RETRY: the reply data is in_iovs + out_iovs fuse_ioctl_iovec records
    (protocol.md §8.2); they are added as ``iovecs``, ``data`` keeps the raw bytes."""
    body = out.body
    raw = body.get("data", b"")
    count = body.get("in_iovs", 0) + body.get("out_iovs", 0)
    reader = _reader("fuse_ioctl_iovec", flat(order), schemas(order), engine)
    if len(raw) != count * reader.size:
        out.problem("ioctl", f"retry reply: {len(raw)} data bytes for {count} iovecs")
        return
    body["iovecs"] = [reader.read(raw, i * reader.size) for i in range(count)]


def _fast_reply_plan(op: int, neg: Negotiated) -> tuple[str, _Plan | None, bool, Lazy | None]:
    """(name, plan, empty reply allowed, lazy body: of one fixed struct, or of a directory
    listing) for the reply fast path; the plan is None when only an error reply can take
    it."""
    spec = OPS.get(op)
    name = opcode_name(op)
    if spec is None or spec.reply is ReplyShape.NONE or spec.reply_probe is not None:
        return name, None, False, None
    plan = _layout(spec.reply_args, neg, "fast")
    lazy = _lazy_struct(plan, OUT_HEADER_SIZE, neg)
    if len(plan.steps) == 1 and plan.steps[0][0] in (ArgKind.DIRENTS, ArgKind.DIRENTPLUS):
        dirents = (plan.steps[0][1], plan.steps[0][0] is ArgKind.DIRENTPLUS)
        lazy = Lazy(None, OUT_HEADER_SIZE, neg._order, dirents=dirents)
    elif plan.rest is not None:
        lazy = Lazy(None, OUT_HEADER_SIZE, neg._order, rest=plan.rest)
    return name, plan, spec.reply is ReplyShape.EMPTY, lazy


def _reply_args(
    spec: OpSpec, request_body: Mapping[str, Any] | None, payload: int
) -> tuple[Arg, ...]:
    if spec.reply_probe is not None:
        if request_body is not None:
            if request_body.get("size", 1) == 0:
                return spec.reply_probe
        elif payload == 8:
            return spec.reply_probe
    return spec.reply_args


def decode_notify(
    data: bytes,
    negotiated: Negotiated | None = None,
    *,
    engine: Engine = "fast",
    orig_len: int | None = None,
    header: OutHeader | None = None,
) -> Decoded:
    """Decode a notification (daemon → kernel, ``unique`` 0, ``error`` = notify code)."""
    neg = negotiated or _DEFAULT
    order = neg.order
    if header is None:
        header = _out_header(data, order)
    out = _Out(OUT_HEADER_SIZE)
    end = _bounds(data, header.len, OUT_HEADER_SIZE, orig_len, out)
    code = header.error
    spec = NOTIFY.get(code)
    name = notify_name(code)
    if spec is None:
        out.problem("unknown-notify", f"notification code {code} is not known")
        out.stopped = True
        return _finish("notify", header, code, name, data, out, end)
    try:
        _run(_layout(spec.args, neg, engine).steps, data, OUT_HEADER_SIZE, end, out, order,
             engine)  # fmt: skip
    except (c.ConstructError, struct.error, ValueError) as e:  # pragma: no cover - defensive
        out.problem("internal", f"{type(e).__name__}: {e}")
        out.stopped = True
    body = out.body
    if "namelen" in body and "name" in body:
        got = len(body["name"].encode("utf-8", "surrogateescape"))
        if got != body["namelen"]:
            out.problem("string", f"namelen {body['namelen']} but the name has {got} bytes")
    if spec.args == () and out.pos < end:
        out.body["data"] = data[out.pos : end]  # size ignored by the kernel; kept, not flagged
        out.pos = end
    return _finish("notify", header, code, name, data, out, end)


def decode_outbound(
    data: bytes,
    request_opcode: int | None,
    negotiated: Negotiated | None = None,
    *,
    request_body: Mapping[str, Any] | None = None,
    engine: Engine = "fast",
    orig_len: int | None = None,
) -> Decoded:
    """A daemon → kernel frame: a notification if ``unique`` is 0, else a reply."""
    neg = negotiated or _DEFAULT
    header = _out_header(data, neg.order)
    if header.unique == 0:
        return decode_notify(data, neg, engine=engine, orig_len=orig_len)
    return decode_reply(
        data, request_opcode, neg, request_body=request_body, engine=engine, orig_len=orig_len
    )


_DEFAULT = Negotiated.default()
