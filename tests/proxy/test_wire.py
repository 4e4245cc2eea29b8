"""The forwarding path's wire facts come from the protocol package."""

from __future__ import annotations

from fusetrace.protocol.abi import InitFlag, Opcode
from fusetrace.protocol.registry import NO_REPLY_OPS, NOT_AWAITED_OPS
from fusetrace.proxy import wire


def test_no_reply_set_is_the_registrys() -> None:
    """INTERRUPT's reply is optional: the recorder must not count it as outstanding."""
    assert wire.NO_REPLY_OPCODES is NOT_AWAITED_OPS
    assert NO_REPLY_OPS | {Opcode.INTERRUPT} == NOT_AWAITED_OPS
    assert Opcode.INTERRUPT not in NO_REPLY_OPS


def test_unsafe_flags2_are_cleared_only_with_init_ext() -> None:
    frame = bytearray(64)
    flags2 = wire.FLAG2_PASSTHROUGH | 1
    wire.U32.pack_into(frame, 0, int(InitFlag.INIT_EXT))
    wire.U32.pack_into(frame, 4, flags2)
    out, was, cleared = wire.without_unsafe_flags2(bytes(frame), 0, 4)
    assert (was, cleared) == (flags2, wire.FLAG2_PASSTHROUGH)
    assert wire.U32.unpack_from(out, 4)[0] == 1
    wire.U32.pack_into(frame, 0, 0)  # no INIT_EXT: flags2 means nothing
    same, _, cleared = wire.without_unsafe_flags2(bytes(frame), 0, 4)
    assert cleared == 0 and same == bytes(frame)


def test_init_offsets_are_the_schemas() -> None:
    """The INIT offsets the forwarding path uses (written out, so that a recording never
    imports construct) are where the schemas put those fields."""
    from fusetrace.protocol.schemas import field_offset

    for name, (base, struct_name, field) in wire.INIT_FIELDS.items():
        assert getattr(wire, name) == base + field_offset(struct_name, field), name
