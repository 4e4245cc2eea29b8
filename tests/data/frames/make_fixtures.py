"""Writes the raw-frame fixtures of this folder (run by hand; the .hex files are committed).

Each ``*.hex`` file is one frame as hex bytes with a comment naming the field(s) on every row
(fuser style), preceded by ``#!`` metadata lines (kind, opcode, minor, byte order, flags) and
followed by ``#=`` expectations (``path: JSON value``) that tests/protocol/test_decode.py
checks field by field. The expectations are the values this script puts in, written
independently of the decoder; the bytes, once committed, pin the wire layout.

    .venv/bin/python tests/data/frames/make_fixtures.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import construct as c

from fusetrace.protocol.abi import (
    S_IFDIR,
    S_IFLNK,
    S_IFREG,
    InitFlag,
    NotifyCode,
    Opcode,
)
from fusetrace.protocol.decode import decode_notify, decode_reply, decode_request
from fusetrace.protocol.encode import encode_notify, encode_reply, encode_request
from fusetrace.protocol.registry import NOTIFY, OPS, ArgKind
from fusetrace.protocol.schemas import BY_LENGTH, schemas, struct_for
from fusetrace.protocol.session import Negotiated

HERE = Path(__file__).resolve().parent
O = Opcode  # noqa: E741
N = NotifyCode

ATTR = {"ino": 7, "size": 5, "blocks": 1, "atime": 1700000000, "mtime": 1700000001,
        "ctime": 1700000002, "mode": S_IFREG | 0o644, "nlink": 1, "uid": 1000, "gid": 1000,
        "blksize": 4096}  # fmt: skip
ENTRY = {"nodeid": 7, "generation": 1, "entry_valid": 1, "attr_valid": 1, "attr": ATTR}
INIT_IN_45 = {"major": 7, "minor": 45, "max_readahead": 131072, "flags": 0x73FFFFFB,
              "flags2": 0x000006FF}  # fmt: skip
INIT_OUT_45 = {"major": 7, "minor": 45, "max_readahead": 131072, "flags": 0x4040F039,
               "max_background": 12, "congestion_threshold": 9, "max_write": 131072,
               "time_gran": 1, "max_pages": 32, "flags2": 0x1}  # fmt: skip

# (file stem, kind, opcode or code, header fields, body, session, expectations)
Case = tuple[str, str, int, dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]


def req(op: int, body: dict[str, Any] | None = None, **hdr: Any) -> tuple[int, dict, dict]:
    return (
        op,
        {"unique": 10, "nodeid": 1, "uid": 1000, "gid": 1000, "pid": 4242, **hdr},
        (body or {}),
    )


CASES: list[Case] = []


def add(stem: str, kind: str, op: int, hdr: dict[str, Any], body: dict[str, Any],
        expect: dict[str, Any], **session: Any) -> None:  # fmt: skip
    CASES.append((stem, kind, op, hdr, body, session, expect))


def request(stem: str, op: int, body: dict[str, Any] | None = None, expect: Any = None,
            session: dict[str, Any] | None = None, **hdr: Any) -> None:  # fmt: skip
    h = {"unique": 10, "nodeid": 1, "uid": 1000, "gid": 1000, "pid": 4242, **hdr}
    add(stem, "request", op, h, body or {}, expect or {}, **(session or {}))


def reply(stem: str, op: int, body: dict[str, Any] | None = None, expect: Any = None,
          session: dict[str, Any] | None = None, **hdr: Any) -> None:  # fmt: skip
    h = {"unique": 10, "error": 0, **hdr}
    add(stem, "reply", op, h, body or {}, expect or {}, **(session or {}))


# ---- INIT at 7.45 and at an old minor (7.19: 16-byte init_in, 24-byte init_out) -----------
request("init-7.45-request", O.INIT, INIT_IN_45,
        {"minor": 45, "flags2": 0x6FF, "max_readahead": 131072, "header.nodeid": 0},
        unique=2, nodeid=0, uid=0, gid=0, pid=0)  # fmt: skip
reply("init-7.45-reply", O.INIT, INIT_OUT_45,
      {"minor": 45, "max_write": 131072, "max_pages": 32, "flags2": 1, "time_gran": 1},
      unique=2)  # fmt: skip
request("init-7.19-request", O.INIT,
        {"major": 7, "minor": 19, "max_readahead": 131072, "flags": 0x0000FFFB},
        {"minor": 19, "flags": 0xFFFB}, unique=2, nodeid=0, uid=0, gid=0, pid=0)  # fmt: skip
reply("init-7.19-reply", O.INIT,
      {"major": 7, "minor": 19, "max_readahead": 131072, "flags": 0x1B, "max_background": 12,
       "congestion_threshold": 9, "max_write": 65536}, {"minor": 19, "max_write": 65536},
      unique=2)  # fmt: skip
reply("init-7.4-reply", O.INIT, {"major": 7, "minor": 4}, {"major": 7, "minor": 4}, unique=2)
request("cuse_init-request", O.CUSE_INIT, {"major": 7, "minor": 45, "flags": 1},
        {"minor": 45, "flags": 1}, unique=2, nodeid=0, uid=0, gid=0, pid=0)  # fmt: skip
reply("cuse_init-reply", O.CUSE_INIT,
      {"major": 7, "minor": 45, "flags": 1, "max_read": 65536, "max_write": 65536,
       "dev_major": 240, "dev_minor": 0, "dev_info": ["DEVNAME=fusetrace0"]},
      {"dev_major": 240, "dev_info": ["DEVNAME=fusetrace0"]}, unique=2)  # fmt: skip

# ---- names and entries -------------------------------------------------------------------
request("lookup-request", O.LOOKUP, {"name": "hello.txt"}, {"name": "hello.txt"})
reply("lookup-reply", O.LOOKUP, ENTRY,
      {"nodeid": 7, "generation": 1, "attr.mode": S_IFREG | 0o644, "attr.size": 5,
       "attr.blksize": 4096})  # fmt: skip
reply("lookup-reply-7.8", O.LOOKUP, ENTRY, {"nodeid": 7, "attr.size": 5},
      session={"minor": 8})  # fmt: skip
reply("lookup-error-reply", O.LOOKUP, {}, {"header.error": -2}, error=-2)
request("forget-request", O.FORGET, {"nlookup": 3}, {"nlookup": 3}, nodeid=7, uid=0, gid=0,
        pid=0)  # fmt: skip
request("getattr-request", O.GETATTR, {"getattr_flags": 1, "fh": 3},
        {"getattr_flags": 1, "fh": 3}, nodeid=7)  # fmt: skip
reply("getattr-reply", O.GETATTR, {"attr_valid": 1, "attr": ATTR},
      {"attr.ino": 7, "attr.mode": S_IFREG | 0o644})  # fmt: skip
reply("getattr-reply-7.8", O.GETATTR, {"attr_valid": 1, "attr": ATTR}, {"attr.ino": 7},
      session={"minor": 8})  # fmt: skip
request("setattr-request", O.SETATTR,
        {"valid": 0x1 | 0x8 | 0x40, "fh": 3, "size": 4096, "mode": S_IFREG | 0o600},
        {"valid": 0x49, "fh": 3, "size": 4096, "mode": S_IFREG | 0o600}, nodeid=7)  # fmt: skip
reply("setattr-reply", O.SETATTR, {"attr_valid": 1, "attr": {**ATTR, "size": 4096}},
      {"attr.size": 4096})  # fmt: skip
request("readlink-request", O.READLINK, {}, {"header.nodeid": 9}, nodeid=9)
reply("readlink-reply", O.READLINK, {"target": "../target/file"}, {"target": "../target/file"})
request("symlink-request", O.SYMLINK, {"name": "link", "target": "hello.txt"},
        {"name": "link", "target": "hello.txt"})  # fmt: skip
reply("symlink-reply", O.SYMLINK, {**ENTRY, "nodeid": 9,
                                   "attr": {**ATTR, "mode": S_IFLNK | 0o777}},
      {"nodeid": 9, "attr.mode": S_IFLNK | 0o777})  # fmt: skip
request("mknod-request", O.MKNOD, {"mode": 0o010644, "rdev": 0, "umask": 0o022,
                                   "name": "fifo"},
        {"mode": 0o010644, "umask": 0o022, "name": "fifo"})  # fmt: skip
request("mknod-request-7.11", O.MKNOD, {"mode": 0o010644, "rdev": 0, "name": "fifo"},
        {"mode": 0o010644, "name": "fifo"}, session={"minor": 11})  # fmt: skip
reply("mknod-reply", O.MKNOD, {**ENTRY, "nodeid": 11, "attr": {**ATTR, "mode": 0o010644}},
      {"nodeid": 11})  # fmt: skip
request("mkdir-request", O.MKDIR, {"mode": S_IFDIR | 0o755, "umask": 0o022, "name": "dir"},
        {"mode": S_IFDIR | 0o755, "name": "dir"})  # fmt: skip
request("mkdir-ext-request", O.MKDIR,
        {"mode": S_IFDIR | 0o755, "umask": 0o022, "name": "dir",
         "ext": [{"type": "secctx", "entries": [{"name": "security.selinux",
                                                 "context": b"system_u:object_r:tmp_t\0"}]},
                 {"type": "supp_groups", "groups": [100]}]},
        {"name": "dir", "header.total_extlen": 10, "ext.0.type": "secctx", "ext.0.nr_secctx": 1,
         "ext.0.entries.0.name": "security.selinux", "ext.1.type": "supp_groups",
         "ext.1.groups": [100]})  # fmt: skip
reply("mkdir-reply", O.MKDIR, {**ENTRY, "nodeid": 12,
                               "attr": {**ATTR, "mode": S_IFDIR | 0o755}},
      {"nodeid": 12, "attr.mode": S_IFDIR | 0o755})  # fmt: skip
request("unlink-request", O.UNLINK, {"name": "hello.txt"}, {"name": "hello.txt"})
reply("unlink-reply", O.UNLINK, {}, {"header.len": 16})
request("rmdir-request", O.RMDIR, {"name": "dir"}, {"name": "dir"})
reply("rmdir-reply", O.RMDIR, {}, {"header.len": 16})
request("rename-request", O.RENAME, {"newdir": 12, "oldname": "a", "newname": "b"},
        {"newdir": 12, "oldname": "a", "newname": "b"})  # fmt: skip
reply("rename-reply", O.RENAME, {}, {"header.len": 16})
request("link-request", O.LINK, {"oldnodeid": 7, "newname": "hard"},
        {"oldnodeid": 7, "newname": "hard"}, nodeid=12)  # fmt: skip
reply("link-reply", O.LINK, ENTRY, {"nodeid": 7})
request("rename2-request", O.RENAME2,
        {"newdir": 12, "flags": 1, "oldname": "a", "newname": "b"},
        {"newdir": 12, "flags": 1, "oldname": "a", "newname": "b"})  # fmt: skip
reply("rename2-reply", O.RENAME2, {}, {"header.len": 16})

# ---- files -------------------------------------------------------------------------------
request("open-request", O.OPEN, {"flags": 0o100002, "open_flags": 1},
        {"flags": 0o100002, "open_flags": 1}, nodeid=7)  # fmt: skip
reply("open-reply", O.OPEN, {"fh": 3, "open_flags": 0x2}, {"fh": 3, "open_flags": 2,
                                                           "backing_id": 0})  # fmt: skip
request("read-request", O.READ, {"fh": 3, "offset": 0, "size": 4096, "flags": 0o100000},
        {"fh": 3, "offset": 0, "size": 4096}, nodeid=7)  # fmt: skip
reply("read-reply", O.READ, {"data": b"hello"}, {"data": "68656c6c6f"})
request("write-request", O.WRITE,
        {"fh": 3, "offset": 4096, "write_flags": 2, "lock_owner": 0xABCD, "flags": 0o100002,
         "data": b"world\n"},
        {"fh": 3, "offset": 4096, "size": 6, "write_flags": 2, "lock_owner": 0xABCD,
         "data": "776f726c640a"}, nodeid=7)  # fmt: skip
request("write-request-7.8", O.WRITE, {"fh": 3, "offset": 0, "data": b"abc"},
        {"fh": 3, "size": 3, "data": "616263"}, session={"minor": 8}, nodeid=7)  # fmt: skip
reply("write-reply", O.WRITE, {"size": 6}, {"size": 6})
request("statfs-request", O.STATFS, {}, {"header.len": 40})
reply("statfs-reply", O.STATFS,
      {"st": {"blocks": 1000, "bfree": 500, "bavail": 400, "files": 100, "ffree": 50,
              "bsize": 4096, "namelen": 255, "frsize": 4096}},
      {"st.blocks": 1000, "st.namelen": 255, "st.frsize": 4096})  # fmt: skip
reply("statfs-reply-7.3", O.STATFS,
      {"st": {"blocks": 1000, "bfree": 500, "bsize": 4096, "namelen": 255}},
      {"st.blocks": 1000, "st.namelen": 255}, session={"minor": 3})  # fmt: skip
request("release-request", O.RELEASE, {"fh": 3, "flags": 0o100002, "release_flags": 2,
                                       "lock_owner": 0xABCD},
        {"fh": 3, "release_flags": 2}, nodeid=7, uid=0, gid=0, pid=0)  # fmt: skip
reply("release-reply", O.RELEASE, {}, {"header.len": 16})
request("fsync-request", O.FSYNC, {"fh": 3, "fsync_flags": 1}, {"fh": 3, "fsync_flags": 1},
        nodeid=7)  # fmt: skip
reply("fsync-reply", O.FSYNC, {}, {"header.len": 16})
request("setxattr-request", O.SETXATTR,
        {"size": 3, "flags": 1, "setxattr_flags": 1, "name": "user.k", "value": b"v\x00w"},
        {"size": 3, "flags": 1, "setxattr_flags": 1, "name": "user.k", "value": "760077"},
        session={"flags": int(InitFlag.SETXATTR_EXT)}, nodeid=7)  # fmt: skip
request("setxattr-request-compat", O.SETXATTR,
        {"size": 1, "flags": 0, "name": "user.k", "value": b"v"},
        {"size": 1, "name": "user.k", "value": "76"}, nodeid=7)  # fmt: skip
reply("setxattr-reply", O.SETXATTR, {}, {"header.len": 16})
request("getxattr-request", O.GETXATTR, {"size": 0, "name": "user.k"},
        {"size": 0, "name": "user.k"}, nodeid=7)  # fmt: skip
reply("getxattr-reply", O.GETXATTR, {"value": b"value"}, {"value": "76616c7565"})
request("listxattr-request", O.LISTXATTR, {"size": 4096}, {"size": 4096}, nodeid=7)
reply("listxattr-reply", O.LISTXATTR, {"names": ["user.a", "user.b"]},
      {"names": ["user.a", "user.b"]})  # fmt: skip
request("removexattr-request", O.REMOVEXATTR, {"name": "user.k"}, {"name": "user.k"}, nodeid=7)
reply("removexattr-reply", O.REMOVEXATTR, {}, {"header.len": 16})
request("flush-request", O.FLUSH, {"fh": 3, "lock_owner": 0xABCD},
        {"fh": 3, "lock_owner": 0xABCD}, nodeid=7)  # fmt: skip
reply("flush-reply", O.FLUSH, {}, {"header.len": 16})
request(
    "create-request",
    O.CREATE,
    {"flags": 0o100101, "mode": S_IFREG | 0o644, "umask": 0o022, "name": "new.txt"},
    {"flags": 0o100101, "mode": S_IFREG | 0o644, "umask": 0o022, "name": "new.txt"},
)
request("create-request-7.11", O.CREATE,
        {"flags": 0o100101, "mode": S_IFREG | 0o644, "name": "new.txt"},
        {"flags": 0o100101, "name": "new.txt"}, session={"minor": 11})  # fmt: skip
reply("create-reply", O.CREATE, {**ENTRY, "nodeid": 13, "fh": 4},
      {"nodeid": 13, "fh": 4, "attr.mode": S_IFREG | 0o644})  # fmt: skip
request("tmpfile-request", O.TMPFILE,
        {"flags": 0o20200002, "mode": S_IFREG | 0o600, "umask": 0o022, "name": "/"},
        {"name": "/", "mode": S_IFREG | 0o600})  # fmt: skip
reply("tmpfile-reply", O.TMPFILE, {**ENTRY, "nodeid": 14, "fh": 5}, {"nodeid": 14, "fh": 5})

# ---- directories -------------------------------------------------------------------------
request("opendir-request", O.OPENDIR, {"flags": 0o200000}, {"flags": 0o200000})
reply("opendir-reply", O.OPENDIR, {"fh": 5, "open_flags": 8}, {"fh": 5, "open_flags": 8})
request("readdir-request", O.READDIR, {"fh": 5, "offset": 0, "size": 4096},
        {"fh": 5, "size": 4096})  # fmt: skip
reply("readdir-reply", O.READDIR,
      {"entries": [{"ino": 1, "off": 1, "type": 4, "name": "."},
                   {"ino": 1, "off": 2, "type": 4, "name": ".."},
                   {"ino": 7, "off": 3, "type": 8, "name": "hello.txt"}]},
      {"entries.0.name": ".", "entries.2.name": "hello.txt", "entries.2.ino": 7,
       "entries.2.namelen": 9, "entries.2.type": 8})  # fmt: skip
request("readdirplus-request", O.READDIRPLUS, {"fh": 5, "offset": 0, "size": 4096},
        {"fh": 5, "size": 4096})  # fmt: skip
reply("readdirplus-reply", O.READDIRPLUS,
      {"entries": [{"nodeid": 0, "ino": 1, "off": 1, "type": 4, "name": "."},
                   {**ENTRY, "ino": 7, "off": 2, "type": 8, "name": "hello.txt"},
                   {**ENTRY, "nodeid": 12, "attr": {**ATTR, "ino": 12,
                                                     "mode": S_IFDIR | 0o755},
                    "ino": 12, "off": 3, "type": 4, "name": "dir"}]},
      {"entries.0.name": ".", "entries.0.nodeid": 0, "entries.1.nodeid": 7,
       "entries.1.name": "hello.txt", "entries.1.attr.size": 5, "entries.2.nodeid": 12,
       "entries.2.off": 3, "entries.2.attr.mode": S_IFDIR | 0o755})  # fmt: skip
request("releasedir-request", O.RELEASEDIR, {"fh": 5, "flags": 0o200000}, {"fh": 5},
        uid=0, gid=0, pid=0)  # fmt: skip
reply("releasedir-reply", O.RELEASEDIR, {}, {"header.len": 16})
request("fsyncdir-request", O.FSYNCDIR, {"fh": 5}, {"fh": 5})
reply("fsyncdir-reply", O.FSYNCDIR, {}, {"header.len": 16})

# ---- locks, access, misc -----------------------------------------------------------------
LK = {"fh": 3, "owner": 0xABCD, "lk": {"start": 0, "end": 99, "type": 1, "pid": 4242},
      "lk_flags": 0}  # fmt: skip
request("getlk-request", O.GETLK, LK, {"fh": 3, "lk.end": 99, "lk.pid": 4242}, nodeid=7)
reply("getlk-reply", O.GETLK, {"lk": {"start": 0, "end": 99, "type": 2, "pid": 0}},
      {"lk.type": 2, "lk.end": 99})  # fmt: skip
request("setlk-request", O.SETLK, LK, {"lk.type": 1}, nodeid=7)
reply("setlk-reply", O.SETLK, {}, {"header.len": 16})
request("setlkw-request", O.SETLKW, {**LK, "lk_flags": 1}, {"lk_flags": 1}, nodeid=7)
reply("setlkw-reply", O.SETLKW, {}, {"header.len": 16})
request("access-request", O.ACCESS, {"mask": 4}, {"mask": 4}, nodeid=7)
reply("access-reply", O.ACCESS, {}, {"header.len": 16})
request("interrupt-request", O.INTERRUPT, {"unique": 10}, {"unique": 10, "header.unique": 11},
        unique=11, nodeid=0, uid=0, gid=0, pid=0)  # fmt: skip
reply("interrupt-reply", O.INTERRUPT, {}, {"header.unique": 11, "header.error": -11},
      unique=11, error=-11)  # fmt: skip
request("bmap-request", O.BMAP, {"block": 5, "blocksize": 4096}, {"block": 5}, nodeid=7)
reply("bmap-reply", O.BMAP, {"block": 99}, {"block": 99})
request("destroy-request", O.DESTROY, {}, {"header.len": 40}, nodeid=0, uid=0, gid=0, pid=0)
reply("destroy-reply", O.DESTROY, {}, {"header.len": 16})
request("ioctl-request", O.IOCTL,
        {"fh": 3, "flags": 0x10, "cmd": 0x80086601, "arg": 0x7FFD0000, "out_size": 8,
         "data": b"\x01\x02\x03\x04"},
        {"fh": 3, "flags": 16, "cmd": 0x80086601, "in_size": 4, "out_size": 8,
         "data": "01020304"}, nodeid=7)  # fmt: skip
reply("ioctl-reply", O.IOCTL, {"result": 0, "data": b"\x00\x00\x80\x00\x00\x00\x00\x00"},
      {"result": 0, "data": "0000800000000000"})  # fmt: skip
reply("ioctl-retry-reply", O.IOCTL,
      {"result": 0, "flags": 4, "in_iovs": 1, "out_iovs": 1,
       "iovecs": [{"base": 0x7FFD0000, "len": 8}, {"base": 0x7FFD1000, "len": 16}]},
      {"flags": 4, "in_iovs": 1, "out_iovs": 1, "iovecs.1.base": 0x7FFD1000,
       "iovecs.1.len": 16})  # fmt: skip
request("poll-request", O.POLL, {"fh": 3, "kh": 77, "flags": 1, "events": 0x1},
        {"fh": 3, "kh": 77, "flags": 1, "events": 1}, nodeid=7)  # fmt: skip
reply("poll-reply", O.POLL, {"revents": 0x1}, {"revents": 1})
request("notify_reply-request", O.NOTIFY_REPLY, {"offset": 0, "data": b"cached"},
        {"offset": 0, "size": 6, "data": "636163686564"}, unique=1, nodeid=7, uid=0, gid=0,
        pid=0)  # fmt: skip
request("batch_forget-request", O.BATCH_FORGET,
        {"forgets": [{"nodeid": 7, "nlookup": 2}, {"nodeid": 12, "nlookup": 1},
                     {"nodeid": 13, "nlookup": 5}]},
        {"count": 3, "forgets": [{"nodeid": 7, "nlookup": 2}, {"nodeid": 12, "nlookup": 1},
                                 {"nodeid": 13, "nlookup": 5}]},
        nodeid=0, uid=0, gid=0, pid=0)  # fmt: skip
request("fallocate-request", O.FALLOCATE, {"fh": 3, "offset": 0, "length": 8192, "mode": 1},
        {"fh": 3, "length": 8192, "mode": 1}, nodeid=7)  # fmt: skip
reply("fallocate-reply", O.FALLOCATE, {}, {"header.len": 16})
request("lseek-request", O.LSEEK, {"fh": 3, "offset": 100, "whence": 3},
        {"offset": 100, "whence": 3}, nodeid=7)  # fmt: skip
reply("lseek-reply", O.LSEEK, {"offset": 4096}, {"offset": 4096})
CFR = {"fh_in": 3, "off_in": 0, "nodeid_out": 13, "fh_out": 4, "off_out": 0, "len": 65536}
request("copy_file_range-request", O.COPY_FILE_RANGE, CFR,
        {"fh_in": 3, "nodeid_out": 13, "fh_out": 4, "len": 65536}, nodeid=7)  # fmt: skip
reply("copy_file_range-reply", O.COPY_FILE_RANGE, {"size": 65536}, {"size": 65536})
request("copy_file_range_64-request", O.COPY_FILE_RANGE_64, CFR, {"len": 65536}, nodeid=7)
reply("copy_file_range_64-reply", O.COPY_FILE_RANGE_64, {"bytes_copied": 65536},
      {"bytes_copied": 65536})  # fmt: skip
request("setupmapping-request", O.SETUPMAPPING,
        {"fh": 3, "foffset": 0, "len": 2097152, "flags": 1, "moffset": 0},
        {"len": 2097152, "flags": 1}, nodeid=7)  # fmt: skip
reply("setupmapping-reply", O.SETUPMAPPING, {}, {"header.len": 16})
request("removemapping-request", O.REMOVEMAPPING,
        {"mappings": [{"moffset": 0, "len": 2097152}]},
        {"count": 1, "mappings": [{"moffset": 0, "len": 2097152}]}, nodeid=7)  # fmt: skip
reply("removemapping-reply", O.REMOVEMAPPING, {}, {"header.len": 16})
request("syncfs-request", O.SYNCFS, {}, {"padding": 0})
reply("syncfs-reply", O.SYNCFS, {}, {"header.len": 16})
request("statx-request", O.STATX, {"getattr_flags": 1, "fh": 3, "sx_flags": 0,
                                   "sx_mask": 0x7FF},
        {"getattr_flags": 1, "fh": 3, "sx_mask": 0x7FF}, nodeid=7)  # fmt: skip
reply("statx-reply", O.STATX,
      {"attr_valid": 1, "stat": {"mask": 0x7FF, "blksize": 4096, "nlink": 1, "uid": 1000,
                                 "gid": 1000, "mode": S_IFREG | 0o644, "ino": 7, "size": 5,
                                 "btime": {"tv_sec": 1699999999, "tv_nsec": 5}}},
      {"stat.mode": S_IFREG | 0o644, "stat.size": 5, "stat.btime.tv_sec": 1699999999,
       "stat.btime.tv_nsec": 5})  # fmt: skip

# ---- notifications -----------------------------------------------------------------------
add("notify-poll", "notify", N.POLL, {}, {"kh": 77}, {"kh": 77})
add("notify-inval_inode", "notify", N.INVAL_INODE, {}, {"ino": 7, "off": 0, "len": -1},
    {"ino": 7, "len": -1})  # fmt: skip
add("notify-inval_entry", "notify", N.INVAL_ENTRY, {}, {"parent": 1, "flags": 1,
                                                        "name": "hello.txt"},
    {"parent": 1, "namelen": 9, "flags": 1, "name": "hello.txt"})  # fmt: skip
add("notify-store", "notify", N.STORE, {}, {"nodeid": 7, "offset": 0, "data": b"fresh"},
    {"nodeid": 7, "size": 5, "data": "6672657368"})  # fmt: skip
add("notify-retrieve", "notify", N.RETRIEVE, {},
    {"notify_unique": 1, "nodeid": 7, "offset": 0, "size": 4096},
    {"notify_unique": 1, "nodeid": 7, "size": 4096})  # fmt: skip
add("notify-delete", "notify", N.DELETE, {}, {"parent": 1, "child": 7, "name": "hello.txt"},
    {"parent": 1, "child": 7, "namelen": 9, "name": "hello.txt"})  # fmt: skip
add("notify-resend", "notify", N.RESEND, {}, {}, {"header.len": 16})
add("notify-inc_epoch", "notify", N.INC_EPOCH, {}, {}, {"header.len": 16})
add("notify-prune", "notify", N.PRUNE, {}, {"nodeids": [7, 12]},
    {"count": 2, "nodeids": [7, 12]})  # fmt: skip

# ---- big endian --------------------------------------------------------------------------
request("lookup-request-be", O.LOOKUP, {"name": "hello.txt"}, {"name": "hello.txt",
                                                               "header.len": 50},
        session={"byte_order": "big"})  # fmt: skip
reply("lookup-reply-be", O.LOOKUP, ENTRY, {"nodeid": 7, "attr.mode": S_IFREG | 0o644},
      session={"byte_order": "big"})  # fmt: skip
request("init-7.45-request-be", O.INIT, INIT_IN_45, {"minor": 45, "flags2": 0x6FF},
        session={"byte_order": "big"}, unique=2, nodeid=0, uid=0, gid=0, pid=0)  # fmt: skip


# ---- writing -----------------------------------------------------------------------------


def negotiated(session: dict[str, Any]) -> Negotiated:
    return Negotiated(
        byte_order=session.get("byte_order", "little"),
        minor=session.get("minor", 45),
        flags=InitFlag(session.get("flags", 0)),
    )


def leaves(schema: Any, prefix: str) -> list[tuple[str, int]]:
    """(field path, size) for each leaf of a fixed construct schema."""
    if isinstance(schema, c.Renamed):
        return leaves(schema.subcon, prefix)
    if isinstance(schema, c.Struct):
        out: list[tuple[str, int]] = []
        for sub in schema.subcons:
            out.extend(leaves(sub, f"{prefix}{sub.name}."))
        return out
    return [(prefix.rstrip("."), schema.sizeof())]


def segments(kind: str, op: int, data: bytes, neg: Negotiated, body: dict[str, Any],
             request_body: dict[str, Any] | None) -> list[tuple[int, str]]:  # fmt: skip
    """(size, comment) for consecutive pieces of the frame."""
    sc = schemas(neg.order)
    head = "fuse_in_header" if kind == "request" else "fuse_out_header"
    segs = [(size, f"{name} = {value}") for (name, size), value in
            zip(leaves(sc[head], ""), _header_values(kind, data, neg), strict=True)]  # fmt: skip
    if kind == "request":
        args = OPS[op].request
    elif kind == "notify":
        args = NOTIFY[op].args
    else:
        if data[4:8] != b"\0\0\0\0":
            return segs
        spec = OPS[op]
        args = spec.reply_args
        if spec.reply_probe and request_body is not None and request_body.get("size") == 0:
            args = spec.reply_probe
    for a in args:
        if a.kind is ArgKind.STRUCT:
            name = struct_for(a.struct, neg)
            if a.struct in BY_LENGTH:
                remaining = (
                    len(data)
                    - (40 if kind == "request" else 16)
                    - sum(s for s, _ in segs[len(leaves(sc[head], "")) :])
                )
                name = next(v for v in BY_LENGTH[a.struct] if sc[v].sizeof() <= remaining)
            segs.append((0, f"-- {name}"))
            for path, size in leaves(sc[name], ""):
                segs.append((size, f"{path} = {_get(body, path)}"))
        elif a.kind is ArgKind.CSTRING:
            raw = body[a.name].encode()
            segs.append((len(raw) + 1, f"{a.name} = {raw.decode()!r} + NUL"))
        elif a.kind in (ArgKind.BYTES, ArgKind.REST, ArgKind.TEXT):
            v = body.get(a.name, b"")
            n = len(v.encode() if isinstance(v, str) else v)
            if n:
                segs.append((n, f"{a.name} ({n} bytes)"))
        elif a.kind is ArgKind.ARRAY:
            for i, item in enumerate(body.get(a.name, [])):
                if a.struct == "u64":
                    segs.append((8, f"{a.name}[{i}] = {item}"))
                    continue
                for path, size in leaves(sc[a.struct], ""):
                    segs.append((size, f"{a.name}[{i}].{path} = {_get(item, path)}"))
        elif a.kind in (ArgKind.DIRENTS, ArgKind.DIRENTPLUS):
            for i, e in enumerate(body.get(a.name, [])):
                fixed = 24
                if a.kind is ArgKind.DIRENTPLUS:
                    fixed += 128
                    for path, size in leaves(sc["fuse_entry_out"], ""):
                        segs.append((size, f"entries[{i}].{path} = {_get(e, path)}"))
                for path, size in leaves(sc["fuse_dirent"], ""):
                    segs.append((size, f"entries[{i}].{path} = {_get(e, path)}"))
                n = len(e["name"].encode())
                segs.append((n, f"entries[{i}].name = {e['name']!r}"))
                pad = (-(fixed + n)) % 8
                if pad:
                    segs.append((pad, "padding to 8"))
        elif a.kind in (ArgKind.NAMES, ArgKind.DEVINFO):
            for n in body.get(a.name, []):
                segs.append((len(n.encode()) + 1, f"{a.name}: {n!r} + NUL"))
        elif a.kind is ArgKind.EXT:
            for blk in body.get("ext", []):
                segs.append((blk["size"], f"extension {blk['type']} ({blk['size']} bytes)"))
    return segs


def _get(obj: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        obj = obj[part]
    return obj


def _header_values(kind: str, data: bytes, neg: Negotiated) -> list[int]:
    import struct

    fmt = "IIQQIIIHH" if kind == "request" else "IiQ"
    return list(struct.unpack_from(neg.order + fmt, data))


def render(case: Case) -> str:
    stem, kind, op, hdr, body, session, expect = case
    neg = negotiated(session)
    request_body = None
    if kind == "request":
        data = encode_request(op, body, negotiated=neg, **hdr)
        dec = decode_request(data, neg)
    elif kind == "reply":
        probe = op in (O.GETXATTR, O.LISTXATTR) and "size" in body and "value" not in body
        data = encode_reply(op, body, negotiated=neg, probe=probe, **hdr)
        dec = decode_reply(data, op, neg)
    else:
        data = encode_notify(op, body, negotiated=neg)
        dec = decode_notify(data, neg)
    assert not dec.problems, (stem, dec.problems)
    lines = [f"# {stem}: {'NOTIFY_' + NotifyCode(op).name if kind == 'notify' else O(op).name} "
             f"{kind}, {len(data)} bytes",
             f"#! kind: {kind}", f"#! op: {op}", f"#! minor: {neg.minor}",
             f"#! byte_order: {neg.byte_order}", f"#! flags: {int(neg.flags)}"]  # fmt: skip
    pos = 0
    for size, comment in segments(kind, op, data, neg, dec.body, request_body):
        if size == 0:
            lines.append(f"# {comment}")
            continue
        chunk = data[pos : pos + size]
        rows = [chunk[i : i + 16] for i in range(0, len(chunk), 16)] or [b""]
        for j, row in enumerate(rows):
            text = row.hex(" ")
            lines.append(f"{text:<48}  # {comment}" if j == 0 else text)
        pos += size
    assert pos == len(data), (stem, pos, len(data))
    for path, value in expect.items():
        lines.append(f"#= {path}: {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def main() -> None:
    seen = set()
    for case in CASES:
        assert case[0] not in seen, case[0]
        seen.add(case[0])
        (HERE / f"{case[0]}.hex").write_text(render(case))
    print(f"{len(CASES)} fixtures written to {HERE}")


if __name__ == "__main__":
    main()
