"""Fast access to the few body fields the rules read (the hot path).

The tracker reads a handful of fields (an fh, a size, an entry's nodeid) from a million
frames; building full construct objects for that would cost 20-60 µs per frame
(design.md §3). So each field the rules need becomes one precompiled ``struct.Struct`` at
a fixed offset. Offsets, formats and sizes are all *derived* from the construct schemas of
:mod:`fusetrace.protocol.schemas` (the one definition of the kernel structs); nothing here
restates a layout.
"""

from __future__ import annotations

import struct
from functools import cache
from typing import Any

from fusetrace.protocol.schemas import field_offset, field_reader, flat, struct_for
from fusetrace.protocol.session import Negotiated

#: (Struct, offset) reader of one field, derived from the schema
field = field_reader


def offset(order: str, struct_name: str, path: str) -> int:
    return field_offset(struct_name, path)


def size_of(name: str, negotiated: Negotiated) -> int:
    """Size of struct ``name`` on the wire under ``negotiated`` (compat sizes included)."""
    return flat(negotiated.order)[struct_for(name, negotiated)].size


@cache
def plain_size(order: str, name: str) -> int:
    return int(flat(order)[name].size)


def unpack_padded(order: str, name: str, raw: bytes) -> dict[str, Any]:
    """All fields of ``name`` from ``raw``; missing trailing bytes read as zero (INIT)."""
    dec = flat(order)[name]
    return dict(dec.unpack_from(raw[: dec.size].ljust(dec.size, b"\0")))


class Readers:
    """Offsets and readers the rules use, derived once per byte order from the schemas."""

    def __init__(self, order: str) -> None:
        o = order
        self.order = o
        self.u32 = struct.Struct(o + "I")
        self.u64 = struct.Struct(o + "Q")
        self.u64u64 = struct.Struct(o + "QQ")
        ent = "fuse_entry_out"
        self.entry_nodeid = offset(o, ent, "nodeid")
        self.entry_generation = offset(o, ent, "generation")
        self.entry_mode = offset(o, ent, "attr.mode")
        self.entry_size = offset(o, ent, "attr.size")
        self.entry_nlink = offset(o, ent, "attr.nlink")
        self.attr_out_mode = offset(o, "fuse_attr_out", "attr.mode")
        self.attr_out_size = offset(o, "fuse_attr_out", "attr.size")
        self.open_fh = offset(o, "fuse_open_out", "fh")
        self.open_flags = offset(o, "fuse_open_out", "open_flags")
        self.dirent = flat(o)["fuse_dirent"].struct  # ino, off, namelen, type
        self.dirent_head = plain_size(o, "fuse_dirent")
        self.direntplus_head = plain_size(o, "fuse_direntplus")
        self.direntplus_dirent = offset(o, "fuse_direntplus", "dirent.ino")
        self.forget_one = plain_size(o, "fuse_forget_one")
        self.batch_head = plain_size(o, "fuse_batch_forget_in")
        self.write_out_size = offset(o, "fuse_write_out", "size")

    def init_in(self, body: bytes) -> dict[str, Any]:
        return unpack_padded(self.order, "fuse_init_in", body)

    def init_out(self, payload: bytes) -> dict[str, Any]:
        return unpack_padded(self.order, "fuse_init_out", payload)
