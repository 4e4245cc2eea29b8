"""Playbooks: for every rule, a minimal conversation that breaks it and a clean twin.

Each entry of ``PLAYBOOKS`` maps a rule code to two functions building a finished
:class:`Play`. The first must produce findings of exactly that rule and no other; the
second, the same conversation done right, must produce none at all (end-of-capture
findings included). A rule without a playbook fails ``test_every_rule_has_a_playbook``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fusetrace.frame import Direction, Frame
from fusetrace.protocol.abi import (
    S_IFDIR,
    S_IFREG,
    FopenFlag,
    InitFlag,
    IoctlFlag,
    NotifyCode,
    Opcode,
)
from fusetrace.protocol.encode import encode_reply, encode_request
from fusetrace.testing import ACCEPTED, OFFERED, Play, attr, entry
from fusetrace.tracker import RULES, Culprit, Severity, Tracker

Op = Opcode
ATTR_REPLY = {"attr_valid": 1, "attr": attr(S_IFDIR | 0o755)}
RESEND = 1 << 63


def out(length: int, error: int, unique: int) -> bytes:
    return struct.pack("<IiQ", length, error, unique)


def done(p: Play) -> Play:
    p.finish()
    return p


def getattr_call(p: Play, nodeid: int = 1) -> int:
    return p.call(Op.GETATTR, {}, ATTR_REPLY, nodeid=nodeid)


# ---- FT1 -----------------------------------------------------------------------------------
def ft101(bad: bool) -> Play:
    p = Play.session()
    u = p.req(Op.GETATTR)
    p.rep(Op.GETATTR, ATTR_REPLY, unique=u + 100 if bad else u)
    if bad:
        p.rep(Op.GETATTR, ATTR_REPLY, unique=u)
    return done(p)


def ft102(bad: bool) -> Play:
    p = Play.session()
    u = getattr_call(p)
    if bad:
        p.rep(Op.GETATTR, unique=u, error=-5)
    return done(p)


def ft103(bad: bool) -> Play:
    p = Play.session()
    p.req(Op.GETATTR, unique=7 if bad else 6)
    p.rep(Op.GETATTR, ATTR_REPLY, unique=6)
    return done(p)


def ft104(bad: bool) -> Play:
    p = Play.session()
    u = p.req(Op.GETATTR)
    p.req(Op.GETATTR, unique=u if bad else None)
    p.rep(Op.GETATTR, ATTR_REPLY, unique=u)
    if not bad:
        p.rep(Op.GETATTR, ATTR_REPLY, unique=u + 2)
    return done(p)


def ft105(bad: bool) -> Play:
    p = Play()
    p.init(unique=4 if bad else 2)
    return done(p)


def ft106(bad: bool) -> Play:
    p = Play.session()
    p.lookup(5)
    u = p.req(Op.FORGET, {"nlookup": 1}, nodeid=5)
    if bad:
        p.rep(Op.FORGET, unique=u, error=-2)
    return done(p)


def ft107(bad: bool) -> Play:
    p = Play.session()
    u = p.req(Op.GETATTR)
    p.req(Op.INTERRUPT, {"unique": u}, unique=u | 1, nodeid=0)
    if bad:
        p.d(out(24, -11, u | 1) + bytes(8))
    else:
        p.intr_reply(u, -11)
    p.rep(Op.GETATTR, unique=u, error=-4)
    return done(p)


def ft108(bad: bool) -> Play:
    p = Play.session()
    u = p.req(Op.GETATTR)
    p.req(Op.INTERRUPT, {"unique": u}, unique=u | 1, nodeid=0)
    if not bad:
        p.intr_reply(u, -11)
    p.rep(Op.GETATTR, unique=u, error=-4)
    if bad:
        p.intr_reply(u, -11)
    return done(p)


def ft109(bad: bool) -> Play:
    p = Play.session()
    u = p.req(Op.GETATTR)
    p.notify(NotifyCode.RESEND)
    p.req(Op.GETATTR, unique=u | RESEND)
    if bad:
        p.rep(Op.GETATTR, ATTR_REPLY, unique=u)
    p.rep(Op.GETATTR, ATTR_REPLY, unique=u | RESEND)
    return done(p)


def ft110(bad: bool) -> Play:
    p = Play.session()
    u = p.req(Op.GETATTR, channel=0)
    if bad:
        p.rep(Op.GETATTR, ATTR_REPLY, unique=u, channel=1)
    p.rep(Op.GETATTR, ATTR_REPLY, unique=u, channel=0)
    return done(p)


def ft111(bad: bool) -> Play:
    p = Play.session()
    u = p.req(Op.GETATTR)
    if not bad:
        p.rep(Op.GETATTR, ATTR_REPLY, unique=u)
    return done(p)


def ft112(bad: bool) -> Play:
    p = Play()
    p.init(reply={**_flags(ACCEPTED | InitFlag.REQUEST_TIMEOUT), "request_timeout": 15})
    u = p.req(Op.GETATTR)
    p.t_ns += (20 if bad else 10) * 1_000_000_000
    p.rep(Op.GETATTR, ATTR_REPLY, unique=u)
    return done(p)


def ft113(bad: bool) -> Play:
    p = Play.session()
    u = p.req(Op.GETATTR)
    # the capture records the kernel's answer; nothing in the model explains an EINVAL here
    p.rep(Op.GETATTR, ATTR_REPLY, unique=u, result=22 if bad else 0)
    return done(p)


def ft114(bad: bool) -> Play:
    p = Play.session()
    u = p.req(Op.GETATTR)
    # a reply to an outstanding request, refused: the kernel had ended the request
    p.rep(Op.GETATTR, ATTR_REPLY, unique=u, result=2 if bad else 0)
    return done(p)


# ---- FT2 -----------------------------------------------------------------------------------
def ft201(bad: bool) -> Play:
    p = Play.session()
    p.lookup(5)
    p.forget(5, 2 if bad else 1)
    return done(p)


def ft202(bad: bool) -> Play:
    p = Play.session()
    p.lookup(5)
    if bad:
        p.forget(5)
    p.call(Op.GETATTR, {}, -2, nodeid=5)
    if not bad:
        p.forget(5)
    return done(p)


def ft203(bad: bool) -> Play:
    p = Play.session()
    p.call(Op.GETATTR, {}, -2, nodeid=9 if bad else 1)
    return done(p)


def ft204(bad: bool) -> Play:
    p = Play.session()
    p.call(Op.MKDIR, {"mode": 0o755, "name": "d"}, entry(1 if bad else 6, S_IFDIR | 0o755))
    if not bad:
        p.forget(6)
    return done(p)


def ft205(bad: bool) -> Play:
    p = Play.session()
    p.call(Op.MKDIR, {"mode": 0o755, "name": "d"}, entry(6, (S_IFREG if bad else S_IFDIR) | 0o755))
    if not bad:
        p.forget(6)
    return done(p)


def ft206(bad: bool) -> Play:
    p = Play.session()
    p.lookup(5, generation=1)
    p.lookup(5, generation=2 if bad else 1)
    p.forget(5, 2)
    return done(p)


def ft207(bad: bool) -> Play:
    p = Play.session()
    p.lookup(5)
    mode = S_IFDIR | 0o755 if bad else S_IFREG | 0o644
    p.call(Op.GETATTR, {}, {"attr": attr(mode)}, nodeid=5)
    p.forget(5)
    return done(p)


def ft208(bad: bool) -> Play:
    p = Play.session()
    if not bad:
        p.open(1, 9)
    p.call(Op.READ, {"fh": 9, "size": 10}, {"data": bytes(10)})
    if not bad:
        p.release(1, 9)
    return done(p)


def ft209(bad: bool) -> Play:
    p = Play.session()
    p.open(1, 9)
    if bad:
        p.release(1, 9)
    p.call(Op.READ, {"fh": 9, "size": 10}, {"data": bytes(10)})
    if not bad:
        p.release(1, 9)
    return done(p)


def ft210(bad: bool) -> Play:
    p = Play.session()
    p.open(1, 9)
    p.release(1, 9)
    if bad:
        p.release(1, 9)
    return done(p)


def ft211(bad: bool) -> Play:
    p = Play.session()
    p.call(Op.OPEN, {"flags": 0}, -38)
    p.call(Op.READ, {"fh": 0, "size": 10}, {"data": bytes(10)})
    if bad:
        p.release(1, 0)
    return done(p)


def ft212(bad: bool) -> Play:
    p = Play.session()
    p.open(1, 3)
    p.call(Op.FLUSH, {"fh": 3}, -38)
    if bad:
        p.call(Op.FLUSH, {"fh": 3}, -38)
    p.release(1, 3)
    return done(p)


def ft213(bad: bool) -> Play:
    p = Play.session()
    p.lookup(5)
    if not bad:
        p.forget(5)
    return done(p)


def ft214(bad: bool) -> Play:
    p = Play.session()
    p.open(1, 3)
    if not bad:
        p.release(1, 3)
    return done(p)


def ft215(bad: bool) -> Play:
    p = Play.session()
    p.lookup(5, "a")
    p.lookup(6, "b")
    p.open(5, 9)
    # fh 9 is open on node 5 as a file handle: named with node 6, or by READDIR, it is not
    p.call(Op.READ, {"fh": 9, "size": 10}, {"data": bytes(10)}, nodeid=6 if bad else 5)
    if bad:
        p.call(Op.READDIR, {"fh": 9, "size": 4096}, {"entries": []}, nodeid=5)
        p.release(6, 9)  # the wrong node: releases nothing
    p.call(Op.READ, {"fh": 9, "size": 10}, {"data": bytes(10)}, nodeid=5)
    p.release(5, 9)
    p.forget(5)
    p.forget(6)
    return done(p)


def ft216(bad: bool) -> Play:
    p = Play.session()
    p.call(Op.OPENDIR, {"flags": 0}, {"fh": 4})
    node = 1 if bad else 7
    ents = [
        {**entry(0), "ino": 1, "off": 1, "type": 4, "name": "."},
        {**entry(node), "ino": node, "off": 2, "type": 8, "name": "a"},
    ]
    p.call(Op.READDIRPLUS, {"fh": 4, "size": 4096}, {"entries": ents})
    p.release(1, 4, Op.RELEASEDIR)
    p.forget(node)  # the kernel's FORGET(1, 1) for the rejected entry, or the real one
    return done(p)


def ft217(bad: bool) -> Play:
    p = Play.session()
    p.lookup(5, "a", generation=1)
    p.call(Op.UNLINK, {"name": "a"}, None)
    # the daemon recycles node id 5 for a new file while the kernel still holds the old one
    p.call(
        Op.CREATE,
        {"flags": 0, "mode": 0o644, "name": "b"},
        {**entry(5 if bad else 6, generation=2), "fh": 3},
    )
    p.release(5 if bad else 6, 3)
    p.forget(5, 2 if bad else 1)
    if not bad:
        p.forget(6)
    return done(p)


# ---- FT3 -----------------------------------------------------------------------------------
def ft301(bad: bool) -> Play:
    p = Play.session()
    if bad:
        p.d(b"\x0c\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")
    return done(p)


def ft302(bad: bool) -> Play:
    p = Play.session()
    u = p.req(Op.GETATTR)
    if bad:
        p.d(out(24, -2, u))
    p.rep(Op.GETATTR, unique=u, error=-2)
    return done(p)


def ft303(bad: bool) -> Play:
    p = Play.session()
    if bad:
        p.k(bytes(20))
    return done(p)


def ft304(bad: bool) -> Play:
    p = Play.session()
    u = p.alloc()
    data = encode_request(Op.GETATTR, {}, unique=u, nodeid=1)
    if bad:
        data = struct.pack("<I", len(data) + 8) + data[4:]
    p.k(data)
    p.rep(Op.GETATTR, ATTR_REPLY, unique=u)
    return done(p)


def ft305(bad: bool) -> Play:
    p = Play.session()
    u = p.req(Op.GETATTR)
    if bad:
        p.rep(Op.GETATTR, unique=u, error=5)
        p.rep(Op.GETATTR, unique=u, error=-600)
    p.rep(Op.GETATTR, unique=u, error=-2)
    return done(p)


def ft306(bad: bool) -> Play:
    p = Play.session()
    u = p.req(Op.GETATTR)
    p.d(out(24, -2, u) + bytes(8) if bad else out(16, -2, u))
    return done(p)


def ft307(bad: bool) -> Play:
    p = Play.session()
    u = p.req(Op.LOOKUP, {"name": "x"})
    p.d(out(16, 0, u) if bad else encode_reply(Op.LOOKUP, entry(0), unique=u))
    v = p.req(Op.UNLINK, {"name": "x"})
    p.d(out(24, 0, v) + bytes(8) if bad else out(16, 0, v))
    return done(p)


def ft308(bad: bool) -> Play:
    p = Play.session()
    p.open(1, 3)
    p.call(Op.READ, {"fh": 3, "size": 10}, {"data": bytes(20 if bad else 10)})
    p.release(1, 3)
    return done(p)


def ft309(bad: bool) -> Play:
    p = Play.session()
    u = p.req(Op.GETXATTR, {"size": 0, "name": "user.a"})
    if bad:
        p.rep(Op.GETXATTR, {"value": b"abc"}, unique=u)
    else:
        p.rep(Op.GETXATTR, {"size": 3}, unique=u, probe=True)
    return done(p)


def ft310(bad: bool) -> Play:
    p = Play.session()
    p.open(1, 3)
    p.call(Op.WRITE, {"fh": 3, "data": b"abcd"}, {"size": 8 if bad else 4})
    p.release(1, 3)
    return done(p)


def ft311(bad: bool) -> Play:
    p = Play.session()
    p.open(1, 3)
    body = {"fh_in": 3, "fh_out": 3, "nodeid_out": 1, "len": 10}
    p.call(Op.COPY_FILE_RANGE, body, {"size": 20 if bad else 10})
    p.call(Op.COPY_FILE_RANGE_64, body, {"bytes_copied": 11 if bad else 10})
    p.release(1, 3)
    return done(p)


def ft312(bad: bool) -> Play:
    p = Play.session()
    names = ["user.a", ""] if bad else ["user.a", "user.b"]
    p.call(Op.LISTXATTR, {"size": 100}, {"names": names})
    return done(p)


def _listing(p: Play, entries: list[dict[str, object]], extra: bytes = b"") -> None:
    p.call(Op.OPENDIR, {"flags": 0}, {"fh": 4})
    u = p.req(Op.READDIR, {"fh": 4, "size": 4096})
    raw = encode_reply(Op.READDIR, {"entries": entries}, unique=u) + extra
    p.d(struct.pack("<I", len(raw)) + raw[4:])
    p.release(1, 4, Op.RELEASEDIR)


def ft313(bad: bool) -> Play:
    p = Play.session()
    _listing(p, [{"ino": 2, "off": 1, "type": 8, "name": "a/b" if bad else "ab"}])
    return done(p)


def ft314(bad: bool) -> Play:
    p = Play.session()
    p.lookup(5, size=100)
    p.open(5, 3)
    p.call(
        Op.READ, {"fh": 3, "offset": 0, "size": 50}, {"data": bytes(10 if bad else 50)}, nodeid=5
    )
    # a short read that reaches the end of the file is fine
    p.call(Op.READ, {"fh": 3, "offset": 50, "size": 4096}, {"data": bytes(50)}, nodeid=5)
    p.release(5, 3)
    p.forget(5)
    return done(p)


def ft315(bad: bool) -> Play:
    p = Play.session()
    p.call(Op.GETATTR, {}, ATTR_REPLY, total_extlen=1 if bad else 0)
    return done(p)


def ft316(bad: bool) -> Play:
    p = Play.session()
    p.open(1, 3)
    u = p.alloc()
    data = encode_request(Op.WRITE, {"fh": 3, "data": bytes(100)}, unique=u, nodeid=1)
    p.k(data[:64] if bad else data, orig_len=len(data))
    p.rep(Op.WRITE, {"size": 100}, unique=u)
    p.release(1, 3)
    return done(p)


def ft317(bad: bool) -> Play:
    p = Play.session()
    _listing(p, [{"ino": 2, "off": 1, "type": 8, "name": "ab"}], bytes(8) if bad else b"")
    return done(p)


def ft318(bad: bool) -> Play:
    p = Play.session()
    u = p.alloc()
    data = encode_request(Op.GETATTR, {}, unique=u, nodeid=1)
    if bad:
        data = struct.pack("<I", len(data) + 8) + data[4:] + bytes(8)
    p.k(data)
    p.rep(Op.GETATTR, ATTR_REPLY, unique=u)
    p.open(1, 3)
    u = p.alloc()
    data = encode_request(Op.WRITE, {"fh": 3, "data": b"abcd"}, unique=u, nodeid=1)
    if bad:  # write_in.size says 8, 4 bytes follow
        data = data[:56] + struct.pack("<I", 8) + data[60:]
    p.k(data)
    p.rep(Op.WRITE, {"size": 4}, unique=u)
    p.release(1, 3)
    return done(p)


def ft321(bad: bool) -> Play:
    p = Play.session()  # max_pages 32 on a 7.45 kernel: name_max is 4095
    p.call(Op.LOOKUP, {"name": "x" * (4096 if bad else 4095)}, -36)
    return done(p)


# ---- FT4 -----------------------------------------------------------------------------------
def ft319(bad: bool) -> Play:
    p = Play.session()
    p.open(1, 3)
    lk = {"start": 10, "end": 5 if bad else 20, "type": 1, "pid": 42}
    p.call(Op.GETLK, {"fh": 3, "lk": {"start": 0, "end": 100, "type": 1}}, {"lk": lk})
    p.release(1, 3)
    return done(p)


def ft320(bad: bool) -> Play:
    p = Play.session()
    p.open(1, 3)
    flags = 0 if bad else int(IoctlFlag.UNRESTRICTED)
    retry = {"result": 0, "flags": int(IoctlFlag.RETRY), "in_iovs": 1, "out_iovs": 1}
    p.call(Op.IOCTL, {"fh": 3, "flags": flags, "out_size": 0}, {**retry, "data": bytes(32)})
    p.release(1, 3)
    return done(p)


def ft401(bad: bool) -> Play:
    p = Play()
    u = p.req(Op.INIT, {"major": 7, "minor": 45}, unique=2, nodeid=0)
    if bad:
        p.d(out(16, -2, 4))
    p.rep(Op.INIT, {"major": 7, "minor": 45, "max_write": 4096}, unique=u)
    return done(p)


def ft402(bad: bool) -> Play:
    p = Play()
    if bad:
        u = p.req(Op.GETATTR, unique=4)
        p.next_unique = 2
        p.init()
    else:
        p.init()
        u = p.req(Op.GETATTR)
    p.rep(Op.GETATTR, ATTR_REPLY, unique=u)
    return done(p)


def _flags(flags: InitFlag) -> dict[str, int]:
    f1, f2 = flags.words()
    return {"flags": f1, "flags2": f2}


def ft403(bad: bool) -> Play:
    p = Play()
    p.init(reply={"major": 8 if bad else 7})
    return done(p)


def ft404(bad: bool) -> Play:
    p = Play()
    if bad:
        u = p.req(Op.INIT, {"major": 7, "minor": 45}, unique=2, nodeid=0)
        p.rep(Op.INIT, unique=u, error=-71)
    else:
        p.init()
    return done(p)


def ft405(bad: bool) -> Play:
    p = Play()
    offered = OFFERED & ~InitFlag.WRITEBACK_CACHE
    p.init(offered=offered, reply=_flags(ACCEPTED | InitFlag.WRITEBACK_CACHE) if bad else None)
    return done(p)


def ft406(bad: bool) -> Play:
    p = Play()
    p.init(reply={"minor": 46 if bad else 45})
    return done(p)


def ft407(bad: bool) -> Play:
    p = Play()
    f1, _ = (ACCEPTED & ~InitFlag.INIT_EXT).words()
    p.init(reply={"flags": f1, "flags2": 1 if bad else 0})
    return done(p)


def ft408(bad: bool) -> Play:
    p = Play()
    p.init(reply={"max_write": 1024 if bad else 4096})
    return done(p)


def ft409(bad: bool) -> Play:
    p = Play()
    p.init(reply={"max_pages": 0 if bad else 1})
    return done(p)


def ft410(bad: bool) -> Play:
    p = Play(mount_options={} if bad else {"default_permissions": None})
    p.init(reply=_flags(ACCEPTED | InitFlag.ALLOW_IDMAP))
    return done(p)


def ft411(bad: bool) -> Play:
    p = Play()
    p.init(reply={**_flags(ACCEPTED | InitFlag.PASSTHROUGH), "max_stack_depth": 0 if bad else 1})
    return done(p)


def ft412(bad: bool) -> Play:
    p = Play.session()
    if bad:
        u = p.req(Op.INIT, {"major": 7, "minor": 45}, nodeid=0)
        p.rep(Op.INIT, unique=u, error=-71)
    return done(p)


# ---- FT5 -----------------------------------------------------------------------------------
def ft501(bad: bool) -> Play:
    p = Play.session()
    p.d(out(16, 77, 0) if bad else out(16, int(NotifyCode.INC_EPOCH), 0))
    return done(p)


def ft502(bad: bool) -> Play:
    p = Play.session()
    p.d(out(20, 1, 0) + bytes(4) if bad else out(24, 1, 0) + bytes(8))
    p.notify(NotifyCode.PRUNE, {"nodeids": [5, 6]})
    if bad:
        p.d(out(16 + 16 + 8, 9, 0) + struct.pack("<IIQQ", 2, 0, 0, 5))
    return done(p)


def ft503(bad: bool) -> Play:
    p = Play.session()
    p.notify(NotifyCode.INVAL_ENTRY, {"parent": 1, "name": "x" * (5000 if bad else 255)})
    return done(p)


def ft504(bad: bool) -> Play:
    p = Play()
    u = p.req(Op.INIT, {"major": 7, "minor": 45}, unique=2, nodeid=0)
    if bad:
        p.notify(NotifyCode.INVAL_INODE, {"ino": 1})
    p.rep(Op.INIT, {"major": 7, "minor": 45, "max_write": 4096}, unique=u)
    if not bad:
        p.notify(NotifyCode.INVAL_INODE, {"ino": 1})
    return done(p)


def ft505(bad: bool) -> Play:
    p = Play.session()
    u = p.req(Op.GETATTR)
    body = {"notify_unique": u if bad else 1, "nodeid": 1, "offset": 0, "size": 10}
    p.notify(NotifyCode.RETRIEVE, body)
    p.rep(Op.GETATTR, ATTR_REPLY, unique=u)
    return done(p)


def ft506(bad: bool) -> Play:
    from fusetrace.tracker.state import CROSSING_KERNEL_FRAMES

    p = Play.session()
    old = getattr_call(p)
    for _ in range(CROSSING_KERNEL_FRAMES + 1):
        getattr_call(p)
    u = p.req(Op.GETATTR)
    target = old if bad else u  # answered long ago, or outstanding
    p.req(Op.INTERRUPT, {"unique": target}, unique=target | 1, nodeid=0)
    p.rep(Op.GETATTR, unique=u, error=-4)
    return done(p)


def ft507(bad: bool) -> Play:
    p = Play.session()
    u = p.req(Op.GETATTR)
    p.req(Op.INTERRUPT, {"unique": u}, unique=(u + 3) if bad else (u | 1), nodeid=0)
    p.rep(Op.GETATTR, unique=u, error=-4)
    return done(p)


def ft508(bad: bool) -> Play:
    p = Play.session()
    p.lookup(5)
    p.notify(NotifyCode.INVAL_INODE, {"ino": 12345 if bad else 5})
    p.notify(NotifyCode.INVAL_ENTRY, {"parent": 1, "name": "a"})
    p.forget(5)
    return done(p)


def ft509(bad: bool) -> Play:
    p = Play.session()
    p.lookup(5)
    p.notify(NotifyCode.RETRIEVE, {"notify_unique": 100, "nodeid": 5, "offset": 4096, "size": 10})
    n = 20 if bad else 10
    body = {"offset": 4096, "size": n, "data": bytes(n)}
    p.req(Op.NOTIFY_REPLY, body, unique=100, nodeid=5)
    if bad:
        p.req(Op.NOTIFY_REPLY, body, unique=100, nodeid=5)  # a second answer
        p.req(Op.NOTIFY_REPLY, body, unique=102, nodeid=5)  # no RETRIEVE
    p.forget(5)
    return done(p)


def ft510(bad: bool) -> Play:
    p = Play.session()
    u = p.req(Op.GETATTR)
    target = u + 40 if bad else u
    p.req(Op.INTERRUPT, {"unique": target}, unique=target | 1, nodeid=0)
    p.rep(Op.GETATTR, unique=u, error=-4)
    return done(p)


def ft511(bad: bool) -> Play:
    p = Play.session()
    p.lookup(5)
    # the kernel had evicted node 5 meanwhile: ENOENT, benign
    p.notify(NotifyCode.INVAL_INODE, {"ino": 5}, result=2 if bad else 0)
    p.forget(5)
    return done(p)


PLAYBOOKS: dict[str, Callable[[bool], Play]] = {
    name.upper(): fn
    for name, fn in dict(globals()).items()
    if name.startswith("ft") and name[2:].isdigit() and callable(fn)
}


def test_every_rule_has_a_playbook() -> None:
    missing = sorted(set(RULES) - set(PLAYBOOKS))
    assert not missing, f"rules without a playbook: {missing}"
    assert not set(PLAYBOOKS) - set(RULES)


@pytest.mark.parametrize("code", sorted(RULES))
def test_playbook_triggers_exactly_its_rule(code: str) -> None:
    p = PLAYBOOKS[code](True)
    found = p.findings
    assert found, f"{code}: nothing reported"
    assert {f.rule for f in found} == {code}, [(f.rule, f.frame, f.message) for f in found]
    rule = RULES[code]
    for f in found:
        assert f.severity is rule.severity
        assert f.culprit is rule.culprit
        assert f.frame is None or 0 <= f.frame < p.index


@pytest.mark.parametrize("code", sorted(RULES))
def test_clean_twin_triggers_nothing(code: str) -> None:
    p = PLAYBOOKS[code](False)
    assert not p.findings, [(f.rule, f.frame, f.message) for f in p.findings]
    assert p.tracker.summary.internal_errors == 0


# ---- specific behaviour ------------------------------------------------------------------
def test_finding_points_at_the_offending_frame() -> None:
    p = Play.session()
    u = getattr_call(p)
    dup_frame = p.index
    p.rep(Op.GETATTR, ATTR_REPLY, unique=u)
    (f,) = p.findings
    assert f.rule == "FT102"
    assert f.frame == dup_frame
    assert f.related == (dup_frame - 1,)
    assert f.unique == u
    assert f.opcode is None  # a reply to nothing has no known opcode


def test_fixed_size_reply_names_the_opcode() -> None:
    p = Play.session()
    u = p.req(Op.GETATTR)
    p.d(out(16, 0, u))
    (f,) = p.findings
    assert (f.rule, f.opcode, f.unique) == ("FT307", "GETATTR", u)
    assert "must be 104" in f.message


def test_rejected_write_leaves_the_request_pending() -> None:
    # W5: error out of range -> EINVAL and the request stays; the proper reply still matches
    p = Play.session()
    u = p.req(Op.GETATTR)
    p.rep(Op.GETATTR, unique=u, error=1)
    p.rep(Op.GETATTR, ATTR_REPLY, unique=u)
    assert [f.rule for f in p.findings] == ["FT305"]


def test_rejected_creation_counts_no_lookup() -> None:
    p = Play.session()
    p.call(Op.MKDIR, {"mode": 0o755, "name": "d"}, entry(6, S_IFREG | 0o644))
    p.forget(6)
    assert [f.rule for f in p.findings] == ["FT205", "FT201"]


def test_readdirplus_entries_count_as_lookups() -> None:
    p = Play.session()
    p.call(Op.OPENDIR, {"flags": 0}, {"fh": 4})
    ents = [
        {**entry(0), "ino": 1, "off": 1, "type": 4, "name": "."},
        {**entry(7), "ino": 7, "off": 2, "type": 8, "name": "a"},
        {**entry(8), "ino": 8, "off": 3, "type": 8, "name": "b"},
    ]
    p.call(Op.READDIRPLUS, {"fh": 4, "size": 4096}, {"entries": ents})
    p.call(Op.GETATTR, {}, {"attr": attr()}, nodeid=7)
    p.release(1, 4, Op.RELEASEDIR)
    p.req(Op.BATCH_FORGET, {"forgets": [{"nodeid": 7, "nlookup": 1}, {"nodeid": 8, "nlookup": 1}]},
          nodeid=0)  # fmt: skip
    p.finish()
    assert p.findings == []
    assert p.tracker.nodes == {}


def test_direct_io_handle_may_read_short() -> None:
    p = Play.session()
    p.lookup(5, size=100)
    p.open(5, 3, open_flags=int(FopenFlag.DIRECT_IO))
    p.call(Op.READ, {"fh": 3, "offset": 0, "size": 50}, {"data": bytes(10)}, nodeid=5)
    assert p.findings == []


def test_select_limits_reported_rules() -> None:
    p = Play.session(rules={"FT305"})
    u = p.req(Op.GETATTR)
    p.rep(Op.GETATTR, unique=u, error=1)
    p.rep(Op.GETATTR, unique=u + 50, error=-2)
    assert [f.rule for f in p.findings] == ["FT305"]


def test_header_only_mode_still_pairs() -> None:
    p = Play.session(header_only=True)
    u = p.req(Op.GETATTR, nodeid=77)  # unknown node id: a body rule, not checked
    p.rep(Op.GETATTR, ATTR_REPLY, unique=u)
    p.rep(Op.GETATTR, ATTR_REPLY, unique=u)
    assert [f.rule for f in p.findings] == ["FT102"]


def test_garbage_never_raises() -> None:
    import random

    rng = random.Random(5)
    t = Tracker()  # not strict: what a check run uses
    p = Play.session()
    frames = [
        Frame(
            i,
            0,
            rng.choice([Direction.INBOUND, Direction.OUTBOUND]),
            rng.randbytes(rng.randrange(0, 200)),
            rng.randrange(0, 200),
        )
        for i in range(3000)
    ]
    for r in frames:
        t.feed(r)
    t.finish()
    assert t.summary.internal_errors == 0
    del p


def test_a_bug_in_a_rule_does_not_stop_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    t = Tracker()

    def boom(*a: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(t, "_kernel_frame", boom)
    data = encode_request(Op.GETATTR, {}, unique=4, nodeid=1)
    assert t.feed(Frame(0, 0, Direction.INBOUND, data, len(data))) == []
    assert t.summary.internal_errors == 1
    reply = encode_reply(Op.GETATTR, ATTR_REPLY, unique=8)
    # the next frame is judged normally (no INIT was seen: a reply before INIT)
    assert [f.rule for f in t.feed(Frame(1, 0, Direction.OUTBOUND, reply, len(reply)))] == ["FT401"]


def test_strict_mode_lets_bugs_through(monkeypatch: pytest.MonkeyPatch) -> None:
    t = Tracker(strict=True)
    monkeypatch.setattr(t, "_daemon_frame", lambda r: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        t.feed(Frame(0, 0, Direction.OUTBOUND, out(16, 0, 4), 16))


def test_memory_is_bounded_by_open_state() -> None:
    p = Play.session()
    for _ in range(20000):
        u = p.req(Op.GETATTR)
        p.rep(Op.GETATTR, ATTR_REPLY, unique=u)
    t = p.tracker
    assert len(t.pending) == 0
    assert len(t._answered._d) <= 4096


def test_big_endian_capture() -> None:
    from fusetrace.protocol.session import Negotiated

    p = Play(byte_order="big")
    p.neg = Negotiated.default("big")
    p.init()
    u = getattr_call(p)
    p.rep(Op.GETATTR, ATTR_REPLY, unique=u)
    assert [f.rule for f in p.findings] == ["FT102"]


def test_summary_counts() -> None:
    p = Play.session()
    getattr_call(p)
    p.notify(NotifyCode.INVAL_INODE, {"ino": 1})
    p.req(Op.GETATTR)
    p.finish()
    s = p.tracker.summary
    assert (s.frames, s.requests, s.replies, s.notifications) == (6, 3, 2, 1)
    assert s.findings == {"error": 0, "warning": 0, "info": 1}
    assert s.outstanding == 1
    assert s.to_dict()["open"]["outstanding_requests"] == 1
    assert Severity.INFO < Severity.ERROR and Culprit.DAEMON.value == "daemon"


def test_unknown_handle_is_reported_once() -> None:
    p = Play.session()
    for _ in range(3):
        p.call(Op.READ, {"fh": 9, "size": 10}, {"data": bytes(10)})
    assert [f.rule for f in p.findings] == ["FT208"]
    assert p.findings[0].describe().startswith("FT208 error [kernel] frame 3 READ unique=4: ")


def _variable_case(name: str) -> Play:
    p = Play.session()
    if name == "readdir":
        p.call(Op.OPENDIR, {"flags": 0}, {"fh": 4})
        ents = [{"ino": i, "off": i, "type": 8, "name": f"n{i:03}"} for i in range(8)]
        p.call(Op.READDIR, {"fh": 4, "size": 100}, {"entries": ents})
        p.release(1, 4, Op.RELEASEDIR)
    elif name == "readlink":
        p.call(Op.READLINK, None, {"target": "x" * 4096})
    elif name == "getxattr":
        p.call(Op.GETXATTR, {"size": 4, "name": "user.a"}, {"value": b"12345"})
    elif name == "ioctl":
        p.open(1, 3)
        p.call(Op.IOCTL, {"fh": 3, "out_size": 4}, {"result": 0, "data": bytes(8)})
        p.release(1, 3)
    elif name == "init":  # 72 payload bytes: more than fuse_init_out
        p = Play()
        p.req(Op.INIT, {"major": 7, "minor": 45}, unique=2, nodeid=0)
        good = encode_reply(Op.INIT, {"major": 7, "minor": 45, "max_write": 4096}, unique=2)
        p.d(struct.pack("<I", len(good) + 8) + good[4:] + bytes(8))
    return p


@pytest.mark.parametrize("name", ["readdir", "readlink", "getxattr", "ioctl", "init"])
def test_variable_replies_longer_than_allowed(name: str) -> None:
    p = _variable_case(name)
    assert [f.rule for f in p.findings] == ["FT308"], [f.message for f in p.findings]


def test_ioctl_reply_without_ioctl_out() -> None:
    p = Play.session()
    p.open(1, 3)
    u = p.req(Op.IOCTL, {"fh": 3, "out_size": 4})
    p.d(out(16, 0, u))
    assert [f.rule for f in p.findings] == ["FT307"]


def test_interrupt_after_enosys_interrupt_reply() -> None:
    p = Play.session()
    u = p.req(Op.GETATTR)
    p.req(Op.INTERRUPT, {"unique": u}, unique=u | 1, nodeid=0)
    p.intr_reply(u, -38)
    p.req(Op.INTERRUPT, {"unique": u}, unique=u | 1, nodeid=0)
    p.rep(Op.GETATTR, ATTR_REPLY, unique=u)
    assert [f.rule for f in p.findings] == ["FT212"]


def test_short_read_with_writeback_cache_is_not_flagged() -> None:
    p = Play()
    p.init(reply=_flags(ACCEPTED | InitFlag.WRITEBACK_CACHE))
    p.lookup(5, size=100)
    p.open(5, 3)
    p.call(Op.READ, {"fh": 3, "offset": 0, "size": 50}, {"data": bytes(10)}, nodeid=5)
    assert p.findings == []


def test_old_minor_uses_compat_sizes() -> None:
    from fusetrace.protocol.session import Negotiated

    p = Play()
    p.init(reply={"minor": 8, **_flags(InitFlag.ASYNC_READ)})
    p.neg = Negotiated.default().with_init_reply({"major": 7, "minor": 8})
    u = p.req(Op.LOOKUP, {"name": "a"})
    p.rep(Op.LOOKUP, entry(5), unique=u)  # 120-byte compat entry_out
    p.forget(5)
    u = p.req(Op.LOOKUP, {"name": "b"})
    p.d(out(16 + 128, 0, u) + bytes(128))  # the 7.9+ size is wrong here
    assert [f.rule for f in p.findings] == ["FT307"]
    assert "must be 120" in p.findings[0].message


def test_request_timeout_judged_at_end_from_capture_time() -> None:
    p = Play()
    p.init(reply={**_flags(ACCEPTED | InitFlag.REQUEST_TIMEOUT), "request_timeout": 15})
    p.req(Op.GETATTR)
    p.t_ns += 30 * 1_000_000_000
    getattr_call(p)
    p.finish()
    assert [(f.rule, f.frame) for f in p.findings] == [("FT112", None), ("FT111", None)]


def test_entry_size_above_llong_max_is_rejected() -> None:
    p = Play.session()
    u = p.req(Op.LOOKUP, {"name": "big"})
    p.rep(Op.LOOKUP, entry(5, size=1 << 63), unique=u)
    p.finish()
    assert [f.rule for f in p.findings] == ["FT205"]


def test_body_node_ids_must_be_known() -> None:
    p = Play.session()
    p.call(Op.RENAME, {"newdir": 42, "oldname": "a", "newname": "b"}, None)
    p.lookup(5)
    p.call(Op.LINK, {"oldnodeid": 5, "newname": "l"}, entry(5))  # a known node: fine
    p.forget(5, 2)
    p.finish()
    assert [(f.rule, "42" in f.message) for f in p.findings] == [("FT203", True)]


def _session_records() -> list[Frame]:
    """A varied, valid session to mutate."""
    p = Play.session()
    p.lookup(5, size=100)
    p.open(5, 3)
    p.call(Op.READ, {"fh": 3, "offset": 0, "size": 100}, {"data": bytes(100)}, nodeid=5)
    p.call(Op.WRITE, {"fh": 3, "data": b"abcd"}, {"size": 4}, nodeid=5)
    p.release(5, 3)
    p.call(Op.OPENDIR, {"flags": 0}, {"fh": 4})
    ents = [{**entry(7), "ino": 7, "off": 1, "type": 8, "name": "a"}]
    p.call(Op.READDIRPLUS, {"fh": 4, "size": 4096}, {"entries": ents})
    p.call(Op.READDIR, {"fh": 4, "size": 4096}, {"entries": ents})
    p.release(1, 4, Op.RELEASEDIR)
    p.call(Op.LISTXATTR, {"size": 100}, {"names": ["user.a"]})
    u = p.req(Op.GETXATTR, {"size": 0, "name": "user.a"})
    p.rep(Op.GETXATTR, {"size": 3}, unique=u, probe=True)
    p.call(Op.MKDIR, {"mode": 0o755, "name": "d"}, entry(8, S_IFDIR | 0o755))
    p.forget(8)
    p.notify(NotifyCode.INVAL_ENTRY, {"parent": 1, "name": "a"})
    p.notify(NotifyCode.PRUNE, {"nodeids": [5]})
    u = p.req(Op.GETATTR)
    p.req(Op.INTERRUPT, {"unique": u}, unique=u | 1, nodeid=0)
    p.intr_reply(u)
    p.rep(Op.GETATTR, ATTR_REPLY, unique=u)
    p.req(Op.BATCH_FORGET, {"forgets": [{"nodeid": 5, "nlookup": 1}, {"nodeid": 7, "nlookup": 1}]},
          nodeid=0)  # fmt: skip
    return p.records


SESSION: list[Frame] = []


def test_the_session_to_mutate_is_clean() -> None:
    t = Tracker(strict=True)
    assert [f for r in _session_records() for f in t.feed(r)] + t.finish() == []


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_mutated_sessions_never_raise(data: st.DataObject) -> None:
    if not SESSION:
        SESSION.extend(_session_records())
    recs = list(SESSION)
    for _ in range(data.draw(st.integers(0, 6))):
        i = data.draw(st.integers(0, len(recs) - 1))
        r = recs[i]
        kind = data.draw(st.sampled_from(["flip", "cut", "dup", "drop", "grow"]))
        raw = bytearray(r.data)
        if kind == "flip" and raw:
            j = data.draw(st.integers(0, len(raw) - 1))
            raw[j] = data.draw(st.integers(0, 255))
            recs[i] = r._replace(data=bytes(raw), orig_len=len(raw))
        elif kind == "cut":
            n = data.draw(st.integers(0, len(raw)))
            recs[i] = r._replace(
                data=bytes(raw[:n]), orig_len=data.draw(st.sampled_from([n, len(raw)]))
            )
        elif kind == "dup":
            recs.insert(i, r)
        elif kind == "drop" and len(recs) > 1:
            del recs[i]
        elif kind == "grow":
            extra = data.draw(st.binary(max_size=64))
            recs[i] = r._replace(data=bytes(raw) + extra, orig_len=len(raw) + len(extra))
    t = Tracker(strict=True)
    for k, r in enumerate(recs):
        t.feed(r._replace(index=k))
    t.finish()


def test_lookup_counts_are_not_judged_after_a_cut_entry_reply() -> None:
    """A READDIRPLUS reply cut by the snap length hides the lookups it gave: later FORGETs
    and uses of its node ids must not be reported as protocol violations."""
    p = Play.session()
    p.call(Op.OPENDIR, {"flags": 0}, {"fh": 4})
    u = p.req(Op.READDIRPLUS, {"fh": 4, "size": 4096})
    ents = [{**entry(n), "ino": n, "off": i + 1, "type": 8, "name": f"f{n}"}
            for i, n in enumerate((7, 8, 9))]  # fmt: skip
    full = encode_reply(Op.READDIRPLUS, {"entries": ents}, unique=u, negotiated=p.neg)
    p.d(full[:200], orig_len=len(full))
    p.call(Op.GETATTR, {}, {"attr": attr()}, nodeid=9)
    p.req(Op.BATCH_FORGET, {"forgets": [{"nodeid": n, "nlookup": 1} for n in (7, 8, 9)]},
          nodeid=0)  # fmt: skip
    assert p.codes == {"FT316"}


def test_interrupt_crossing_its_reply_in_a_recording_is_not_flagged() -> None:
    """Seen with bindfs behind `fusetrace record`: READ reply, then the INTERRUPT for it.
    The recorder captures the reply before writing it to /dev/fuse; the kernel had handed out
    the INTERRUPT while the READ was still outstanding. libfuse then answers it EAGAIN."""
    p = Play.session()
    u = getattr_call(p)
    p.req(Op.INTERRUPT, {"unique": u}, unique=u | 1, nodeid=0)
    p.intr_reply(u, -11)
    assert [f.rule for f in p.findings] == ["FT108"]  # the late EAGAIN is still reported


def test_interrupt_for_a_request_answered_long_before_is_flagged() -> None:
    from fusetrace.tracker.state import CROSSING_KERNEL_FRAMES

    p = Play.session()
    u = getattr_call(p)
    for _ in range(CROSSING_KERNEL_FRAMES + 1):
        getattr_call(p)
    p.req(Op.INTERRUPT, {"unique": u}, unique=u | 1, nodeid=0)
    assert [f.rule for f in p.findings] == ["FT506"]
    assert "answered at frame" in p.findings[0].message


def test_interrupt_crossing_with_replies_between_is_not_flagged() -> None:
    # replies of other requests may come between; only kernel frames count
    p = Play.session()
    others = [p.req(Op.GETATTR) for _ in range(10)]
    u = getattr_call(p)
    for o in others:
        p.rep(Op.GETATTR, ATTR_REPLY, unique=o)
    p.req(Op.INTERRUPT, {"unique": u}, unique=u | 1, nodeid=0)
    assert p.findings == []


def _ioctl_retry(ioctl_flags: int, in_iovs: int, out_iovs: int, data: bytes) -> Play:
    p = Play.session()
    p.open(1, 3)
    reply = {"result": 0, "flags": int(IoctlFlag.RETRY), "in_iovs": in_iovs,
             "out_iovs": out_iovs, "data": data}  # fmt: skip
    p.call(Op.IOCTL, {"fh": 3, "flags": ioctl_flags, "out_size": 8}, reply)
    p.release(1, 3)
    return p


def test_ioctl_retry_checks() -> None:
    unrestricted = int(IoctlFlag.UNRESTRICTED)
    compat = unrestricted | int(IoctlFlag.COMPAT)
    # a page of iovecs is fine even though out_size is 8
    assert not _ioctl_retry(unrestricted, 128, 128, bytes(256 * 16)).findings
    assert not _ioctl_retry(compat, 2, 1, bytes(3 * 8)).findings
    (too_many,) = _ioctl_retry(unrestricted, 200, 100, bytes(16)).findings
    assert too_many.rule == "FT320" and "ENOMEM" in too_many.message
    (wrong_size,) = _ioctl_retry(unrestricted, 2, 1, bytes(40)).findings
    assert wrong_size.rule == "FT320" and "40 bytes" in wrong_size.message
    (beyond_page,) = _ioctl_retry(unrestricted, 1, 0, bytes(4097)).findings
    assert beyond_page.rule == "FT308"


@pytest.mark.parametrize(
    ("lk", "why"),
    [
        ({"start": 0, "end": 9, "type": 7}, "lock type 7"),
        ({"start": 1 << 63, "end": 1 << 63, "type": 0}, "beyond LLONG_MAX"),
        ({"start": 9, "end": 3, "type": 0}, "ends before it starts"),
    ],
)
def test_getlk_reply_lock_checks(lk: dict[str, int], why: str) -> None:
    p = Play.session()
    p.open(1, 3)
    p.call(Op.GETLK, {"fh": 3}, {"lk": {**lk, "pid": 1}})
    (f,) = p.findings
    assert f.rule == "FT319" and why in f.message


def test_getlk_reply_unlocked_range_is_not_judged() -> None:
    p = Play.session()
    p.open(1, 3)
    p.call(Op.GETLK, {"fh": 3}, {"lk": {"start": 9, "end": 3, "type": 2, "pid": 0}})
    assert not p.findings


# ---- the connection-wide facts of protocol.md §5.4, §6, §7, §8.1 --------------------------
def test_handle_fault_is_blamed_on_the_impossible_frame_only() -> None:
    p = Play.session()
    p.lookup(5, "a")
    p.lookup(6, "b")
    p.open(5, 9)
    bad = p.index
    p.release(6, 9)  # names fh 9 with node 6: impossible, and releases nothing
    p.call(Op.READ, {"fh": 9, "size": 10}, {"data": bytes(10)}, nodeid=5)
    p.release(5, 9)
    p.forget(5)
    p.forget(6)
    p.finish()
    assert [(f.rule, f.frame) for f in p.findings] == [("FT215", bad)]
    assert "open only as file handle on node 5" in p.findings[0].message


def test_same_fh_on_many_nodes_and_both_kinds_is_fine() -> None:
    p = Play.session()
    p.lookup(5, "a")
    p.lookup(6, "b")
    p.open(5, 0)
    p.open(6, 0)
    p.call(Op.OPENDIR, {"flags": 0}, {"fh": 0}, nodeid=1)
    p.call(Op.READDIR, {"fh": 0, "size": 4096}, {"entries": []}, nodeid=1)
    p.call(Op.READ, {"fh": 0, "size": 10}, {"data": bytes(10)}, nodeid=6)
    p.call(Op.IOCTL, {"fh": 0, "out_size": 0}, {"result": 0}, nodeid=1)  # a directory's
    p.release(5, 0)
    p.release(6, 0)
    p.release(1, 0, Op.RELEASEDIR)
    p.forget(5)
    p.forget(6)
    p.finish()
    assert p.findings == []


def test_copy_file_range_fh_out_belongs_to_nodeid_out() -> None:
    p = Play.session()
    p.lookup(5, "a")
    p.lookup(6, "b")
    p.open(5, 1)
    p.open(6, 2)
    body = {"fh_in": 1, "fh_out": 2, "nodeid_out": 6, "len": 10}
    p.call(Op.COPY_FILE_RANGE, body, {"size": 10}, nodeid=5)
    assert p.findings == []
    p.call(Op.COPY_FILE_RANGE, {**body, "nodeid_out": 5}, {"size": 10}, nodeid=5)
    assert [f.rule for f in p.findings] == ["FT215"]


def test_interrupt_recorded_before_its_target_is_fine() -> None:
    """With several reader threads the INTERRUPT may be recorded just before its target."""
    p = Play.session()
    u = p.alloc()
    p.req(Op.INTERRUPT, {"unique": u}, unique=u | 1, nodeid=0)
    p.req(Op.GETATTR, unique=u)
    p.rep(Op.GETATTR, unique=u, error=-4)
    p.finish()
    assert p.findings == []


def test_missing_interrupt_target_is_reported_at_the_end() -> None:
    p = Play.session()
    intr = p.index
    p.req(Op.INTERRUPT, {"unique": 1000}, unique=1001, nodeid=0)
    assert p.findings == []
    (f,) = p.finish()
    assert (f.rule, f.frame, f.related) == ("FT510", None, (intr,))


def test_notify_reply_must_match_its_retrieve() -> None:
    def run(**reply: int) -> list[str]:
        p = Play.session()
        p.lookup(5)
        p.notify(NotifyCode.RETRIEVE, {"notify_unique": 7, "nodeid": 5, "offset": 0, "size": 10})
        hdr = {"unique": 7, "nodeid": 5, **{k: v for k, v in reply.items() if k != "offset"}}
        body = {"offset": reply.get("offset", 0), "size": 4, "data": bytes(4)}
        p.req(Op.NOTIFY_REPLY, body, **hdr)  # type: ignore[arg-type]
        return [f.rule for f in p.findings]

    assert run() == []
    assert run(unique=9) == ["FT509"]
    assert run(nodeid=1) == ["FT509"]
    assert run(offset=4096) == ["FT509"]


def test_refused_retrieve_is_answered_by_nothing() -> None:
    p = Play.session()
    p.lookup(5)
    p.notify(
        NotifyCode.RETRIEVE, {"notify_unique": 7, "nodeid": 5, "offset": 0, "size": 10}, result=2
    )
    p.req(Op.NOTIFY_REPLY, {"offset": 0, "size": 0}, unique=7, nodeid=5)
    assert [f.rule for f in p.findings] == ["FT511", "FT509"]


def test_readdirplus_entry_with_bad_attributes_is_rejected() -> None:
    p = Play.session()
    p.call(Op.OPENDIR, {"flags": 0}, {"fh": 4})
    ents = [{**entry(7, mode=0o170000), "ino": 7, "off": 1, "type": 8, "name": "a"}]
    p.call(Op.READDIRPLUS, {"fh": 4, "size": 4096}, {"entries": ents})
    p.release(1, 4, Op.RELEASEDIR)
    p.forget(7)  # the kernel's FORGET(7, 1) balances the rejected entry
    p.finish()
    assert [f.rule for f in p.findings] == ["FT216"]


def test_request_length_counts_strings_under_the_negotiated_layout() -> None:
    import dataclasses

    p = Play.session()  # SETXATTR_EXT not accepted: the kernel sends the 8-byte setxattr_in
    ext = dataclasses.replace(p.neg, flags=p.neg.flags | InitFlag.SETXATTR_EXT)
    body = {"size": 3, "flags": 0, "name": "user.a", "value": b"abc"}
    u = p.alloc()
    p.k(encode_request(Op.SETXATTR, body, unique=u, nodeid=1, negotiated=ext))
    p.rep(Op.SETXATTR, unique=u)
    assert [f.rule for f in p.findings] == ["FT318"]
    p.call(Op.SETXATTR, body, None)  # the 8-byte layout: fine
    u = p.alloc()
    cut = bytearray(encode_request(Op.LOOKUP, {"name": "a"}, unique=u, nodeid=1)[:-1])
    struct.pack_into("<I", cut, 0, len(cut))  # the name lost its NUL, in.len agrees
    p.k(bytes(cut))
    assert [f.rule for f in p.findings] == ["FT318", "FT318"]
    assert "no NUL" in p.findings[-1].message


def test_name_limits_follow_the_kernel_code_path() -> None:
    # max_pages 1: name_max is 1024, but directory entries are bounded by FUSE_NAME_MAX
    p = Play()
    p.init(reply={"max_pages": 1})
    p.call(Op.OPENDIR, {"flags": 0}, {"fh": 4})
    ents = [{"ino": 9, "off": 1, "type": 8, "name": "n" * 2000}]
    p.call(Op.READDIR, {"fh": 4, "size": 4096}, {"entries": ents})
    assert p.findings == []
    p.call(Op.LOOKUP, {"name": "n" * 2000}, -36)
    assert [f.rule for f in p.findings] == ["FT321"]
    p.notify(NotifyCode.INVAL_ENTRY, {"parent": 1, "name": "n" * 2000})
    assert [f.rule for f in p.findings] == ["FT321", "FT503"]
    ents = [{"ino": 9, "off": 1, "type": 8, "name": "n" * 4096}]
    p.call(Op.READDIR, {"fh": 4, "size": 8192}, {"entries": ents})
    assert [f.rule for f in p.findings] == ["FT321", "FT503", "FT313"]


def test_link_reply_without_generation_breaks_a_live_inode() -> None:
    """passthrough_hp's LINK reply carries generation 0 for a node at generation 1."""
    p = Play.session()
    p.lookup(5, "a", generation=1)
    p.call(Op.LINK, {"oldnodeid": 5, "newname": "b"}, entry(5, generation=0))
    assert [f.rule for f in p.findings] == ["FT206"]


def test_rename_over_a_file_lets_its_id_be_recycled() -> None:
    p = Play.session()
    p.lookup(5, "a", generation=1)
    p.lookup(6, "b", generation=1)
    p.call(Op.RENAME, {"newdir": 1, "oldname": "b", "newname": "a"}, None)
    p.lookup(5, "c", generation=2, mode=S_IFDIR | 0o755)
    assert [f.rule for f in p.findings] == ["FT217"]
    assert RULES["FT217"].severity is Severity.INFO
    # a hard link keeps the inode live: unlinking one of two names is no recycling
    p.lookup(8, "x", generation=1)
    linked = {**entry(8, generation=1), "attr": {**attr(ino=8), "nlink": 2}}
    p.call(Op.LINK, {"oldnodeid": 8, "newname": "y"}, linked)
    p.call(Op.UNLINK, {"name": "x"}, None)
    p.lookup(8, "z", generation=2)
    assert [f.rule for f in p.findings] == ["FT217", "FT206"]


def test_refused_late_interrupt_reply_stays_ft108() -> None:
    p = Play.session()
    u = getattr_call(p)
    p.d(out(16, -11, u | 1), result=2)
    assert [f.rule for f in p.findings] == ["FT108"]


def test_refusal_already_explained_is_not_reported_twice() -> None:
    p = Play.session()
    u = getattr_call(p)
    p.rep(Op.GETATTR, ATTR_REPLY, unique=u, result=2)  # FT102 explains the ENOENT
    p.notify(NotifyCode.INVAL_INODE, {"ino": 77}, result=2)  # FT508 explains it
    assert [f.rule for f in p.findings] == ["FT102", "FT508"]
    assert "ENOENT" in RULES["FT511"].doc
