"""Decoding single frames: raw-byte fixtures field by field, strictness, fuzzing."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fusetrace.errors import DecodeError
from fusetrace.protocol.abi import NotifyCode, Opcode
from fusetrace.protocol.decode import (
    Decoded,
    decode_notify,
    decode_outbound,
    decode_reply,
    decode_request,
    reply_fast,
)
from fusetrace.protocol.encode import (
    encode_interrupt_reply,
    encode_notify,
    encode_reply,
    encode_request,
)
from fusetrace.protocol.header import OutHeader
from fusetrace.protocol.session import Negotiated
from fusetrace.testing import Fixture, all_fixtures, lookup

FRAMES = Path(__file__).resolve().parent.parent / "data" / "frames"


FIXTURES = all_fixtures(FRAMES)


def decode_fixture(fx: Fixture, engine: str = "fast", data: bytes | None = None) -> Decoded:
    raw = fx.data if data is None else data
    if fx.kind == "request":
        return decode_request(raw, fx.negotiated, engine=engine)  # type: ignore[arg-type]
    if fx.kind == "notify":
        return decode_notify(raw, fx.negotiated, engine=engine)  # type: ignore[arg-type]
    return decode_reply(raw, fx.op, fx.negotiated, engine=engine)  # type: ignore[arg-type]


def reencode(fx: Fixture, d: Decoded) -> bytes:
    neg = fx.negotiated
    if fx.kind == "request":
        h = d.header
        return encode_request(fx.op, d.body, unique=h.unique, nodeid=h.nodeid, uid=h.uid,
                              gid=h.gid, pid=h.pid, total_extlen=h.total_extlen,
                              padding=h.padding, negotiated=neg)  # fmt: skip
    if fx.kind == "notify":
        return encode_notify(fx.op, d.body, negotiated=neg)
    if d.kind == "interrupt-reply":
        return encode_interrupt_reply(d.unique, d.header.error, neg)  # type: ignore[union-attr]
    probe = fx.op in (Opcode.GETXATTR, Opcode.LISTXATTR) and set(d.body) == {"size", "padding"}
    return encode_reply(fx.op, d.body, unique=d.unique, error=d.header.error,  # type: ignore[union-attr]
                        negotiated=neg, probe=probe)  # fmt: skip


def same(actual: Any, expected: Any) -> bool:
    if isinstance(actual, bytes):
        return actual.hex() == expected
    return bool(actual == expected)


@pytest.mark.parametrize("fx", FIXTURES, ids=lambda f: f.stem)
def test_fixture_decodes_field_by_field(fx: Fixture) -> None:
    d = decode_fixture(fx)
    assert d.problems == []
    assert d.remainder == b""
    assert d.header.len == len(fx.data)
    assert fx.expect, "a fixture must state what it holds"
    for path, expected in fx.expect.items():
        assert same(lookup(d, path), expected), path


@pytest.mark.parametrize("fx", FIXTURES, ids=lambda f: f.stem)
def test_fast_and_construct_engines_agree(fx: Fixture) -> None:
    assert decode_fixture(fx, "fast") == decode_fixture(fx, "construct")


@pytest.mark.parametrize("fx", FIXTURES, ids=lambda f: f.stem)
def test_fixture_reencodes_to_the_same_bytes(fx: Fixture) -> None:
    assert reencode(fx, decode_fixture(fx)) == fx.data


def _by_stem(stem: str) -> Fixture:
    return next(f for f in FIXTURES if f.stem == stem)


def test_init_745_request_layout() -> None:
    fx = _by_stem("init-7.45-request")
    # bytes 40..63: major 7, minor 45, max_readahead, flags, flags2 (protocol.md §3.1)
    assert struct.unpack_from("<IIIII", fx.data, 40) == (7, 45, 131072, 0x73FFFFFB, 0x6FF)
    assert len(fx.data) == 40 + 64
    assert decode_fixture(fx).body["unused"] == [0] * 11


def test_init_old_minor_sizes() -> None:
    req = decode_fixture(_by_stem("init-7.19-request"))
    assert len(_by_stem("init-7.19-request").data) == 40 + 16 and "flags2" not in req.body
    rep = decode_fixture(_by_stem("init-7.19-reply"))
    assert set(rep.body) == {"major", "minor", "max_readahead", "flags", "max_background",
                             "congestion_threshold", "max_write"}  # fmt: skip
    assert set(decode_fixture(_by_stem("init-7.4-reply")).body) == {"major", "minor"}


def test_big_endian_decodes() -> None:
    fx = _by_stem("lookup-reply-be")
    assert fx.data[4:8] == b"\0\0\0\0" and fx.data[8:16] == (10).to_bytes(8, "big")
    d = decode_fixture(fx)
    assert d.body["nodeid"] == 7 and d.body["attr"]["mode"] == 0o100644
    # the same bytes read as little endian are nonsense, not a crash
    wrong = decode_reply(fx.data, Opcode.LOOKUP, Negotiated())
    assert wrong.problems and wrong.problems[0].code == "length"


# ---- strictness -------------------------------------------------------------------------


def test_trailing_bytes_are_kept_and_reported() -> None:
    frame = encode_request(Opcode.GETATTR, {}, unique=4, nodeid=1) + b"xyz"
    frame = struct.pack("<I", len(frame)) + frame[4:]
    d = decode_request(frame)
    assert d.remainder == b"xyz"
    assert [p.code for p in d.problems] == ["trailing"]


def test_truncated_body_is_decoded_as_far_as_it_goes() -> None:
    frame = encode_request(Opcode.READ, {"fh": 3, "size": 10}, unique=4, nodeid=1)[:50]
    frame = struct.pack("<I", len(frame)) + frame[4:]
    d = decode_request(frame)
    assert d.problems[0].code == "truncated" and d.body == {}
    assert d.remainder == frame[40:]


def test_header_len_disagreeing_with_the_frame() -> None:
    frame = encode_request(Opcode.GETATTR, {}, unique=4, nodeid=1)
    d = decode_request(struct.pack("<I", 99) + frame[4:])
    assert d.problems[0].code == "length"


def test_unknown_opcode_keeps_the_body() -> None:
    frame = struct.pack("<IIQQIIIHH", 44, 7, 4, 1, 0, 0, 0, 0, 0) + b"abcd"
    d = decode_request(frame)
    assert d.name == "OPCODE_7" and d.remainder == b"abcd"
    assert d.problems[0].code == "unknown-opcode"


def test_unknown_notify_code() -> None:
    frame = struct.pack("<IiQ", 20, 99, 0) + b"zzzz"
    d = decode_notify(frame)
    assert d.problems[0].code == "unknown-notify" and d.remainder == b"zzzz"


def test_name_without_nul() -> None:
    frame = encode_request(Opcode.LOOKUP, {"name": "abc"}, unique=4, nodeid=1)[:-1]
    frame = struct.pack("<I", len(frame)) + frame[4:]
    d = decode_request(frame)
    assert d.problems[0].code == "string" and d.remainder == b"abc"


def test_error_reply_with_payload() -> None:
    frame = struct.pack("<IiQ", 20, -2, 4) + b"oops"
    d = decode_reply(frame, Opcode.LOOKUP)
    assert d.error == -2 and d.remainder == b"oops"
    assert d.problems[0].code == "error-payload"


def test_unpaired_reply_decodes_the_header_only() -> None:
    frame = encode_reply(Opcode.GETATTR, {}, unique=4)
    d = decode_reply(frame, None)
    assert d.problems[0].code == "unpaired" and d.remainder == frame[16:]


def test_reply_to_an_op_without_reply() -> None:
    d = decode_reply(struct.pack("<IiQ", 16, 0, 4), Opcode.FORGET)
    assert d.problems[0].code == "no-reply"


def test_interrupt_reply_with_payload() -> None:
    d = decode_reply(struct.pack("<IiQ", 20, 0, 5) + b"abcd", Opcode.READ)
    assert d.kind == "interrupt-reply" and d.problems[0].code == "interrupt-payload"


def test_fixed_reply_short() -> None:
    frame = encode_reply(Opcode.GETATTR, {}, unique=4)[:60]
    frame = struct.pack("<I", len(frame)) + frame[4:]
    d = decode_reply(frame, Opcode.GETATTR)
    assert d.problems[0].code == "truncated"


def test_snapped_frame() -> None:
    frame = encode_request(Opcode.WRITE, {"fh": 1, "data": b"x" * 100}, unique=4, nodeid=2)
    d = decode_request(frame[:90], orig_len=len(frame))
    # cut data is what a snap length does: reported once, as "snapped"
    assert [p.code for p in d.problems] == ["snapped"]
    assert d.body["data"] == b"x" * 10 and d.body["size"] == 100


def test_getxattr_probe_depends_on_the_request() -> None:
    frame = encode_reply(Opcode.GETXATTR, {"value": b"12345678"}, unique=4)
    assert decode_reply(frame, Opcode.GETXATTR, request_body={"size": 64}).body == {
        "value": b"12345678"
    }
    assert decode_reply(frame, Opcode.GETXATTR, request_body={"size": 0}).body == {
        "size": int.from_bytes(b"1234", "little"),
        "padding": int.from_bytes(b"5678", "little"),
    }


def test_dirent_overrunning_the_reply() -> None:
    frame = encode_reply(Opcode.READDIR, {"entries": [{"ino": 1, "name": "abc"}]}, unique=4)
    cut = frame[:-8]
    cut = struct.pack("<I", len(cut)) + cut[4:]
    d = decode_reply(cut, Opcode.READDIR)
    assert d.problems[0].code == "dirent" and d.body["entries"] == []
    assert d.remainder == cut[16:]


def test_notify_namelen_mismatch() -> None:
    frame = encode_notify(NotifyCode.INVAL_ENTRY, {"parent": 1, "namelen": 5, "name": "ab"})
    d = decode_notify(frame)
    assert [p.code for p in d.problems] == ["string"]


def test_outbound_dispatch() -> None:
    assert decode_outbound(encode_notify(NotifyCode.POLL, {"kh": 1}), None).kind == "notify"
    assert decode_outbound(encode_reply(Opcode.LOOKUP, {}, unique=2, error=-2), 1).kind == "reply"


@pytest.mark.parametrize("n", [0, 15])
def test_short_out_header_raises(n: int) -> None:
    with pytest.raises(DecodeError):
        decode_reply(bytes(n), Opcode.LOOKUP)


@pytest.mark.parametrize("n", [0, 20, 39])
def test_short_in_header_raises(n: int) -> None:
    with pytest.raises(DecodeError):
        decode_request(bytes(n))


# ---- fuzzing ----------------------------------------------------------------------------


def _decode_any(fx: Fixture, data: bytes, engine: str) -> Decoded | None:
    try:
        return decode_fixture(fx, engine, data)
    except DecodeError:
        return None


@st.composite
def mutated(draw: st.DrawFn) -> tuple[Fixture, bytes]:
    fx = draw(st.sampled_from(FIXTURES))
    data = bytearray(fx.data)
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(["flip", "cut", "grow", "splice", "fixlen"]))
        if action == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        elif action == "cut":
            del data[draw(st.integers(0, len(data))) :]
        elif action == "grow":
            data += draw(st.binary(max_size=40))
        elif action == "splice" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i : i + 8] = draw(st.binary(max_size=12))
        elif action == "fixlen" and len(data) >= 4:
            order = "<" if fx.negotiated.byte_order == "little" else ">"
            data[0:4] = struct.pack(order + "I", len(data))
    return fx, bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_fuzz_mutated_frames(case: tuple[Fixture, bytes]) -> None:
    fx, data = case
    fast = _decode_any(fx, data, "fast")
    slow = _decode_any(fx, data, "construct")
    assert fast == slow
    if fast is not None:
        consumed = len(data) - len(fast.remainder)
        assert consumed >= 0
        if fast.remainder:
            assert fast.problems, "bytes left over without a problem"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([*list(Opcode), None]),
       st.sampled_from(["little", "big"]))  # fmt: skip
def test_fuzz_random_bytes(data: bytes, op: Opcode | None, order: str) -> None:
    neg = Negotiated(byte_order=order)
    for call in (
        lambda: decode_request(data, neg),
        lambda: decode_reply(data, op, neg),
        lambda: decode_notify(data, neg),
        lambda: decode_request(data, neg, engine="construct"),
    ):
        try:
            d = call()
        except DecodeError:
            continue
        assert isinstance(d, Decoded)


def test_ioctl_retry_reply_with_the_wrong_data() -> None:
    frame = encode_reply(Opcode.IOCTL, {"flags": 4, "in_iovs": 2, "data": b"x" * 16}, unique=4)
    d = decode_reply(frame, Opcode.IOCTL)
    assert [p.code for p in d.problems] == ["ioctl"] and "iovecs" not in d.body
    assert d.body["data"] == b"x" * 16


def _unbuilt(frame: bytes, op: Opcode) -> Decoded:
    header = OutHeader._make(struct.unpack_from("<IiQ", frame))
    d = reply_fast(frame, op, header, Negotiated.default(), lazy_body=True)
    assert d is not None
    return d


def test_fast_path_can_leave_a_well_formed_body_unbuilt_until_read() -> None:
    attr = {"ino": 9, "size": 1 << 33, "mode": 0o100644, "nlink": 1}
    frame = encode_reply(Opcode.LOOKUP, {"nodeid": 9, "generation": 2, "attr": attr}, unique=4)
    assert decode_reply(frame, Opcode.LOOKUP).lazy is None  # built at once by default
    d = _unbuilt(frame, Opcode.LOOKUP)
    lazy = d.lazy
    assert lazy is not None
    # a few fields straight from the bytes, in the order asked
    get = lazy.picker(("attr.size", "nodeid", "attr.mode"))
    assert get(frame) == (1 << 33, 9, 0o100644)
    assert lazy.picker(("generation",))(frame) == (2,)
    # reading the body builds it, once; it equals what the reference engine decodes
    assert d.body["attr"]["size"] == 1 << 33 and d.body is d.body
    assert d == decode_reply(frame, Opcode.LOOKUP, engine="construct")


def test_unbuilt_directory_listing() -> None:
    entries = [{"ino": 5 + i, "off": i + 1, "type": 8, "name": f"n{i}"} for i in range(3)]
    frame = encode_reply(Opcode.READDIR, {"entries": entries}, unique=4)
    d = _unbuilt(frame, Opcode.READDIR)
    assert d.lazy is not None and d.lazy.names(frame) == ["n0", "n1", "n2"]
    assert d == decode_reply(frame, Opcode.READDIR, engine="construct")
    # nonzero padding after a name: not for the fast path; decoded in full, with its problem
    bad = bytearray(frame)
    bad[16 + 24 + 2] = 1
    header = OutHeader._make(struct.unpack_from("<IiQ", bad))
    assert reply_fast(bytes(bad), Opcode.READDIR, header, Negotiated.default(), True) is None
    d = decode_reply(bytes(bad), Opcode.READDIR)
    assert d.lazy is None and [p.code for p in d.problems] == ["dirent"]
