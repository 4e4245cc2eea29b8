"""construct schemas named after the kernel structs (protocol.md §3.1), in both byte orders.

:func:`schemas` gives ``{struct name: construct.Struct}`` for one byte order, including the
compat variants of §3.2 (``fuse_entry_out_compat`` ...). :func:`flat` gives, for the same
names, a :class:`Flat` decoder *derived* from each Struct at import time: a ``struct.Struct``
format and a generated function that turns the unpacked tuple into the same nested dict the
construct parse gives. The schemas stay the one definition; the derived decoders are what the
bulk decoder runs (construct interpreted costs 20-60 µs per frame), and a test checks that
both agree on every fixture.

Field names are the kernel's, except that names starting with ``__`` lose the underscores
(``fuse_sx_time.__reserved`` is ``reserved``) because construct hides ``_`` names.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from functools import cache
from typing import Any

import construct as c

from fusetrace.protocol.abi import InitFlag
from fusetrace.protocol.session import Negotiated

Schema = Any  # construct.Struct / FormatField (construct ships no type hints)


def _define(order: str) -> dict[str, Schema]:
    little = order == "<"
    u8 = c.Int8ul if little else c.Int8ub
    u16 = c.Int16ul if little else c.Int16ub
    u32 = c.Int32ul if little else c.Int32ub
    i32 = c.Int32sl if little else c.Int32sb
    u64 = c.Int64ul if little else c.Int64ub
    i64 = c.Int64sl if little else c.Int64sb
    S = c.Struct
    d: dict[str, Schema] = {}

    d["u64"] = u64
    d["fuse_in_header"] = S(
        "len" / u32, "opcode" / u32, "unique" / u64, "nodeid" / u64, "uid" / u32,
        "gid" / u32, "pid" / u32, "total_extlen" / u16, "padding" / u16,
    )  # fmt: skip
    d["fuse_out_header"] = S("len" / u32, "error" / i32, "unique" / u64)

    attr_head = (
        "ino" / u64, "size" / u64, "blocks" / u64, "atime" / u64, "mtime" / u64,
        "ctime" / u64, "atimensec" / u32, "mtimensec" / u32, "ctimensec" / u32,
        "mode" / u32, "nlink" / u32, "uid" / u32, "gid" / u32, "rdev" / u32,
    )  # fmt: skip
    d["fuse_attr"] = S(*attr_head, "blksize" / u32, "flags" / u32)  # flags: 7.32
    d["fuse_attr_compat"] = S(*attr_head)  # minor < 9: 80 bytes
    entry_head = (
        "nodeid" / u64, "generation" / u64, "entry_valid" / u64, "attr_valid" / u64,
        "entry_valid_nsec" / u32, "attr_valid_nsec" / u32,
    )  # fmt: skip
    d["fuse_entry_out"] = S(*entry_head, "attr" / d["fuse_attr"])
    d["fuse_entry_out_compat"] = S(*entry_head, "attr" / d["fuse_attr_compat"])
    attr_out_head = ("attr_valid" / u64, "attr_valid_nsec" / u32, "dummy" / u32)
    d["fuse_attr_out"] = S(*attr_out_head, "attr" / d["fuse_attr"])
    d["fuse_attr_out_compat"] = S(*attr_out_head, "attr" / d["fuse_attr_compat"])

    d["fuse_sx_time"] = S("tv_sec" / i64, "tv_nsec" / u32, "reserved" / i32)
    t = d["fuse_sx_time"]
    d["fuse_statx"] = S(
        "mask" / u32, "blksize" / u32, "attributes" / u64, "nlink" / u32, "uid" / u32,
        "gid" / u32, "mode" / u16, "spare0" / c.Array(1, u16), "ino" / u64, "size" / u64,
        "blocks" / u64, "attributes_mask" / u64, "atime" / t, "btime" / t, "ctime" / t,
        "mtime" / t, "rdev_major" / u32, "rdev_minor" / u32, "dev_major" / u32,
        "dev_minor" / u32, "spare2" / c.Array(14, u64),
    )  # fmt: skip
    d["fuse_statx_in"] = S(
        "getattr_flags" / u32, "reserved" / u32, "fh" / u64, "sx_flags" / u32, "sx_mask" / u32
    )
    d["fuse_statx_out"] = S(
        "attr_valid" / u64, "attr_valid_nsec" / u32, "flags" / u32,
        "spare" / c.Array(2, u64), "stat" / d["fuse_statx"],
    )  # fmt: skip
    kstatfs_head = (
        "blocks" / u64, "bfree" / u64, "bavail" / u64, "files" / u64, "ffree" / u64,
        "bsize" / u32, "namelen" / u32,
    )  # fmt: skip
    d["fuse_kstatfs"] = S(*kstatfs_head, "frsize" / u32, "padding" / u32, "spare" / c.Array(6, u32))
    d["fuse_kstatfs_compat"] = S(*kstatfs_head)  # minor < 4: 48 bytes
    d["fuse_statfs_out"] = S("st" / d["fuse_kstatfs"])
    d["fuse_statfs_out_compat"] = S("st" / d["fuse_kstatfs_compat"])
    d["fuse_file_lock"] = S("start" / u64, "end" / u64, "type" / u32, "pid" / u32)

    d["fuse_forget_in"] = S("nlookup" / u64)
    d["fuse_forget_one"] = S("nodeid" / u64, "nlookup" / u64)
    d["fuse_batch_forget_in"] = S("count" / u32, "dummy" / u32)
    d["fuse_getattr_in"] = S("getattr_flags" / u32, "dummy" / u32, "fh" / u64)
    d["fuse_mknod_in"] = S("mode" / u32, "rdev" / u32, "umask" / u32, "padding" / u32)
    d["fuse_mknod_in_compat"] = S("mode" / u32, "rdev" / u32)  # minor < 12
    d["fuse_mkdir_in"] = S("mode" / u32, "umask" / u32)
    d["fuse_rename_in"] = S("newdir" / u64)
    d["fuse_rename2_in"] = S("newdir" / u64, "flags" / u32, "padding" / u32)
    d["fuse_link_in"] = S("oldnodeid" / u64)
    d["fuse_setattr_in"] = S(
        "valid" / u32, "padding" / u32, "fh" / u64, "size" / u64, "lock_owner" / u64,
        "atime" / u64, "mtime" / u64, "ctime" / u64, "atimensec" / u32, "mtimensec" / u32,
        "ctimensec" / u32, "mode" / u32, "unused4" / u32, "uid" / u32, "gid" / u32,
        "unused5" / u32,
    )  # fmt: skip
    d["fuse_open_in"] = S("flags" / u32, "open_flags" / u32)  # open_flags: 7.33
    d["fuse_create_in"] = S("flags" / u32, "mode" / u32, "umask" / u32, "open_flags" / u32)
    d["fuse_create_in_compat"] = S("flags" / u32, "mode" / u32)  # minor < 12
    d["fuse_open_out"] = S("fh" / u64, "open_flags" / u32, "backing_id" / i32)
    d["fuse_release_in"] = S("fh" / u64, "flags" / u32, "release_flags" / u32, "lock_owner" / u64)
    d["fuse_flush_in"] = S("fh" / u64, "unused" / u32, "padding" / u32, "lock_owner" / u64)
    d["fuse_read_in"] = S(
        "fh" / u64, "offset" / u64, "size" / u32, "read_flags" / u32, "lock_owner" / u64,
        "flags" / u32, "padding" / u32,
    )  # fmt: skip
    write_head = ("fh" / u64, "offset" / u64, "size" / u32, "write_flags" / u32)
    d["fuse_write_in"] = S(*write_head, "lock_owner" / u64, "flags" / u32, "padding" / u32)
    d["fuse_write_in_compat"] = S(*write_head)  # minor < 9: 24 bytes
    d["fuse_write_out"] = S("size" / u32, "padding" / u32)
    d["fuse_fsync_in"] = S("fh" / u64, "fsync_flags" / u32, "padding" / u32)
    d["fuse_setxattr_in"] = S("size" / u32, "flags" / u32, "setxattr_flags" / u32, "padding" / u32)
    d["fuse_setxattr_in_compat"] = S("size" / u32, "flags" / u32)  # no SETXATTR_EXT
    d["fuse_getxattr_in"] = S("size" / u32, "padding" / u32)
    d["fuse_getxattr_out"] = S("size" / u32, "padding" / u32)
    d["fuse_lk_in"] = S(
        "fh" / u64, "owner" / u64, "lk" / d["fuse_file_lock"], "lk_flags" / u32,
        "padding" / u32,
    )  # fmt: skip
    d["fuse_lk_out"] = S("lk" / d["fuse_file_lock"])
    d["fuse_access_in"] = S("mask" / u32, "padding" / u32)
    init_in_head = ("major" / u32, "minor" / u32, "max_readahead" / u32, "flags" / u32)
    d["fuse_init_in"] = S(*init_in_head, "flags2" / u32, "unused" / c.Array(11, u32))
    d["fuse_init_in_compat"] = S(*init_in_head)  # kernel minor < 36: 16 bytes
    init_out_8 = ("major" / u32, "minor" / u32)
    init_out_24 = (
        *init_out_8, "max_readahead" / u32, "flags" / u32, "max_background" / u16,
        "congestion_threshold" / u16, "max_write" / u32,
    )  # fmt: skip
    d["fuse_init_out"] = S(
        *init_out_24, "time_gran" / u32, "max_pages" / u16, "map_alignment" / u16,
        "flags2" / u32, "max_stack_depth" / u32, "request_timeout" / u16,
        "unused" / c.Array(11, u16),
    )  # fmt: skip
    d["fuse_init_out_compat22"] = S(*init_out_24)  # reply minor < 23: 24 bytes
    d["fuse_init_out_compat"] = S(*init_out_8)  # reply minor < 5: 8 bytes
    d["cuse_init_in"] = S("major" / u32, "minor" / u32, "unused" / u32, "flags" / u32)
    d["cuse_init_out"] = S(
        "major" / u32, "minor" / u32, "unused" / u32, "flags" / u32, "max_read" / u32,
        "max_write" / u32, "dev_major" / u32, "dev_minor" / u32, "spare" / c.Array(10, u32),
    )  # fmt: skip
    d["fuse_interrupt_in"] = S("unique" / u64)
    d["fuse_bmap_in"] = S("block" / u64, "blocksize" / u32, "padding" / u32)
    d["fuse_bmap_out"] = S("block" / u64)
    d["fuse_ioctl_in"] = S(
        "fh" / u64, "flags" / u32, "cmd" / u32, "arg" / u64, "in_size" / u32,
        "out_size" / u32,
    )  # fmt: skip
    d["fuse_ioctl_iovec"] = S("base" / u64, "len" / u64)
    d["fuse_ioctl_out"] = S("result" / i32, "flags" / u32, "in_iovs" / u32, "out_iovs" / u32)
    d["fuse_poll_in"] = S("fh" / u64, "kh" / u64, "flags" / u32, "events" / u32)
    d["fuse_poll_out"] = S("revents" / u32, "padding" / u32)
    d["fuse_fallocate_in"] = S(
        "fh" / u64, "offset" / u64, "length" / u64, "mode" / u32, "padding" / u32
    )
    d["fuse_dirent"] = S("ino" / u64, "off" / u64, "namelen" / u32, "type" / u32)
    d["fuse_direntplus"] = S("entry_out" / d["fuse_entry_out"], "dirent" / d["fuse_dirent"])
    d["fuse_notify_poll_wakeup_out"] = S("kh" / u64)
    d["fuse_notify_inval_inode_out"] = S("ino" / u64, "off" / i64, "len" / i64)
    d["fuse_notify_inval_entry_out"] = S("parent" / u64, "namelen" / u32, "flags" / u32)
    d["fuse_notify_delete_out"] = S("parent" / u64, "child" / u64, "namelen" / u32, "padding" / u32)
    d["fuse_notify_store_out"] = S("nodeid" / u64, "offset" / u64, "size" / u32, "padding" / u32)
    d["fuse_notify_retrieve_out"] = S(
        "notify_unique" / u64, "nodeid" / u64, "offset" / u64, "size" / u32,
        "padding" / u32,
    )  # fmt: skip
    d["fuse_notify_retrieve_in"] = S(
        "dummy1" / u64, "offset" / u64, "size" / u32, "dummy2" / u32, "dummy3" / u64,
        "dummy4" / u64,
    )  # fmt: skip
    d["fuse_notify_prune_out"] = S("count" / u32, "padding" / u32, "spare" / u64)
    d["fuse_lseek_in"] = S("fh" / u64, "offset" / u64, "whence" / u32, "padding" / u32)
    d["fuse_lseek_out"] = S("offset" / u64)
    d["fuse_copy_file_range_in"] = S(
        "fh_in" / u64, "off_in" / u64, "nodeid_out" / u64, "fh_out" / u64, "off_out" / u64,
        "len" / u64, "flags" / u64,
    )  # fmt: skip
    d["fuse_copy_file_range_out"] = S("bytes_copied" / u64)
    d["fuse_setupmapping_in"] = S(
        "fh" / u64, "foffset" / u64, "len" / u64, "flags" / u64, "moffset" / u64
    )
    d["fuse_removemapping_in"] = S("count" / u32)
    d["fuse_removemapping_one"] = S("moffset" / u64, "len" / u64)
    d["fuse_syncfs_in"] = S("padding" / u64)
    d["fuse_secctx"] = S("size" / u32, "padding" / u32)
    d["fuse_secctx_header"] = S("size" / u32, "nr_secctx" / u32)
    d["fuse_ext_header"] = S("size" / u32, "type" / u32)
    d["fuse_supp_groups"] = S("nr_groups" / u32, "groups" / c.Array(c.this.nr_groups, u32))
    d["fuse_uring_ent_in_out"] = S(
        "flags" / u64, "commit_id" / u64, "payload_sz" / u32, "padding" / u32,
        "reserved" / u64,
    )  # fmt: skip
    d["fuse_uring_req_header"] = S(
        "in_out" / c.Bytes(128), "op_in" / c.Bytes(128),
        "ring_ent_in_out" / d["fuse_uring_ent_in_out"],
    )  # fmt: skip
    d["fuse_uring_cmd_req"] = S(
        "flags" / u64, "commit_id" / u64, "qid" / u16, "padding" / c.Array(6, u8)
    )
    d["fuse_backing_map"] = S("fd" / i32, "flags" / u32, "padding" / u64)
    return d


@cache
def schemas(order: str = "<") -> dict[str, Schema]:
    """All schemas for byte order ``'<'`` or ``'>'`` (``'little'``/``'big'`` accepted)."""
    if order in ("little", "big"):
        order = "<" if order == "little" else ">"
    return _define(order)


# ---- derived fast decoders -------------------------------------------------------------


class Flat:
    """A fixed-size schema as one ``struct.Struct`` plus a generated tuple → dict function.

    ``fields`` maps each scalar field's dotted path (``"attr.mode"``; members of arrays
    aside) to its position in the unpacked tuple, its byte offset in the struct and its
    ``struct`` code.
    """

    __slots__ = ("_expr", "_to_dict", "_unpack_from", "fields", "name", "size", "struct")

    def __init__(self, name: str, schema: Schema, order: str) -> None:
        self.name = name
        codes: list[str] = []
        counter = [0]
        paths: dict[str, int] = {}
        self._expr = _flat_expr(schema, codes, counter, paths)
        self.struct = struct.Struct(order + "".join(codes))
        self.size = self.struct.size
        self.fields: dict[str, tuple[int, int, str]] = {
            path: (i, struct.calcsize(order + "".join(codes[:i])), codes[i])
            for path, i in paths.items()
        }
        self._to_dict: Callable[[tuple[Any, ...]], Any] | None = None
        self._unpack_from: Callable[..., Any] | None = None

    def _generate(self) -> None:
        """Generated from the schema on first use (a capture needs few of the layouts): one
        call unpacks and rebuilds the nested value."""
        ns: dict[str, Any] = {"_unpack": self.struct.unpack_from}
        expr = self._expr
        exec(
            f"def to_dict(v):\n    return {expr}\n"
            f"def unpack_from(data, offset=0):\n    v = _unpack(data, offset)\n    return {expr}\n",
            ns,
        )
        self._to_dict = ns["to_dict"]
        self._unpack_from = ns["unpack_from"]

    @property
    def to_dict(self) -> Callable[[tuple[Any, ...]], Any]:
        """The unpacked tuple -> the nested value (dicts and lists)."""
        if self._to_dict is None:
            self._generate()
        return self._to_dict  # type: ignore[return-value]

    @property
    def unpack_from(self) -> Callable[..., Any]:
        """(data, offset=0) -> the nested value."""
        if self._unpack_from is None:
            self._generate()
        return self._unpack_from  # type: ignore[return-value]


_FMT_CODES = set("bBhHiIlLqQ")


def _flat_expr(
    schema: Schema,
    codes: list[str],
    counter: list[int],
    paths: dict[str, int] | None = None,
    path: str = "",
) -> str:
    """Append struct codes for ``schema`` and return the Python expression rebuilding it;
    ``paths`` gets the tuple position of each scalar field by dotted path."""
    if isinstance(schema, c.Renamed):
        return _flat_expr(schema.subcon, codes, counter, paths, path)
    if isinstance(schema, c.FormatField):
        code = schema.fmtstr[-1]
        if code not in _FMT_CODES:
            raise TypeError(f"unsupported format {schema.fmtstr}")
        codes.append(code)
        counter[0] += 1
        if paths is not None:
            paths[path] = counter[0] - 1
        return f"v[{counter[0] - 1}]"
    if isinstance(schema, c.BytesInteger | c.BitsInteger):
        raise TypeError("unsupported integer kind")
    if isinstance(schema, c.Bytes) and isinstance(schema.length, int):
        codes.append(f"{schema.length}s")
        counter[0] += 1
        if paths is not None:
            paths[path] = counter[0] - 1
        return f"v[{counter[0] - 1}]"
    if isinstance(schema, c.Array) and isinstance(schema.count, int):
        items = [_flat_expr(schema.subcon, codes, counter) for _ in range(schema.count)]
        return "[" + ", ".join(items) + "]"
    if isinstance(schema, c.Struct):
        parts = []
        for sub in schema.subcons:
            if not sub.name:
                raise TypeError("anonymous struct members are not supported")
            sub_path = f"{path}.{sub.name}" if path else sub.name
            parts.append(f"{sub.name!r}: {_flat_expr(sub, codes, counter, paths, sub_path)}")
        return "{" + ", ".join(parts) + "}"
    raise TypeError(f"cannot derive a fixed layout from {schema!r}")


@cache
def flat(order: str = "<") -> dict[str, Flat]:
    """Derived fast decoders for every fixed-size schema of :func:`schemas`."""
    if order in ("little", "big"):
        order = "<" if order == "little" else ">"
    out: dict[str, Flat] = {}
    for name, schema in schemas(order).items():
        try:
            out[name] = Flat(name, schema, order)
        except TypeError:
            continue  # variable-size (fuse_supp_groups): decoded by hand
    return out


def plain(obj: Any) -> Any:
    """construct's Container/ListContainer as plain dicts/lists (``_io`` and the like dropped)."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items() if not k.startswith("_")}
    if isinstance(obj, list):
        return [plain(v) for v in obj]
    return obj


# ---- compat sizes ----------------------------------------------------------------------

#: struct name -> (test on the negotiated session, compat struct used when the test holds)
_COMPAT: dict[str, tuple[Callable[[Negotiated], bool], str]] = {
    "fuse_entry_out": (lambda n: n.minor < 9, "fuse_entry_out_compat"),
    "fuse_attr_out": (lambda n: n.minor < 9, "fuse_attr_out_compat"),
    "fuse_write_in": (lambda n: n.minor < 9, "fuse_write_in_compat"),
    "fuse_mknod_in": (lambda n: n.minor < 12, "fuse_mknod_in_compat"),
    "fuse_create_in": (lambda n: n.minor < 12, "fuse_create_in_compat"),
    "fuse_statfs_out": (lambda n: n.minor < 4, "fuse_statfs_out_compat"),
    "fuse_setxattr_in": (
        lambda n: not n.flags & InitFlag.SETXATTR_EXT,
        "fuse_setxattr_in_compat",
    ),
}

#: structs whose size is decided by the bytes present, largest first (INIT is never
#: compat-sized by the kernel; the daemon picks the reply size)
BY_LENGTH: dict[str, tuple[str, ...]] = {
    "fuse_init_in": ("fuse_init_in", "fuse_init_in_compat"),
    "fuse_init_out": ("fuse_init_out", "fuse_init_out_compat22", "fuse_init_out_compat"),
}


def struct_for(name: str, negotiated: Negotiated) -> str:
    """The struct actually on the wire for ``name`` under ``negotiated`` (compat sizes)."""
    rule = _COMPAT.get(name)
    if rule is not None and rule[0](negotiated):
        return rule[1]
    return name


def struct_by_length(name: str, available: int, order: str = "<") -> str:
    """For INIT structs: the largest variant that fits in ``available`` bytes."""
    variants = BY_LENGTH.get(name)
    if variants is None:
        return name
    sizes = flat(order)
    for v in variants:
        if sizes[v].size <= available:
            return v
    return variants[-1]


def _field_at(schema: Any, path: list[str]) -> tuple[int, str]:
    """(offset, struct format char) of the scalar field at ``path`` inside ``schema``."""
    while isinstance(schema, c.Renamed):
        schema = schema.subcon
    if not path:
        if isinstance(schema, c.FormatField):
            return 0, schema.fmtstr[-1]
        raise KeyError("not a scalar field")
    offset = 0
    for sub in schema.subcons:
        if sub.name == path[0]:
            inner, fmt = _field_at(sub, path[1:])
            return offset + inner, fmt
        offset += sub.sizeof()
    raise KeyError(path[0])


@cache
def field_reader(order: str, struct_name: str, path: str) -> tuple[struct.Struct, int] | None:
    """A reader for one scalar field, ``struct_name.path`` (dots for nested structs): a
    ``struct.Struct`` and the field's offset in the struct, both derived from the schema.
    None if the struct has no such field. For hot paths that need a field or two without
    decoding the whole struct."""
    try:
        offset, fmt = _field_at(schemas(order)[struct_name], path.split("."))
    except KeyError:
        return None
    return struct.Struct(order + fmt), offset


@cache
def field_offset(struct_name: str, path: str) -> int:
    """The offset of ``struct_name.path`` in the struct (the same in either byte order)."""
    r = field_reader("<", struct_name, path)
    if r is None:
        raise KeyError(f"{struct_name}.{path}")
    return r[1]
