"""The connection model: one header read, kernel-faithful pairing, the INIT session."""

from __future__ import annotations

from fusetrace.frame import Direction
from fusetrace.protocol.abi import NotifyCode, Opcode
from fusetrace.protocol.connection import Connection
from fusetrace.protocol.encode import (
    encode_interrupt_reply,
    encode_notify,
    encode_reply,
    encode_request,
)
from fusetrace.testing import record as rec

K, D = Direction.INBOUND, Direction.OUTBOUND


def test_reply_pairs_by_channel_and_masked_unique() -> None:
    c = Connection()
    req = c.feed(rec(0, K, encode_request(Opcode.GETATTR, {}, unique=4, nodeid=1), channel=1))
    assert req.opcode == Opcode.GETATTR and req.unique == 4
    wrong = c.feed(rec(1, D, encode_reply(Opcode.GETATTR, {}, unique=4), channel=0))
    assert wrong.request is None and c.find(4) is req  # the kernel: ENOENT, still waiting
    right = c.feed(rec(2, D, encode_reply(Opcode.GETATTR, {}, unique=4), channel=1))
    assert right.request is req and right.opcode == Opcode.GETATTR
    assert c.find(4) is None and not c.outstanding


def test_interrupt_reply_leaves_the_request_outstanding() -> None:
    c = Connection()
    req = c.feed(rec(0, K, encode_request(Opcode.READ, {"fh": 1, "size": 8}, unique=4, nodeid=2)))
    intr = c.feed(rec(1, K, encode_request(Opcode.INTERRUPT, {"unique": 4}, unique=5)))
    ir = c.feed(rec(2, D, encode_interrupt_reply(5, -11)))
    assert ir.interrupt is intr and ir.request is req and c.find(4) is req
    assert ir.decoded().kind == "interrupt-reply"
    done = c.feed(rec(3, D, encode_reply(Opcode.READ, {"data": b""}, unique=4)))
    assert done.request is req and not c.outstanding and not c.interrupts


def test_refused_replies_match_nothing() -> None:
    """W3 and W5: a wrong out.len or an error out of range is refused before the lookup."""
    c = Connection()
    c.feed(rec(0, K, encode_request(Opcode.GETATTR, {}, unique=4, nodeid=1)))
    bad = c.feed(rec(1, D, encode_reply(Opcode.GETATTR, unique=4, error=5)))
    assert bad.request is None and c.find(4) is not None
    assert c.feed(rec(2, D, encode_reply(Opcode.GETATTR, unique=4, error=-2))).request


def test_reused_id_is_reported_as_replaced() -> None:
    c = Connection()
    first = c.feed(rec(0, K, encode_request(Opcode.GETATTR, {}, unique=4, nodeid=1)))
    second = c.feed(rec(1, K, encode_request(Opcode.GETATTR, {}, unique=4, nodeid=1)))
    assert second.replaced is first


def test_session_from_the_first_init_pair() -> None:
    c = Connection()
    init = encode_request(Opcode.INIT, {"major": 7, "minor": 40, "flags": 1}, unique=2)
    c.feed(rec(0, K, init))
    assert c.negotiated.kernel_minor == 40
    c.feed(rec(1, D, encode_reply(Opcode.INIT, {"major": 7, "minor": 8}, unique=2)))
    assert c.negotiated.minor == 8 and c.negotiated.initialized
    # a second INIT changes nothing
    c.feed(rec(2, K, encode_request(Opcode.INIT, {"major": 7, "minor": 45}, unique=4)))
    c.feed(rec(3, D, encode_reply(Opcode.INIT, {"major": 7, "minor": 45}, unique=4)))
    assert c.negotiated.minor == 8


def test_failed_init() -> None:
    c = Connection()
    c.feed(rec(0, K, encode_request(Opcode.INIT, {"major": 7, "minor": 45}, unique=2)))
    c.feed(rec(1, D, encode_reply(Opcode.INIT, unique=2, error=-71)))
    assert c.negotiated.failed and not c.negotiated.initialized


def test_resend_requeues_every_outstanding_request() -> None:
    c = Connection()
    req = c.feed(rec(0, K, encode_request(Opcode.GETATTR, {}, unique=4, nodeid=1)))
    c.feed(rec(1, D, encode_notify(NotifyCode.RESEND)))
    assert not c.outstanding and list(c.resent.values()) == [req]


def test_bodies_decode_lazily_and_once() -> None:
    c = Connection()
    ex = c.feed(rec(0, K, encode_request(Opcode.LOOKUP, {"name": "a"}, unique=4, nodeid=1)))
    assert ex._decoded is None
    d = ex.decoded()
    assert d.body == {"name": "a"} and ex.decoded() is d
    short = c.feed(rec(1, D, b"\x01\x02"))
    assert short.header == () and short.unique is None
