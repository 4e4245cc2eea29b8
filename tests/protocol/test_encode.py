"""Encoders fill in what the body implies and build with the construct schemas."""

from __future__ import annotations

import struct

import pytest

from fusetrace.protocol.abi import NotifyCode, Opcode
from fusetrace.protocol.decode import decode_notify, decode_reply, decode_request
from fusetrace.protocol.encode import (
    EncodeError,
    build_struct,
    encode_interrupt_reply,
    encode_notify,
    encode_reply,
    encode_request,
    with_unique,
)
from fusetrace.protocol.session import Negotiated


def test_lengths_and_counts_are_filled_in() -> None:
    w = encode_request(Opcode.WRITE, {"fh": 1, "data": b"abcd"}, unique=6, nodeid=2)
    assert struct.unpack_from("<I", w)[0] == len(w) == 40 + 40 + 4
    assert decode_request(w).body["size"] == 4
    b = encode_request(Opcode.BATCH_FORGET, {"forgets": [{"nodeid": 3, "nlookup": 1}]},
                       unique=8)  # fmt: skip
    assert decode_request(b).body["count"] == 1
    n = encode_notify(NotifyCode.DELETE, {"parent": 1, "child": 2, "name": "x"})
    assert decode_notify(n).body["namelen"] == 1


def test_explicit_values_win() -> None:
    w = encode_request(Opcode.WRITE, {"fh": 1, "size": 9, "data": b"ab"}, unique=6)
    d = decode_request(w)
    assert d.body["size"] == 9 and d.problems[0].code == "truncated"


def test_error_reply_is_header_only() -> None:
    assert encode_reply(Opcode.LOOKUP, {"nodeid": 5}, unique=4, error=-2) == struct.pack(
        "<IiQ", 16, -2, 4)  # fmt: skip
    assert encode_interrupt_reply(5, -11) == struct.pack("<IiQ", 16, -11, 5)


def test_compat_encoding_follows_the_session() -> None:
    old = Negotiated(minor=8)
    r = encode_reply(Opcode.LOOKUP, {"nodeid": 5}, unique=4, negotiated=old)
    assert len(r) == 16 + 120
    assert decode_reply(r, Opcode.LOOKUP, old).body["nodeid"] == 5


def test_big_endian_build() -> None:
    big = Negotiated(byte_order="big")
    r = encode_request(Opcode.GETATTR, {"fh": 1}, unique=4, nodeid=1, negotiated=big)
    assert r[:4] == (56).to_bytes(4, "big")
    assert decode_request(r, big).body["fh"] == 1


def test_with_unique() -> None:
    r = encode_reply(Opcode.FLUSH, {}, unique=4)
    assert decode_reply(with_unique(r, 1 << 40), Opcode.FLUSH).unique == 1 << 40


def test_bad_input() -> None:
    with pytest.raises(EncodeError):
        encode_request(7, {}, unique=2)
    with pytest.raises(EncodeError):
        encode_notify(42)
    with pytest.raises(EncodeError):
        build_struct("fuse_forget_in", {"nlookup": -1})
