"""Decoding a whole capture: pairing replies with requests, learning the INIT pair.

:class:`FrameDecoder` is fed :class:`fusetrace.record.Record` in capture order and gives one
:class:`DecodedFrame` per record. It keeps only the requests still waiting for a reply
(FORGET, BATCH_FORGET and NOTIFY_REPLY never are), so memory does not grow with the capture.
"""

from __future__ import annotations

from dataclasses import dataclass

from fusetrace.errors import DecodeError
from fusetrace.protocol.abi import FUSE_INT_REQ_BIT, Opcode
from fusetrace.protocol.decode import (
    Decoded,
    Engine,
    decode_outbound,
    decode_reply,
    decode_request,
)
from fusetrace.protocol.registry import NO_REPLY_OPS
from fusetrace.protocol.session import Negotiated
from fusetrace.record import Direction, Record


@dataclass(slots=True)
class DecodedFrame:
    """A record and what it decodes to.

    ``decoded`` is None only when not even the header could be read (``error`` says why).
    For a reply, ``request`` is the frame of the request it answers (paired by channel and
    exact unique; an interrupt reply pairs with its INTERRUPT) and ``latency_ns`` the time
    between them.
    """

    record: Record
    decoded: Decoded | None
    request: DecodedFrame | None = None
    latency_ns: int | None = None
    error: str | None = None

    @property
    def index(self) -> int:
        return self.record.index


class FrameDecoder:
    """Stateful decoder over one capture."""

    def __init__(
        self,
        byte_order: str = "little",
        *,
        engine: Engine = "fast",
        negotiated: Negotiated | None = None,
    ) -> None:
        self.negotiated = negotiated or Negotiated.default(byte_order)
        self.engine: Engine = engine
        #: (channel, unique) -> request frame still waiting for its reply
        self.outstanding: dict[tuple[int, int], DecodedFrame] = {}
        self._interrupts: set[tuple[int, int]] = set()

    def feed(self, record: Record) -> DecodedFrame:
        neg = self.negotiated
        data = record.data
        orig = record.orig_len if record.orig_len > len(data) else None
        if record.direction is _INBOUND:
            try:
                d = decode_request(data, neg, engine=self.engine, orig_len=orig)
            except DecodeError as e:
                return DecodedFrame(record, None, error=str(e))
            frame = DecodedFrame(record, d)
            op = d.opcode
            if op not in NO_REPLY_OPS:
                key = (record.channel, d.header.unique)
                self.outstanding[key] = frame
                if op == _INTERRUPT:
                    self._interrupts.add(key)
                elif op == _INIT and not d.problems:
                    self.negotiated = neg.with_init_request(d.body)
            return frame
        # daemon -> kernel
        try:
            unique = int.from_bytes(data[8:16], neg.byte_order)  # type: ignore[arg-type]
            if unique == 0:
                d = decode_outbound(data, None, neg, engine=self.engine, orig_len=orig)
                return DecodedFrame(record, d)
            key = (record.channel, unique)
            req = self.outstanding.pop(key, None)
            if req is None or req.decoded is None:
                d = decode_reply(data, None, neg, engine=self.engine, orig_len=orig)
                return DecodedFrame(record, d)
            rd = req.decoded
            d = decode_reply(data, rd.opcode, neg, request_body=rd.body, engine=self.engine,
                             orig_len=orig)  # fmt: skip
        except DecodeError as e:
            return DecodedFrame(record, None, error=str(e))
        if self._interrupts:
            # the reply ends the request; an INTERRUPT still waiting for it is over too
            self._interrupts.discard(key)
            if not unique & FUSE_INT_REQ_BIT:
                ikey = (record.channel, unique | FUSE_INT_REQ_BIT)
                if ikey in self._interrupts:
                    self._interrupts.discard(ikey)
                    self.outstanding.pop(ikey, None)
        if rd.opcode == _INIT and d.kind == "reply":
            self.negotiated = neg.with_init_reply(d.body, d.error or 0)
        return DecodedFrame(record, d, req, record.t_ns - req.record.t_ns)


_INBOUND = Direction.INBOUND
_INIT = int(Opcode.INIT)
_INTERRUPT = int(Opcode.INTERRUPT)
