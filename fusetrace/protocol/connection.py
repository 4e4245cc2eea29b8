"""One FUSE connection as the kernel keeps it: the one pairer and session builder.

:class:`Connection` is fed :class:`~fusetrace.frame.Frame` objects in capture order and
answers each with an :class:`Exchange`: the frame's header, read once; for a reply, the
request it answers; the negotiated session in force for the frame; and its body, decoded
only when someone asks (:meth:`Exchange.decoded`, built on ``decode_request`` /
``decode_reply``). The decoder (``FrameDecoder``), the tracker and the live view all consume
it, so pairing and INIT are modelled in one place.

The model follows the kernel (protocol.md §5.2, §5.3, §5.4):

* A request that expects a reply is kept under (channel, unique with bit 0 masked): the
  processing table of the /dev/fuse file descriptor it was read from. FORGET, BATCH_FORGET
  and NOTIFY_REPLY are never kept. An INTERRUPT is kept apart, under its target's key.
* A reply is matched only when the kernel would look it up: at least a header, ``out.len``
  equal to the bytes written, and an error in (-512, 0] (W2, W3, W5). An even unique then
  finishes the request (and any INTERRUPT of it); an odd unique answers the INTERRUPT and
  leaves the request outstanding (W7).
* The session is learnt from the first INIT and the reply that answers it; an error reply, or
  one the kernel cannot take (error with a payload, a payload above 64 bytes), fails it.
* NOTIFY_RESEND puts every outstanding request back on the kernel's queue: they are no longer
  outstanding (the kernel re-sends them with bit 63 set).

Pure: no I/O. Memory is bounded by what is outstanding.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fusetrace.errors import DecodeError
from fusetrace.frame import Direction, Frame
from fusetrace.protocol.abi import FUSE_INT_REQ_BIT, NotifyCode, Opcode
from fusetrace.protocol.decode import Decoded, Engine, decode_notify, decode_reply, decode_request
from fusetrace.protocol.header import (
    IN_HEADER_SIZE,
    OUT_HEADER_SIZE,
    InHeader,
    OutHeader,
    in_header_struct,
    out_header_struct,
)
from fusetrace.protocol.registry import NO_REPLY_OPS, OPS
from fusetrace.protocol.schemas import flat
from fusetrace.protocol.session import Negotiated

#: the lowest error a reply may carry (``-ERESTARTSYS`` and below are refused, W5)
ERRNO_FLOOR = -512
#: sizeof(fuse_init_out): a longer INIT reply fails INIT (W8)
INIT_OUT_MAX = 64
EIO = 5

_INIT = int(Opcode.INIT)
_CUSE_INIT = int(Opcode.CUSE_INIT)
_NO_REPLY = NO_REPLY_OPS
_INTERRUPT = int(Opcode.INTERRUPT)
_RESEND = int(NotifyCode.RESEND)
_INBOUND = Direction.INBOUND
_MASK = ~FUSE_INT_REQ_BIT
#: headers built without NamedTuple's Python-level ``_make`` (the hot path)
_new_tuple = tuple.__new__
_new_object = object.__new__
#: ops whose reply shape depends on the request body (GETXATTR/LISTXATTR size probe)
NEEDS_REQUEST_BODY = frozenset(op for op, spec in OPS.items() if spec.reply_probe is not None)


class Exchange:
    """One frame of a connection, with what the connection model knows about it.

    ``header`` is the header (an :class:`InHeader` for a request: len, opcode, unique,
    nodeid, uid, gid, pid, total_extlen, padding; an :class:`OutHeader` for a daemon frame:
    len, error, unique), an empty tuple when the frame is shorter than its header.
    ``opcode`` is the request's opcode (for a reply: the opcode of the request it answers,
    None if it answers none; for a notification: None). ``request`` is
    the outstanding request a reply matched (for an odd unique: the interrupted request, still
    outstanding), ``interrupt`` the INTERRUPT an odd-unique reply answers, ``replaced`` the
    request a new one with the same key displaced (a reused id). ``negotiated`` is the session
    in force for the frame. ``view`` and ``state`` are free for consumers (the decoder keeps
    its frame there, the tracker its request state). Made by :meth:`Connection.feed`.
    """

    __slots__ = (
        "_decoded",
        "_engine",
        "header",
        "interrupt",
        "negotiated",
        "opcode",
        "record",
        "replaced",
        "request",
        "state",
        "view",
    )

    record: Frame
    header: tuple[Any, ...]
    opcode: int | None
    negotiated: Negotiated
    request: Exchange | None
    interrupt: Exchange | None
    replaced: Exchange | None
    view: Any
    state: Any
    _decoded: Decoded | None
    _engine: str

    @property
    def inbound(self) -> bool:
        return self.record.direction is _INBOUND

    @property
    def unique(self) -> int | None:
        h = self.header
        if not h:
            return None
        return int(h[2])

    def decoded(self, engine: Engine = "fast") -> Decoded:
        """The frame decoded (once per engine). Raises DecodeError for a cut header."""
        if self._engine == engine:
            return self._decoded  # type: ignore[return-value]
        rec = self.record
        data = rec.data
        neg = self.negotiated
        orig = rec.orig_len if rec.orig_len > len(data) else None
        h = self.header
        if rec.direction is _INBOUND:
            if not h:
                raise DecodeError(
                    f"request header cut short: {len(data)} of {IN_HEADER_SIZE} bytes"
                )
            d = decode_request(data, neg, engine=engine, orig_len=orig, header=h)  # type: ignore[arg-type]
        else:
            if not h:
                raise DecodeError(f"reply header cut short: {len(data)} of {OUT_HEADER_SIZE} bytes")
            oh: OutHeader = h  # type: ignore[assignment]
            if h[2] == 0:
                d = decode_notify(data, neg, engine=engine, orig_len=orig, header=oh)
            else:
                req = self.request if self.interrupt is None else self.interrupt
                body = None
                if req is not None and req.opcode in NEEDS_REQUEST_BODY:
                    body = req.decoded(engine).body
                d = decode_reply(
                    data,
                    None if req is None else req.opcode,
                    neg,
                    request_body=body,
                    engine=engine,
                    orig_len=orig,
                    header=oh,
                )
        self._decoded = d
        self._engine = engine
        return d


def _exchange(
    record: Frame,
    header: tuple[Any, ...],
    opcode: int | None,
    negotiated: Negotiated,
    request: Exchange | None = None,
) -> Exchange:
    """A new :class:`Exchange` (built without a Python-level ``__init__``: one a frame)."""
    ex: Exchange = _new_object(Exchange)
    ex.record = record
    ex.header = header
    ex.opcode = opcode
    ex.negotiated = negotiated
    ex.request = request
    ex.interrupt = None
    ex.replaced = None
    ex.view = None
    ex.state = None
    ex._decoded = None
    ex._engine = ""
    return ex


class Connection:
    """The connection model: feed records in capture order, get an :class:`Exchange` each."""

    def __init__(self, byte_order: str = "little", negotiated: Negotiated | None = None) -> None:
        self.negotiated = negotiated or Negotiated.default(byte_order)
        order = self.negotiated.order
        self._in = in_header_struct(order).unpack_from
        self._out = out_header_struct(order).unpack_from
        self._order = order
        #: (channel << 64 | unique & ~1) -> request still waiting for its reply
        self.outstanding: dict[int, Exchange] = {}
        #: the same key -> INTERRUPT of that request not answered yet
        self.interrupts: dict[int, Exchange] = {}
        #: channels seen (0 always)
        self.channels: set[int] = {0}
        self._several = False
        #: the first INIT (or CUSE_INIT) request; later ones change nothing
        self.init: Exchange | None = None
        #: requests NOTIFY_RESEND put back on the kernel's queue (oldest dropped first)
        self.resent: dict[int, Exchange] = {}

    # ---- queries --------------------------------------------------------------------------
    def find(self, unique: int) -> Exchange | None:
        """The outstanding request with this id on any channel (bit 0 masked)."""
        key = unique & _MASK
        out = self.outstanding
        for ch in self.channels:
            ex = out.get(ch << 64 | key)
            if ex is not None:
                return ex
        return None

    def waiting(self) -> Iterator[Exchange]:
        """The requests still waiting for a reply, in no particular order."""
        return iter(self.outstanding.values())

    # ---- feeding ----------------------------------------------------------------------------
    def feed(self, record: Frame) -> Exchange:
        _index, _t_ns, direction, data, orig_len, channel, _comment, _result = record
        neg = self.negotiated
        if direction is _INBOUND:
            if len(data) < IN_HEADER_SIZE:
                return _exchange(record, (), None, neg)
            h: tuple[Any, ...] = _new_tuple(InHeader, self._in(data))
            op = h[1]
            ex = _exchange(record, h, op, neg)
            key = h[2] & _MASK
            if channel:
                key |= channel << 64
                if channel not in self.channels:
                    self.channels.add(channel)
                    self._several = True
            if op == _INTERRUPT:
                self.interrupts[key] = ex
            elif op not in _NO_REPLY:
                out = self.outstanding
                old = out.get(key)
                if old is None and self._several:
                    old = self.find(h[2])  # ids are unique across the connection's fds
                if old is not None:
                    ex.replaced = old
                out[key] = ex
                if op == _INIT and self.init is None:
                    self.init = ex
                    body = data[IN_HEADER_SIZE:]
                    if len(body) >= 8:
                        self.negotiated = neg.with_init_request(self._padded("fuse_init_in", body))
                elif op == _CUSE_INIT and self.init is None:
                    self.init = ex
            return ex
        # daemon -> kernel
        if len(data) < OUT_HEADER_SIZE:
            return _exchange(record, (), None, neg)
        oh: tuple[Any, ...] = _new_tuple(OutHeader, self._out(data))
        length, error, unique = h = oh
        if unique == 0:
            if error == _RESEND and length == orig_len:
                self._resend()
            return _exchange(record, h, None, neg)
        if length != orig_len or error > 0 or error <= ERRNO_FLOOR:
            # refused before the kernel looks the id up (W3, W5)
            return _exchange(record, h, None, neg)
        key = unique & _MASK
        if channel:
            key |= channel << 64
        if unique & FUSE_INT_REQ_BIT:
            ex = _exchange(record, h, _INTERRUPT, neg, self.outstanding.get(key))
            ex.interrupt = self.interrupts.pop(key, None)
            return ex
        req = self.outstanding.pop(key, None)
        if req is None:
            return _exchange(record, h, None, neg)
        if self.interrupts:
            self.interrupts.pop(key, None)
        ex = _exchange(record, h, req.opcode, neg, req)
        if req is self.init and req.opcode == _INIT:
            payload = orig_len - OUT_HEADER_SIZE
            if error or payload > INIT_OUT_MAX:
                self.negotiated = neg.with_init_reply({}, error or -EIO)
            else:
                self.negotiated = neg.with_init_reply(
                    self._padded("fuse_init_out", data[OUT_HEADER_SIZE:])
                )
        return ex

    def _padded(self, name: str, raw: bytes) -> dict[str, Any]:
        dec = flat(self._order)[name]
        return dict(dec.unpack_from(raw[: dec.size].ljust(dec.size, b"\0")))

    def _resend(self) -> None:
        resent = self.resent
        for key, ex in self.outstanding.items():
            resent[key] = ex
            if len(resent) > 4096:
                del resent[next(iter(resent))]
        self.outstanding.clear()
        self.interrupts.clear()
