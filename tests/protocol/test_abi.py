"""ABI constants and flag helpers."""

from __future__ import annotations

from fusetrace.protocol.abi import (
    FUSE_INT_REQ_BIT,
    FUSE_ROOT_ID,
    FUSE_UNIQUE_RESEND,
    FattrFlag,
    InitFlag,
    Opcode,
    flag_names,
    notify_name,
    opcode_name,
)


def test_constants() -> None:
    assert (FUSE_ROOT_ID, FUSE_INT_REQ_BIT, FUSE_UNIQUE_RESEND) == (1, 1, 1 << 63)
    assert Opcode.CUSE_INIT == 4096 and Opcode.COPY_FILE_RANGE_64 == 53


def test_init_flags_split_and_join() -> None:
    f = InitFlag.ASYNC_READ | InitFlag.INIT_EXT | InitFlag.REQUEST_TIMEOUT
    assert f.words() == (1 | 1 << 30, 1 << 10)
    assert InitFlag.from_words(*f.words()) == f
    assert InitFlag.SECURITY_CTX == 1 << 32


def test_flag_names_with_unknown_bits() -> None:
    assert flag_names(int(FattrFlag.MODE | FattrFlag.SIZE) | 1 << 20, FattrFlag) == [
        "MODE", "SIZE", "bit20"]  # fmt: skip


def test_names_of_unknown_codes() -> None:
    assert opcode_name(1) == "LOOKUP" and opcode_name(7) == "OPCODE_7"
    assert notify_name(3) == "INVAL_ENTRY" and notify_name(99) == "NOTIFY_99"
