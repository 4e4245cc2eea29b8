"""Every schema round-trips (build -> parse -> equal, parse -> build -> same bytes), in both
byte orders, interpreted and through the derived struct layouts; sizes are the kernel's."""

from __future__ import annotations

import random
from typing import Any

import construct as c
import pytest

from fusetrace.protocol.abi import InitFlag
from fusetrace.protocol.schemas import flat, plain, schemas, struct_by_length, struct_for
from fusetrace.protocol.session import Negotiated

#: protocol.md §3.1 (sizeof on x86-64, ABI 7.45) and §3.2 (compat sizes)
SIZES = {
    "fuse_attr": 88, "fuse_sx_time": 16, "fuse_statx": 256, "fuse_kstatfs": 80,
    "fuse_file_lock": 24, "fuse_entry_out": 128, "fuse_forget_in": 8, "fuse_forget_one": 16,
    "fuse_batch_forget_in": 8, "fuse_getattr_in": 16, "fuse_attr_out": 104,
    "fuse_statx_in": 24, "fuse_statx_out": 288, "fuse_mknod_in": 16, "fuse_mkdir_in": 8,
    "fuse_rename_in": 8, "fuse_rename2_in": 16, "fuse_link_in": 8, "fuse_setattr_in": 88,
    "fuse_open_in": 8, "fuse_create_in": 16, "fuse_open_out": 16, "fuse_release_in": 24,
    "fuse_flush_in": 24, "fuse_read_in": 40, "fuse_write_in": 40, "fuse_write_out": 8,
    "fuse_statfs_out": 80, "fuse_fsync_in": 16, "fuse_setxattr_in": 16,
    "fuse_getxattr_in": 8, "fuse_getxattr_out": 8, "fuse_lk_in": 48, "fuse_lk_out": 24,
    "fuse_access_in": 8, "fuse_init_in": 64, "fuse_init_out": 64, "cuse_init_in": 16,
    "cuse_init_out": 72, "fuse_interrupt_in": 8, "fuse_bmap_in": 16, "fuse_bmap_out": 8,
    "fuse_ioctl_in": 32, "fuse_ioctl_iovec": 16, "fuse_ioctl_out": 16, "fuse_poll_in": 24,
    "fuse_poll_out": 8, "fuse_notify_poll_wakeup_out": 8, "fuse_fallocate_in": 32,
    "fuse_in_header": 40, "fuse_out_header": 16, "fuse_dirent": 24, "fuse_direntplus": 152,
    "fuse_notify_inval_inode_out": 24, "fuse_notify_inval_entry_out": 16,
    "fuse_notify_delete_out": 24, "fuse_notify_store_out": 24,
    "fuse_notify_retrieve_out": 32, "fuse_notify_retrieve_in": 40,
    "fuse_notify_prune_out": 16, "fuse_backing_map": 16, "fuse_lseek_in": 24,
    "fuse_lseek_out": 8, "fuse_copy_file_range_in": 56, "fuse_copy_file_range_out": 8,
    "fuse_setupmapping_in": 40, "fuse_removemapping_in": 4, "fuse_removemapping_one": 16,
    "fuse_syncfs_in": 8, "fuse_secctx": 8, "fuse_secctx_header": 8, "fuse_ext_header": 8,
    "fuse_uring_ent_in_out": 32, "fuse_uring_req_header": 288, "fuse_uring_cmd_req": 24,
    # compat
    "fuse_entry_out_compat": 120, "fuse_attr_out_compat": 96, "fuse_write_in_compat": 24,
    "fuse_mknod_in_compat": 8, "fuse_create_in_compat": 8, "fuse_setxattr_in_compat": 8,
    "fuse_init_in_compat": 16, "fuse_init_out_compat22": 24, "fuse_init_out_compat": 8,
    "fuse_statfs_out_compat": 48, "fuse_attr_compat": 80, "fuse_kstatfs_compat": 48,
}  # fmt: skip

ORDERS = ["<", ">"]
FIXED = sorted(flat("<"))


def sample(schema: Any, rnd: random.Random) -> Any:
    """A random valid value for a fixed schema."""
    if isinstance(schema, c.Renamed):
        return sample(schema.subcon, rnd)
    if isinstance(schema, c.Struct):
        return {s.name: sample(s.subcon, rnd) for s in schema.subcons}
    if isinstance(schema, c.Array):
        return [sample(schema.subcon, rnd) for _ in range(schema.count)]
    if isinstance(schema, c.Bytes):
        return rnd.randbytes(schema.length)
    if isinstance(schema, c.FormatField):
        bits = schema.sizeof() * 8
        if schema.fmtstr[-1].islower():
            return rnd.randrange(-(1 << (bits - 1)), 1 << (bits - 1))
        return rnd.randrange(0, 1 << bits)
    raise TypeError(schema)


def common(name: str, order: str, obj: Any, data: bytes) -> None:
    """construct's own test idea: parse, build, size, and the derived layout agree."""
    schema = schemas(order)[name]
    assert plain(schema.parse(data)) == obj
    assert schema.build(obj) == data
    assert schema.sizeof() == len(data)
    fast = flat(order)[name]
    assert fast.unpack_from(data) == obj
    assert fast.size == len(data)
    compiled = schema.compile()
    assert plain(compiled.parse(data)) == obj
    assert compiled.build(obj) == data


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("name", FIXED)
def test_roundtrip(name: str, order: str) -> None:
    rnd = random.Random(name + order)
    schema = schemas(order)[name]
    obj = sample(schema, rnd)
    data = schema.build(obj)
    common(name, order, obj, data)
    # and from random bytes
    raw = rnd.randbytes(schema.sizeof())
    common(name, order, plain(schema.parse(raw)), raw)


@pytest.mark.parametrize("name", sorted(SIZES))
def test_kernel_sizes(name: str) -> None:
    assert schemas("<")[name].sizeof() == SIZES[name]
    assert flat(">")[name].size == SIZES[name]


def test_every_schema_has_a_size_or_is_variable() -> None:
    assert set(schemas("<")) - set(SIZES) == {"u64", "fuse_supp_groups"}


def test_supp_groups_is_variable() -> None:
    s = schemas("<")["fuse_supp_groups"]
    data = bytes.fromhex("02000000 64000000 65000000")
    assert plain(s.parse(data)) == {"nr_groups": 2, "groups": [100, 101]}
    assert s.build({"nr_groups": 2, "groups": [100, 101]}) == data


def test_byte_orders_differ() -> None:
    obj = {"nlookup": 1}
    assert schemas("<")["fuse_forget_in"].build(obj) == b"\x01" + bytes(7)
    assert schemas(">")["fuse_forget_in"].build(obj) == bytes(7) + b"\x01"


@pytest.mark.parametrize(
    ("name", "minor", "flags", "expected"),
    [
        ("fuse_entry_out", 8, 0, "fuse_entry_out_compat"),
        ("fuse_entry_out", 9, 0, "fuse_entry_out"),
        ("fuse_attr_out", 8, 0, "fuse_attr_out_compat"),
        ("fuse_write_in", 8, 0, "fuse_write_in_compat"),
        ("fuse_write_in", 9, 0, "fuse_write_in"),
        ("fuse_mknod_in", 11, 0, "fuse_mknod_in_compat"),
        ("fuse_mknod_in", 12, 0, "fuse_mknod_in"),
        ("fuse_create_in", 11, 0, "fuse_create_in_compat"),
        ("fuse_statfs_out", 3, 0, "fuse_statfs_out_compat"),
        ("fuse_statfs_out", 4, 0, "fuse_statfs_out"),
        ("fuse_setxattr_in", 45, 0, "fuse_setxattr_in_compat"),
        ("fuse_setxattr_in", 45, int(InitFlag.SETXATTR_EXT), "fuse_setxattr_in"),
        ("fuse_read_in", 1, 0, "fuse_read_in"),
    ],
)
def test_compat_sizes(name: str, minor: int, flags: int, expected: str) -> None:
    assert struct_for(name, Negotiated(minor=minor, flags=InitFlag(flags))) == expected


@pytest.mark.parametrize(
    ("name", "available", "expected"),
    [
        ("fuse_init_in", 64, "fuse_init_in"),
        ("fuse_init_in", 16, "fuse_init_in_compat"),
        ("fuse_init_out", 64, "fuse_init_out"),
        ("fuse_init_out", 40, "fuse_init_out_compat22"),
        ("fuse_init_out", 24, "fuse_init_out_compat22"),
        ("fuse_init_out", 8, "fuse_init_out_compat"),
    ],
)
def test_init_sizes_by_length(name: str, available: int, expected: str) -> None:
    assert struct_by_length(name, available) == expected


def test_field_offsets_come_from_the_schemas() -> None:
    from fusetrace.protocol.schemas import field_offset, field_reader

    # protocol.md §3.1: fuse_init_out flags2 at 32, fuse_attr mode at 60 inside entry_out's
    # attr at 40, fuse_init_in flags2 at 16
    assert field_offset("fuse_init_out", "flags2") == 32
    assert field_offset("fuse_entry_out", "attr.mode") == 100
    assert field_offset("fuse_init_in", "flags2") == 16
    reader = field_reader(">", "fuse_entry_out", "attr.mode")
    assert reader is not None and reader[0].size == 4 and reader[1] == 100
    assert reader[0].unpack_from(bytes(100) + b"\x00\x00\x81\xa4", 100)[0] == 0o100644
    assert field_reader("<", "fuse_entry_out", "no_such_field") is None
