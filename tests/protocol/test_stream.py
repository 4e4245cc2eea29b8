"""FrameDecoder: pairing by channel and unique, INIT learning, bounded memory."""

from __future__ import annotations

from pathlib import Path

from fusetrace.frame import Direction, Frame
from fusetrace.protocol.abi import NotifyCode, Opcode
from fusetrace.protocol.encode import (
    encode_interrupt_reply,
    encode_notify,
    encode_reply,
    encode_request,
)
from fusetrace.protocol.stream import FrameDecoder
from fusetrace.testing import record as rec

K, D = Direction.INBOUND, Direction.OUTBOUND


def init_pair(minor: int) -> list[Frame]:
    return [
        rec(0, K, encode_request(Opcode.INIT, {"major": 7, "minor": 45}, unique=2)),
        rec(1, D, encode_reply(Opcode.INIT, {"major": 7, "minor": minor}, unique=2)),
    ]


def test_reply_pairs_with_request_and_latency() -> None:
    dec = FrameDecoder()
    req = dec.feed(rec(0, K, encode_request(Opcode.LOOKUP, {"name": "a"}, unique=4, nodeid=1),
                       t=100))  # fmt: skip
    assert dec.outstanding
    rep = dec.feed(rec(1, D, encode_reply(Opcode.LOOKUP, {"nodeid": 5}, unique=4), t=350))
    assert rep.request is req and rep.latency_ns == 250
    assert rep.decoded is not None and rep.decoded.body["nodeid"] == 5
    assert not dec.outstanding


def test_channels_are_separate() -> None:
    dec = FrameDecoder()
    dec.feed(rec(0, K, encode_request(Opcode.GETATTR, {}, unique=4, nodeid=1), channel=1))
    rep = dec.feed(rec(1, D, encode_reply(Opcode.GETATTR, {}, unique=4), channel=0))
    assert rep.request is None and rep.decoded.problems[0].code == "unpaired"


def test_no_reply_ops_are_not_kept() -> None:
    dec = FrameDecoder()
    dec.feed(rec(0, K, encode_request(Opcode.FORGET, {"nlookup": 1}, unique=4, nodeid=5)))
    dec.feed(rec(1, K, encode_request(Opcode.BATCH_FORGET, {"forgets": []}, unique=6)))
    dec.feed(rec(2, K, encode_request(Opcode.NOTIFY_REPLY, {"data": b"x"}, unique=1)))
    assert dec.outstanding == {}


def test_memory_stays_bounded() -> None:
    dec = FrameDecoder()
    for i in range(0, 20000, 2):
        u = 4 + i
        dec.feed(rec(i, K, encode_request(Opcode.FLUSH, {"fh": 1}, unique=u, nodeid=2)))
        dec.feed(rec(i + 1, D, encode_reply(Opcode.FLUSH, {}, unique=u)))
    assert len(dec.outstanding) == 0


def test_interrupt_reply_pairs_with_the_interrupt() -> None:
    dec = FrameDecoder()
    dec.feed(rec(0, K, encode_request(Opcode.READ, {"fh": 1, "size": 8}, unique=4, nodeid=2)))
    intr = dec.feed(rec(1, K, encode_request(Opcode.INTERRUPT, {"unique": 4}, unique=5)))
    ir = dec.feed(rec(2, D, encode_interrupt_reply(5, -11)))
    assert ir.request is intr and ir.decoded.kind == "interrupt-reply"
    r = dec.feed(rec(3, D, encode_reply(Opcode.READ, {}, unique=4, error=-4)))
    assert r.decoded.name == "READ" and r.decoded.error == -4
    assert dec.outstanding == {}


def test_unanswered_interrupt_dropped_with_its_target() -> None:
    dec = FrameDecoder()
    dec.feed(rec(0, K, encode_request(Opcode.READ, {"fh": 1}, unique=4, nodeid=2)))
    dec.feed(rec(1, K, encode_request(Opcode.INTERRUPT, {"unique": 4}, unique=5)))
    dec.feed(rec(2, D, encode_reply(Opcode.READ, {"data": b""}, unique=4)))
    assert dec.outstanding == {}


def test_init_pair_sets_the_session() -> None:
    dec = FrameDecoder()
    for r in init_pair(8):
        dec.feed(r)
    assert dec.negotiated.minor == 8 and dec.negotiated.initialized
    dec.feed(rec(2, K, encode_request(Opcode.LOOKUP, {"name": "a"}, unique=4, nodeid=1)))
    old_entry = encode_reply(Opcode.LOOKUP, {"nodeid": 5}, unique=4, negotiated=dec.negotiated)
    assert len(old_entry) == 16 + 120
    rep = dec.feed(rec(3, D, old_entry))
    assert rep.decoded.problems == [] and rep.decoded.body["nodeid"] == 5


def test_notifications_and_undecodable_frames() -> None:
    dec = FrameDecoder()
    n = dec.feed(rec(0, D, encode_notify(NotifyCode.POLL, {"kh": 3})))
    assert n.decoded.kind == "notify" and n.decoded.body == {"kh": 3}
    bad = dec.feed(rec(1, K, b"\x01\x02"))
    assert bad.decoded is None and "cut short" in (bad.error or "")
    bad = dec.feed(rec(2, D, b"\x01"))
    assert bad.decoded is None


def test_snapped_record() -> None:
    dec = FrameDecoder()
    w = encode_request(Opcode.WRITE, {"fh": 1, "data": b"z" * 64}, unique=4, nodeid=2)
    f = dec.feed(rec(0, K, w[:100], orig=len(w)))
    assert f.decoded.problems[0].code == "snapped"


def test_big_endian_stream() -> None:
    from fusetrace.protocol.session import Negotiated

    big = Negotiated(byte_order="big")
    dec = FrameDecoder("big")
    dec.feed(rec(0, K, encode_request(Opcode.GETATTR, {}, unique=4, nodeid=1, negotiated=big)))
    r = dec.feed(rec(1, D, encode_reply(Opcode.GETATTR, {"attr": {"ino": 9}}, unique=4,
                                        negotiated=big)))  # fmt: skip
    assert r.request is not None and r.decoded.body["attr"]["ino"] == 9


def test_fuzz_streams_never_raise() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from fusetrace.testing import all_fixtures

    fixtures = all_fixtures(Path(__file__).resolve().parent.parent / "data" / "frames")

    @settings(max_examples=100, deadline=None)
    @given(st.lists(st.tuples(st.sampled_from(fixtures), st.integers(0, 64), st.binary(max_size=8),
                              st.integers(0, 1)), max_size=30))  # fmt: skip
    def run(items: list) -> None:  # type: ignore[type-arg]
        dec = FrameDecoder()
        for i, (fx, cut, junk, channel) in enumerate(items):
            data = fx.data[: max(0, len(fx.data) - cut)] + junk
            direction = K if fx.kind == "request" else D
            frame = dec.feed(rec(i, direction, data, channel=channel))
            assert frame.decoded is not None or frame.error
        assert len(dec.outstanding) <= len(items)

    run()
