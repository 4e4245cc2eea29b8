"""Decoding a whole capture, frame by frame, on the connection model.

:class:`FrameDecoder` is fed :class:`fusetrace.frame.Frame` in capture order and gives one
:class:`DecodedFrame` per record. Pairing and the INIT session come from
:class:`fusetrace.protocol.connection.Connection`, which keeps only the requests still waiting
for a reply, so memory does not grow with the capture.
"""

from __future__ import annotations

from dataclasses import dataclass

from fusetrace.errors import DecodeError
from fusetrace.frame import Direction, Frame
from fusetrace.protocol.connection import NEEDS_REQUEST_BODY, Connection, Exchange
from fusetrace.protocol.decode import (
    Decoded,
    Engine,
    decode_reply,
    decode_request,
    reply_fast,
    request_fast,
)
from fusetrace.protocol.session import Negotiated


@dataclass(slots=True)
class DecodedFrame:
    """A record and what it decodes to.

    ``decoded`` is None only when not even the header could be read (``error`` says why).
    For a reply, ``request`` is the frame of the request it answers (paired by channel and
    unique with bit 0 masked, as the kernel does; an interrupt reply pairs with its
    INTERRUPT) and ``latency_ns`` the time between them.
    """

    record: Frame
    decoded: Decoded | None
    request: DecodedFrame | None = None
    latency_ns: int | None = None
    error: str | None = None

    @property
    def index(self) -> int:
        return self.record.index


_new_object = object.__new__


def _view(
    record: Frame,
    decoded: Decoded | None,
    request: DecodedFrame | None = None,
    latency_ns: int | None = None,
    error: str | None = None,
) -> DecodedFrame:
    """``DecodedFrame(...)`` built without the dataclass's Python-level ``__init__`` (one a
    frame)."""
    f: DecodedFrame = _new_object(DecodedFrame)
    f.record = record
    f.decoded = decoded
    f.request = request
    f.latency_ns = latency_ns
    f.error = error
    return f


class FrameDecoder:
    """Stateful decoder over one capture, on the connection model (:mod:`.connection`).

    The connection reads each header once, pairs replies with requests and learns the
    session from INIT; this class decodes each exchange's body and keeps the
    :class:`DecodedFrame` of each request on it, so a reply can point at its request.
    ``lazy``: leave well-formed bodies unbuilt until they are read (``Decoded.lazy``), for
    a consumer that reads few of them (summary lines, statistics).
    """

    def __init__(
        self,
        byte_order: str = "little",
        *,
        engine: Engine = "fast",
        negotiated: Negotiated | None = None,
        connection: Connection | None = None,
        lazy: bool = False,
    ) -> None:
        self.connection = connection or Connection(byte_order, negotiated)
        self.engine: Engine = engine
        self._fast = engine == "fast"
        #: leave well-formed bodies unbuilt until read (for consumers that read few)
        self.lazy = lazy

    @property
    def negotiated(self) -> Negotiated:
        return self.connection.negotiated

    @property
    def outstanding(self) -> dict[int, DecodedFrame]:
        """Requests (and INTERRUPTs) still waiting for a reply, by connection key."""
        conn = self.connection
        out = {k: ex.view for k, ex in conn.outstanding.items()}
        out.update({~k: ex.view for k, ex in conn.interrupts.items()})
        return out

    def feed(self, record: Frame) -> DecodedFrame:
        return self.frame(self.connection.feed(record))

    def frame(self, ex: Exchange) -> DecodedFrame:
        """The decoded frame of an exchange the connection produced (decode --check feeds
        the connection once and hands each exchange to the decoder and the tracker)."""
        record = ex.record
        h = ex.header
        if h and record.orig_len == len(record.data):
            # the common cases inline (the hot path of decode): a whole request, and a whole
            # reply to a request whose body its shape does not depend on
            if record.direction is _INBOUND:
                d = (
                    request_fast(record.data, h, ex.negotiated, self.lazy)  # type: ignore[arg-type]
                    if self._fast
                    else None
                )
                if d is None:
                    d = decode_request(record.data, ex.negotiated, engine=self.engine, header=h)  # type: ignore[arg-type]
                ex._decoded = d
                ex._engine = self.engine
                frame = ex.view = _view(record, d)
                return frame
            req = ex.request
            if (
                req is not None
                and ex.interrupt is None
                and not h[2] & 1
                and (h[1] or req.opcode not in NEEDS_REQUEST_BODY)  # an error: no body
            ):
                rf = req.view
                d = (
                    reply_fast(record.data, req.opcode, h, ex.negotiated, self.lazy)  # type: ignore[arg-type]
                    if self._fast
                    else None
                )
                if d is None:
                    d = decode_reply(
                        record.data,
                        req.opcode,
                        ex.negotiated,
                        engine=self.engine,
                        header=h,  # type: ignore[arg-type]
                    )
                ex._decoded = d
                ex._engine = self.engine
                if rf is None or rf.decoded is None:
                    frame = ex.view = _view(record, d)
                else:
                    frame = ex.view = _view(record, d, rf, record.t_ns - req.record.t_ns)
                return frame
        try:
            d = ex.decoded(self.engine)
        except DecodeError as e:
            frame = ex.view = _view(record, None, error=str(e))
            return frame
        req = ex.interrupt or ex.request
        if req is None:
            frame = ex.view = _view(record, d)
            return frame
        rf = req.view
        if rf is None or rf.decoded is None:
            frame = ex.view = _view(record, d)
        else:
            frame = ex.view = _view(record, d, rf, record.t_ns - req.record.t_ns)
        return frame


_INBOUND = Direction.INBOUND
