"""Building frames from field dicts: the inverse of :mod:`fusetrace.protocol.decode`.

Bodies use the same shape the decoder gives (struct fields flattened, nested structs nested,
names as text, data as bytes). Missing fields are 0 (or empty); length and count fields that
the body implies (``size`` of WRITE data, ``namelen``, ``count`` of BATCH_FORGET, ...) are
filled in when absent, and the header's ``len`` always is. Structs are built with the
construct schemas of :mod:`fusetrace.protocol.schemas`, so encoders and decoders share one
definition.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

import construct as c

from fusetrace.errors import FusetraceError
from fusetrace.protocol.abi import FUSE_EXT_GROUPS, NotifyCode, Opcode
from fusetrace.protocol.header import (
    IN_HEADER_SIZE,
    OUT_HEADER_SIZE,
    InHeader,
    OutHeader,
    pack_in_header,
    pack_out_header,
)
from fusetrace.protocol.registry import NOTIFY, OPS, Arg, ArgKind
from fusetrace.protocol.schemas import BY_LENGTH, Schema, schemas, struct_for
from fusetrace.protocol.session import Negotiated

_DEFAULT = Negotiated.default()


class EncodeError(FusetraceError, ValueError):
    """A body cannot be encoded (unknown opcode, value out of range)."""


def _fill(schema: Schema, value: Any) -> Any:
    """A complete value for ``schema``: missing fields 0, missing arrays zeros."""
    if isinstance(schema, c.Renamed):
        return _fill(schema.subcon, value)
    if isinstance(schema, c.Struct):
        src = value if isinstance(value, Mapping) else {}
        return {sub.name: _fill(sub.subcon, src.get(sub.name)) for sub in schema.subcons}
    if isinstance(schema, c.Array):
        items = list(value) if value is not None else []
        count = schema.count if isinstance(schema.count, int) else len(items)
        items += [None] * (count - len(items))
        return [_fill(schema.subcon, v) for v in items[:count]]
    if isinstance(schema, c.Bytes):
        return value if value is not None else bytes(schema.length)
    return 0 if value is None else int(value)


def build_struct(name: str, fields: Mapping[str, Any], order: str = "<") -> bytes:
    """One kernel struct from its fields (missing ones 0)."""
    schema = schemas(order)[name]
    try:
        return bytes(schema.build(_fill(schema, fields)))
    except (c.ConstructError, OverflowError, TypeError, ValueError) as e:
        raise EncodeError(f"cannot build {name}: {e}") from None


def _cstr(value: Any) -> bytes:
    raw = value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogateescape")
    return raw + b"\0"


def _raw(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    return bytes(value)


def _align8(n: int) -> int:
    return (n + 7) & ~7


def _implied(args: Sequence[Arg], body: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` with the length/count fields it implies filled in where absent."""
    b = dict(body)
    for a in args:
        if a.kind in (ArgKind.BYTES, ArgKind.ARRAY) and a.length_from not in b:
            assert a.length_from is not None
            b[a.length_from] = len(b.get(a.name) or ())
    if "name" in b and "namelen" not in b:
        b["namelen"] = len(_cstr(b["name"])) - 1
    return b


def _dirent(entry: Mapping[str, Any], plus: bool, order: str) -> bytes:
    e = dict(entry)
    name = _cstr(e.get("name", ""))[:-1]
    e.setdefault("namelen", len(name))
    head = build_struct("fuse_entry_out", e, order) if plus else b""
    rec = head + build_struct("fuse_dirent", e, order) + name
    return rec + bytes(_align8(len(rec)) - len(rec))


def _ext(blocks: Sequence[Mapping[str, Any]], order: str) -> bytes:
    out = b""
    for blk in blocks:
        kind = blk.get("type")
        if kind == "secctx":
            entries = b""
            for ent in blk.get("entries", []):
                ctx = _raw(ent.get("context"))
                rec = build_struct(
                    "fuse_secctx",
                    {"size": ent.get("size", len(ctx)), "padding": ent.get("padding", 0)},
                    order,
                )
                rec += _cstr(ent.get("name", "")) + ctx
                entries += rec + bytes(_align8(len(rec)) - len(rec))
            nr = blk.get("nr_secctx", len(blk.get("entries", [])))
            size = blk.get("size", 8 + len(entries))
            out += build_struct("fuse_secctx_header", {"size": size, "nr_secctx": nr}, order)
            out += entries
        elif kind == "supp_groups":
            groups = list(blk.get("groups", []))
            nr = blk.get("nr_groups", len(groups))
            body = struct.pack(f"{order}I{len(groups)}I", nr, *groups)
            size = blk.get("size", _align8(8 + len(body)))
            rec = build_struct("fuse_ext_header", {"size": size, "type": FUSE_EXT_GROUPS}, order)
            rec += body
            out += rec + bytes(max(0, size - len(rec)))
        else:
            data = _raw(blk.get("data"))
            out += build_struct(
                "fuse_ext_header", {"size": blk.get("size", 8 + len(data)), "type": kind}, order
            )
            out += data
    return out


def encode_args(
    args: Sequence[Arg],
    body: Mapping[str, Any],
    negotiated: Negotiated | None = None,
) -> bytes:
    """The bytes of a message body laid out as ``args`` (the registry's argument list)."""
    neg = negotiated or _DEFAULT
    order = neg.order
    b = _implied(args, body)
    parts: list[bytes] = []
    for a in args:
        k = a.kind
        if k is ArgKind.STRUCT:
            assert a.struct is not None
            name = struct_for(a.struct, neg)
            if a.struct in BY_LENGTH:
                name = _init_variant(a.struct, b)
            parts.append(build_struct(name, b, order))
        elif k is ArgKind.CSTRING:
            parts.append(_cstr(b.get(a.name, "")))
        elif k in (ArgKind.BYTES, ArgKind.REST, ArgKind.TEXT):
            parts.append(_raw(b.get(a.name)))
        elif k is ArgKind.ARRAY:
            assert a.struct is not None
            for item in b.get(a.name) or ():
                if a.struct == "u64":
                    parts.append(int(item).to_bytes(8, "little" if order == "<" else "big"))
                else:
                    parts.append(build_struct(a.struct, item, order))
        elif k is ArgKind.DIRENTS or k is ArgKind.DIRENTPLUS:
            plus = k is ArgKind.DIRENTPLUS
            parts.extend(_dirent(e, plus, order) for e in b.get(a.name) or ())
        elif k is ArgKind.NAMES or k is ArgKind.DEVINFO:
            parts.extend(_cstr(n) for n in b.get(a.name) or ())
        elif k is ArgKind.EXT and b.get("ext"):
            parts.append(_ext(b["ext"], order))
    return b"".join(parts)


def _init_variant(name: str, body: Mapping[str, Any]) -> str:
    """INIT structs: the size the sender would use, from the minor it announces."""
    minor = body.get("minor", 45)
    if name == "fuse_init_in":
        return "fuse_init_in" if minor >= 36 else "fuse_init_in_compat"
    if minor < 5:
        return "fuse_init_out_compat"
    return "fuse_init_out" if minor >= 23 else "fuse_init_out_compat22"


def encode_request(
    opcode: int,
    body: Mapping[str, Any] | None = None,
    *,
    unique: int,
    nodeid: int = 0,
    uid: int = 0,
    gid: int = 0,
    pid: int = 0,
    total_extlen: int | None = None,
    padding: int = 0,
    negotiated: Negotiated | None = None,
) -> bytes:
    """A kernel → daemon frame. ``total_extlen`` defaults to the length of ``body["ext"]``."""
    neg = negotiated or _DEFAULT
    spec = OPS.get(opcode)
    if spec is None:
        raise EncodeError(f"unknown opcode {opcode}")
    body = body or {}
    args = spec.request
    ext = b""
    if body.get("ext"):
        ext = _ext(body["ext"], neg.order)
        args = tuple(a for a in args if a.kind is not ArgKind.EXT)
    payload = encode_args(args, body, neg) + ext
    if total_extlen is None:
        total_extlen = len(ext) // 8
    header = InHeader(IN_HEADER_SIZE + len(payload), int(opcode), unique, nodeid, uid, gid,
                      pid, total_extlen, padding)  # fmt: skip
    return pack_in_header(header, neg.order) + payload


def encode_reply(
    opcode: int,
    body: Mapping[str, Any] | None = None,
    *,
    unique: int,
    error: int = 0,
    negotiated: Negotiated | None = None,
    probe: bool = False,
) -> bytes:
    """A daemon → kernel reply to a request of ``opcode``.

    ``error`` nonzero gives the header-only error reply (``body`` ignored). ``probe``: the
    GETXATTR/LISTXATTR reply to a size-0 request (``fuse_getxattr_out``).
    """
    neg = negotiated or _DEFAULT
    if error:
        return pack_out_header(OutHeader(OUT_HEADER_SIZE, error, unique), neg.order)
    spec = OPS.get(opcode)
    if spec is None:
        raise EncodeError(f"unknown opcode {opcode}")
    args = spec.reply_probe if probe and spec.reply_probe else spec.reply_args
    body = body or {}
    if opcode == Opcode.IOCTL and "iovecs" in body and "data" not in body:
        iovecs = body["iovecs"]
        raw = b"".join(build_struct("fuse_ioctl_iovec", v, neg.order) for v in iovecs)
        body = {**body, "data": raw}
    payload = encode_args(args, body, neg)
    return pack_out_header(OutHeader(OUT_HEADER_SIZE + len(payload), 0, unique), neg.order) + (
        payload
    )


def encode_interrupt_reply(unique: int, error: int, negotiated: Negotiated | None = None) -> bytes:
    """The header-only reply to an INTERRUPT (``unique`` is the INTERRUPT's odd one)."""
    neg = negotiated or _DEFAULT
    return pack_out_header(OutHeader(OUT_HEADER_SIZE, error, unique), neg.order)


def encode_notify(
    code: int, body: Mapping[str, Any] | None = None, *, negotiated: Negotiated | None = None
) -> bytes:
    """A notification (``unique`` 0, ``error`` = the code)."""
    neg = negotiated or _DEFAULT
    spec = NOTIFY.get(code)
    if spec is None:
        raise EncodeError(f"unknown notification code {code}")
    b = body or {}
    payload = encode_args(spec.args, b, neg)
    if not spec.args:
        payload = _raw(b.get("data"))
    return pack_out_header(OutHeader(OUT_HEADER_SIZE + len(payload), int(code), 0), neg.order) + (
        payload
    )


def with_unique(frame: bytes, unique: int, order: str = "<") -> bytes:
    """``frame`` (request or reply) with another unique (offset 8 in both headers)."""
    return (
        frame[:8]
        + unique.to_bytes(8, "little" if order in ("<", "little") else "big")
        + (frame[16:])
    )


__all__ = [
    "EncodeError",
    "NotifyCode",
    "Opcode",
    "build_struct",
    "encode_args",
    "encode_interrupt_reply",
    "encode_notify",
    "encode_reply",
    "encode_request",
    "with_unique",
]
