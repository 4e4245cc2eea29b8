"""The registry is complete: every opcode and notification of the protocol has its layouts."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusetrace.protocol.abi import S_IFDIR, S_IFLNK, S_IFREG, NotifyCode, Opcode
from fusetrace.protocol.registry import (
    NO_REPLY_OPS,
    NOTIFY,
    OPS,
    ArgKind,
    HandleEffect,
    LookupEffect,
    ReplyShape,
)
from fusetrace.protocol.schemas import schemas

#: protocol.md §2: every opcode the kernel can send (7 GETDIR and 19 INVALIDATE are gone)
PROTOCOL_OPCODES = [*range(1, 7), *range(8, 19), *range(20, 54), 4096]
#: protocol.md §6
PROTOCOL_NOTIFY = list(range(1, 10))

FRAMES = Path(__file__).resolve().parent.parent / "data" / "frames"


def test_every_protocol_opcode_is_an_opcode_and_in_the_registry() -> None:
    assert sorted(int(o) for o in Opcode) == PROTOCOL_OPCODES
    assert sorted(OPS) == PROTOCOL_OPCODES


def test_every_notify_code_is_in_the_registry() -> None:
    assert sorted(int(c) for c in NotifyCode) == PROTOCOL_NOTIFY
    assert sorted(NOTIFY) == PROTOCOL_NOTIFY


def _fixture(stem: str, kind: str) -> bool:
    """Is there a fixture named <op>-...<kind>...? (INIT has one per minor)"""
    return any(kind in p.stem for p in FRAMES.glob(f"{stem}-*.hex"))


def _structs(args: tuple) -> list[str]:
    return [a.struct for a in args if a.kind in (ArgKind.STRUCT, ArgKind.ARRAY)]


@pytest.mark.parametrize("op", PROTOCOL_OPCODES, ids=lambda o: Opcode(o).name)
def test_op_has_request_and_reply_layouts_and_fixtures(op: int) -> None:
    spec = OPS[op]
    known = schemas("<")
    for name in _structs(spec.request) + _structs(spec.reply_args):
        assert name in known, name
    stem = Opcode(op).name.lower()
    assert _fixture(stem, "request"), f"no request fixture for {stem}"
    if spec.reply is ReplyShape.NONE:
        assert spec.reply_args == () and op in NO_REPLY_OPS
    else:
        assert _fixture(stem, "reply"), f"no reply fixture for {stem}"
        if spec.reply in (ReplyShape.FIXED, ReplyShape.VARIABLE):
            assert spec.reply_args, "a fixed or variable reply needs its layout"
        else:
            assert spec.reply_args == ()


@pytest.mark.parametrize("code", PROTOCOL_NOTIFY, ids=lambda c: NotifyCode(c).name)
def test_notify_has_layout_and_fixture(code: int) -> None:
    for name in _structs(NOTIFY[code].args):
        assert name in schemas("<")
    assert (FRAMES / f"notify-{NotifyCode(code).name.lower()}.hex").exists()


def test_no_reply_ops() -> None:
    assert {Opcode.FORGET, Opcode.BATCH_FORGET, Opcode.NOTIFY_REPLY} == NO_REPLY_OPS


def test_lookup_effects() -> None:
    entry = {op for op, s in OPS.items() if s.lookup is LookupEffect.ENTRY}
    assert entry == {Opcode.LOOKUP, Opcode.MKNOD, Opcode.MKDIR, Opcode.SYMLINK, Opcode.LINK,
                     Opcode.CREATE, Opcode.TMPFILE}  # fmt: skip
    assert OPS[Opcode.READDIRPLUS].lookup is LookupEffect.READDIRPLUS
    assert OPS[Opcode.FORGET].lookup is LookupEffect.FORGET
    assert OPS[Opcode.BATCH_FORGET].lookup is LookupEffect.BATCH_FORGET


def test_handle_effects_and_fh_fields() -> None:
    opens = {op for op, s in OPS.items() if s.handle is HandleEffect.OPENS}
    assert opens == {Opcode.OPEN, Opcode.CREATE, Opcode.TMPFILE}
    assert OPS[Opcode.OPENDIR].handle is HandleEffect.OPENS_DIR
    assert OPS[Opcode.RELEASE].handle is HandleEffect.RELEASES
    assert OPS[Opcode.RELEASEDIR].handle is HandleEffect.RELEASES_DIR
    for op, spec in OPS.items():
        if spec.handle in (HandleEffect.USES_FH, HandleEffect.RELEASES,
                           HandleEffect.RELEASES_DIR):  # fmt: skip
            assert spec.fh_fields, Opcode(op).name
            fields = {n for s in _structs(spec.request) for n in
                      (sub.name for sub in schemas("<")[s].subcons)}  # fmt: skip
            assert set(spec.fh_fields) <= fields, Opcode(op).name
    assert OPS[Opcode.GETATTR].fh_when == ("getattr_flags", 1)
    assert OPS[Opcode.SETATTR].fh_when == ("valid", 1 << 6)


def test_creation_ops_and_file_types() -> None:
    creating = {op: s.file_type for op, s in OPS.items() if s.creates}
    assert creating == {
        Opcode.MKNOD: None,
        Opcode.MKDIR: S_IFDIR,
        Opcode.SYMLINK: S_IFLNK,
        Opcode.LINK: None,
        Opcode.CREATE: S_IFREG,
        Opcode.TMPFILE: S_IFREG,
    }
    assert {op for op, s in OPS.items() if s.extensions} == {
        Opcode.MKNOD,
        Opcode.MKDIR,
        Opcode.SYMLINK,
        Opcode.CREATE,
        Opcode.TMPFILE,
    }


def test_enosys_remembered_matches_protocol() -> None:
    remembered = {op for op, s in OPS.items() if s.enosys_remembered}
    assert remembered == {
        Opcode.OPEN, Opcode.OPENDIR, Opcode.CREATE, Opcode.FLUSH, Opcode.FSYNC,
        Opcode.FSYNCDIR, Opcode.SETXATTR, Opcode.GETXATTR, Opcode.LISTXATTR,
        Opcode.REMOVEXATTR, Opcode.ACCESS, Opcode.INTERRUPT, Opcode.BMAP, Opcode.POLL,
        Opcode.LSEEK, Opcode.FALLOCATE, Opcode.COPY_FILE_RANGE, Opcode.COPY_FILE_RANGE_64,
        Opcode.RENAME2, Opcode.LINK, Opcode.TMPFILE, Opcode.STATX, Opcode.SYNCFS,
    }  # fmt: skip


def test_since_minors() -> None:
    assert OPS[Opcode.STATX].since == 39
    assert OPS[Opcode.COPY_FILE_RANGE_64].since == 45
    assert OPS[Opcode.TMPFILE].since == 37
    assert NOTIFY[NotifyCode.PRUNE].since == 45
    assert OPS[Opcode.INTERRUPT].reply_optional


def test_node_fields_are_fields_of_the_request_struct() -> None:
    structs = schemas("<")
    named = {op for op, spec in OPS.items() if spec.node_fields}
    assert named >= {Opcode.LINK, Opcode.RENAME, Opcode.RENAME2, Opcode.COPY_FILE_RANGE}
    for op in named:
        first = OPS[op].request[0]
        assert first.kind is ArgKind.STRUCT
        fields = {sc.name for sc in structs[first.struct or ""].subcons}
        assert set(OPS[op].node_fields) <= fields, op


def test_ops_without_a_header_nodeid() -> None:
    assert {op for op, spec in OPS.items() if not spec.header_nodeid} == {
        Opcode.INIT,
        Opcode.DESTROY,
        Opcode.INTERRUPT,
        Opcode.BATCH_FORGET,
        Opcode.CUSE_INIT,
    }


def test_notifications_name_the_node_they_act_on() -> None:
    structs = schemas("<")
    named = {code: spec.node_field for code, spec in NOTIFY.items() if spec.node_field}
    assert set(named) == {
        NotifyCode.INVAL_INODE,
        NotifyCode.INVAL_ENTRY,
        NotifyCode.DELETE,
        NotifyCode.STORE,
        NotifyCode.RETRIEVE,
    }
    for code, field in named.items():
        struct = structs[NOTIFY[code].args[0].struct or ""]
        assert field in {sc.name for sc in struct.subcons}
