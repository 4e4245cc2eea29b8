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

    def feed(self, record: Record) -> DecodedFrame:
        neg = self.negotiated
        orig = record.orig_len if record.orig_len > len(record.data) else None
        if record.direction is Direction.INBOUND:
            try:
                d = decode_request(record.data, neg, engine=self.engine, orig_len=orig)
            except DecodeError as e:
                return DecodedFrame(record, None, error=str(e))
            frame = DecodedFrame(record, d)
            op = d.opcode
            if op not in NO_REPLY_OPS:
                self.outstanding[(record.channel, d.header.unique)] = frame
            if op == Opcode.INIT and not d.problems:
                self.negotiated = neg.with_init_request(d.body)
            return frame
        # daemon -> kernel
        try:
            unique = int.from_bytes(record.data[8:16], "little" if neg.order == "<" else "big")
            if unique == 0:
                d = decode_outbound(record.data, None, neg, engine=self.engine, orig_len=orig)
                return DecodedFrame(record, d)
            req = self.outstanding.pop((record.channel, unique), None)
            if req is None or req.decoded is None:
                d = decode_reply(record.data, None, neg, engine=self.engine, orig_len=orig)
                return DecodedFrame(record, d)
            rd = req.decoded
            d = decode_reply(
                record.data, rd.opcode, neg, request_body=rd.body, engine=self.engine,
                orig_len=orig,
            )  # fmt: skip
        except DecodeError as e:
            return DecodedFrame(record, None, error=str(e))
        if not unique & FUSE_INT_REQ_BIT:
            # a pending INTERRUPT for this request will not be answered any more usefully
            self.outstanding.pop((record.channel, unique | FUSE_INT_REQ_BIT), None)
        if rd.opcode == Opcode.INIT and d.kind == "reply":
            self.negotiated = neg.with_init_reply(d.body, d.error or 0)
        return DecodedFrame(record, d, req, record.t_ns - req.record.t_ns)
