"""Per-opcode statistics over a stream of frame headers, in bounded memory.

:class:`Aggregate` is fed either whole frames (:meth:`Aggregate.feed`, a
:class:`~fusetrace.frame.Frame`: only its header is read, plus the INIT pair's bodies) or
bare events (:meth:`Aggregate.request` and :meth:`Aggregate.reply`, what the kernel's
``fuse_request_send`` / ``fuse_request_end`` tracepoints give). It pairs replies with
requests by (channel, unique) and keeps, per opcode: requests, replies, errors by errno,
bytes each way, requests in flight and a latency histogram; for the whole trace: a
:class:`Timeline` of time buckets (requests and bytes per opcode, the most requests in
flight) whose bucket width doubles whenever there would be more than ``max_buckets``.

Latencies are kept in a log-linear :class:`Histogram` (16 steps per power of two: a
percentile is exact below 32 ns and within 1/16 of the true value above), so a week-long
``top`` uses the same memory as a one-second one.

Pure: no clock, no I/O. Times are the frames' own nanosecond timestamps.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from fusetrace.errors import DecodeError
from fusetrace.frame import Direction, Frame
from fusetrace.protocol.abi import FUSE_INT_REQ_BIT, Opcode, notify_name, opcode_name
from fusetrace.protocol.decode import decode_reply, decode_request
from fusetrace.protocol.header import IN_HEADER_SIZE, OUT_HEADER_SIZE
from fusetrace.protocol.registry import NO_REPLY_OPS
from fusetrace.protocol.session import Negotiated

_SUB_BITS = 4
_SUB = 1 << _SUB_BITS  # steps per power of two
_EXACT = 2 * _SUB  # values below this have a bucket each


def bucket_of(value: int) -> int:
    """The histogram bucket of a non-negative value."""
    if value < _EXACT:
        return max(value, 0)
    shift = value.bit_length() - _SUB_BITS - 1
    return shift * _SUB + (value >> shift)


def bucket_bounds(index: int) -> tuple[int, int]:
    """The smallest and largest value of bucket ``index``."""
    if index < _EXACT:
        return index, index
    shift = index // _SUB - 1
    mantissa = index - shift * _SUB
    return mantissa << shift, ((mantissa + 1) << shift) - 1


class Histogram:
    """A log-linear histogram of non-negative integers (nanoseconds here)."""

    __slots__ = ("buckets", "count", "max", "min", "total")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0
        self.min: int | None = None
        self.max: int | None = None

    def add(self, value: int) -> None:
        b = bucket_of(value)
        self.buckets[b] = self.buckets.get(b, 0) + 1
        self.count += 1
        self.total += value
        if self.min is None or value < self.min:
            self.min = value
        if self.max is None or value > self.max:
            self.max = value

    def merge(self, other: Histogram) -> None:
        for b, n in other.buckets.items():
            self.buckets[b] = self.buckets.get(b, 0) + n
        self.count += other.count
        self.total += other.total
        for v in (other.min, other.max):
            if v is not None:
                self.min = v if self.min is None else min(self.min, v)
                self.max = v if self.max is None else max(self.max, v)

    def percentile(self, q: float) -> int | None:
        """The value at quantile ``q`` (0..1): the middle of its bucket, clamped to the
        smallest and largest value seen; None when empty."""
        if not self.count:
            return None
        assert self.min is not None and self.max is not None
        rank = min(self.count - 1, max(0, round(q * (self.count - 1))))
        seen = 0
        for b in sorted(self.buckets):
            seen += self.buckets[b]
            if seen > rank:
                lo, hi = bucket_bounds(b)
                return min(max((lo + hi) // 2, self.min), self.max)
        return self.max

    def items(self) -> Iterator[tuple[int, int, int]]:
        """(lowest value, highest value, count) of every non-empty bucket, ascending."""
        for b in sorted(self.buckets):
            lo, hi = bucket_bounds(b)
            yield lo, hi, self.buckets[b]


@dataclass(slots=True)
class OpStats:
    """What one opcode did."""

    name: str
    requests: int = 0
    replies: int = 0
    #: positive errno -> failed replies
    errors: dict[int, int] = field(default_factory=dict)
    #: kernel -> daemon bytes (request lengths), daemon -> kernel bytes (reply lengths)
    bytes_in: int = 0
    bytes_out: int = 0
    in_flight: int = 0
    latency: Histogram = field(default_factory=Histogram)

    @property
    def failed(self) -> int:
        return sum(self.errors.values())


class Timeline:
    """Requests, bytes and in-flight peaks per time bucket, from the first frame on.

    A bucket is ``width`` ns wide; when a frame falls beyond ``max_buckets`` buckets the
    width doubles and neighbouring buckets merge, so the timeline covers the whole trace at
    the finest resolution that fits.
    """

    def __init__(self, width_ns: int = 1_000_000, max_buckets: int = 1000) -> None:
        if width_ns <= 0 or max_buckets < 2:
            raise ValueError("a timeline needs a positive width and at least 2 buckets")
        self.width = width_ns
        self.max_buckets = max_buckets
        self.t0: int | None = None
        #: opcode name -> requests per bucket
        self.requests: dict[str, list[int]] = {}
        #: bytes (both ways) per bucket
        self.bytes: list[int] = []
        #: the most requests in flight at once during each bucket
        self.in_flight: list[int] = []
        self.length = 0
        self._level = 0

    def _index(self, t_ns: int) -> int:
        if self.t0 is None:
            self.t0 = t_ns
        i = max(0, (t_ns - self.t0) // self.width)
        while i >= self.max_buckets:
            self._coarsen()
            i = max(0, (t_ns - self.t0) // self.width)
        if i >= self.length:
            grow = i + 1 - self.length
            for series in self.requests.values():
                series.extend([0] * grow)
            self.bytes.extend([0] * grow)
            # a bucket starts with the requests still in flight from before
            self.in_flight.extend([self._level] * grow)
            self.length = i + 1
        return i

    def _coarsen(self) -> None:
        def pairs(series: list[int], combine: Any) -> list[int]:
            return [combine(series[k : k + 2]) for k in range(0, len(series), 2)]

        for name, series in self.requests.items():
            self.requests[name] = pairs(series, sum)
        self.bytes = pairs(self.bytes, sum)
        self.in_flight = pairs(self.in_flight, max)
        self.length = len(self.bytes)
        self.width *= 2

    def request(self, t_ns: int, name: str, length: int, in_flight: int) -> None:
        """A request at ``t_ns``; ``in_flight``: requests in flight once it is counted."""
        i = self._index(t_ns)
        series = self.requests.get(name)
        if series is None:
            series = self.requests[name] = [0] * self.length
        series[i] += 1
        self.bytes[i] += length
        if in_flight > self.in_flight[i]:
            self.in_flight[i] = in_flight
        self._level = in_flight

    def reply(self, t_ns: int, length: int, in_flight: int) -> None:
        """A reply at ``t_ns``; ``in_flight``: requests still in flight after it."""
        i = self._index(t_ns)
        self.bytes[i] += length
        self._level = in_flight

    def times(self) -> list[float]:
        """The start of each bucket, in seconds since the first frame."""
        return [i * self.width / 1e9 for i in range(self.length)]


@dataclass(slots=True)
class Connection:
    """What the trace says about the connection (for the header of ``top``)."""

    negotiated: Negotiated | None = None
    #: set when the INIT pair was seen (False: the trace began after INIT)
    init_seen: bool = False


class Aggregate:
    """Counts, in-flight requests, latencies, errors and bytes per opcode."""

    def __init__(
        self,
        byte_order: str = "little",
        *,
        bucket_ns: int = 1_000_000,
        max_buckets: int = 1000,
    ) -> None:
        self.byte_order = byte_order
        order = "<" if byte_order == "little" else ">"
        self._in = struct.Struct(order + "IIQ")
        self._out = struct.Struct(order + "IiQ")
        self.ops: dict[str, OpStats] = {}
        #: (channel, unique) -> (opcode name, request time)
        self._pending: dict[tuple[int, int], tuple[str, int]] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.frames = 0
        self.bytes = 0
        #: replies whose request was not seen (the trace began after it, or it was lost)
        self.unpaired = 0
        #: frames too short for a header
        self.short = 0
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.timeline = Timeline(bucket_ns, max_buckets)
        self.connection = Connection()
        self._init_request: dict[str, Any] | None = None

    # ---- input -----------------------------------------------------------------------

    def _stats(self, name: str) -> OpStats:
        st = self.ops.get(name)
        if st is None:
            st = self.ops[name] = OpStats(name)
        return st

    def _clock(self, t_ns: int) -> None:
        if self.first_ns is None:
            self.first_ns = t_ns
        if self.last_ns is None or t_ns > self.last_ns:
            self.last_ns = t_ns

    def request(
        self,
        t_ns: int,
        unique: int,
        opcode: int,
        length: int,
        *,
        channel: int = 0,
        answered: bool | None = None,
    ) -> None:
        """A request the kernel sent. ``answered`` False: one that gets no reply (FORGET,
        BATCH_FORGET); None: decided by the opcode."""
        self._clock(t_ns)
        self.frames += 1
        name = opcode_name(opcode)
        st = self._stats(name)
        st.requests += 1
        st.bytes_in += length
        self.bytes += length
        if answered is None:
            answered = opcode not in NO_REPLY_OPS
        if answered:
            key = (channel, unique)
            old = self._pending.get(key)
            if old is not None:  # the unique came again before its reply: count it once
                self._stats(old[0]).in_flight -= 1
                self.in_flight -= 1
            self._pending[key] = (name, t_ns)
            st.in_flight += 1
            self.in_flight += 1
            if self.in_flight > self.max_in_flight:
                self.max_in_flight = self.in_flight
        self.timeline.request(t_ns, name, length, self.in_flight)

    def reply(
        self, t_ns: int, unique: int, error: int, length: int, *, channel: int = 0
    ) -> str | None:
        """A reply (``error`` 0 or a negative errno); returns its request's opcode name,
        None when the request was not seen."""
        self._clock(t_ns)
        self.frames += 1
        self.bytes += length
        found = self._pending.pop((channel, unique), None)
        if found is None:
            self.unpaired += 1
            self.timeline.reply(t_ns, length, self.in_flight)
            return None
        name, t_req = found
        if not unique & FUSE_INT_REQ_BIT and self._pending:
            # the request is over: an INTERRUPT still waiting for it gets no reply now
            self._drop_interrupt(channel, unique | FUSE_INT_REQ_BIT)
        st = self._stats(name)
        st.replies += 1
        st.bytes_out += length
        st.in_flight -= 1
        self.in_flight -= 1
        if error:
            e = -error if error < 0 else error
            st.errors[e] = st.errors.get(e, 0) + 1
        st.latency.add(max(0, t_ns - t_req))
        self.timeline.reply(t_ns, length, self.in_flight)
        return name

    def _drop_interrupt(self, channel: int, key: int) -> None:
        found = self._pending.get((channel, key))
        if found is not None and found[0] == "INTERRUPT":
            del self._pending[(channel, key)]
            self._stats("INTERRUPT").in_flight -= 1
            self.in_flight -= 1

    def notify(self, t_ns: int, code: int, length: int) -> None:
        """A notification from the daemon (counted as a request of ``NOTIFY_<name>``)."""
        self._clock(t_ns)
        self.frames += 1
        name = "NOTIFY_" + notify_name(code).removeprefix("NOTIFY_")
        st = self._stats(name)
        st.requests += 1
        st.bytes_out += length
        self.bytes += length
        self.timeline.request(t_ns, name, length, self.in_flight)

    def feed(self, record: Frame) -> None:
        """One captured frame (header read here; bodies only for the INIT pair)."""
        data = record.data
        t = record.t_ns
        length = record.orig_len
        if record.direction is Direction.INBOUND:
            if len(data) < 16:
                self.short += 1
                self.frames += 1
                return
            _, opcode, unique = self._in.unpack_from(data)
            self.request(t, unique, opcode, length, channel=record.channel)
            if opcode == _INIT and len(data) >= IN_HEADER_SIZE:
                self._init_request = self._init_body(data, None, record.orig_len)
            return
        if len(data) < OUT_HEADER_SIZE:
            self.short += 1
            self.frames += 1
            return
        _, error, unique = self._out.unpack_from(data)
        if unique == 0:
            self.notify(t, error, length)
            return
        name = self.reply(t, unique, error, length, channel=record.channel)
        if name == "INIT" and not unique & FUSE_INT_REQ_BIT:
            self._init_reply(data, error, record.orig_len)

    def feed_all(self, records: Iterable[Frame]) -> None:
        for r in records:
            self.feed(r)

    # ---- INIT --------------------------------------------------------------------------

    def _init_body(self, data: bytes, op: int | None, orig_len: int) -> dict[str, Any] | None:
        neg = Negotiated.default(self.byte_order)
        orig = orig_len if orig_len > len(data) else None
        try:
            if op is None:
                return decode_request(data, neg, orig_len=orig).body
            return decode_reply(data, op, neg, orig_len=orig).body
        except DecodeError:
            return None

    def _init_reply(self, data: bytes, error: int, orig_len: int) -> None:
        neg = Negotiated.default(self.byte_order)
        if self._init_request:
            neg = neg.with_init_request(self._init_request)
        body = self._init_body(data, _INIT, orig_len) if not error else {}
        if body is None:
            return
        self.connection = Connection(neg.with_init_reply(body, error), True)

    # ---- output ------------------------------------------------------------------------

    @property
    def duration_ns(self) -> int:
        if self.first_ns is None or self.last_ns is None:
            return 0
        return self.last_ns - self.first_ns

    def ordered(self) -> list[OpStats]:
        """Opcodes, busiest first."""
        return sorted(self.ops.values(), key=lambda s: (-s.requests, s.name))

    def errors_by_errno(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for st in self.ops.values():
            for e, n in st.errors.items():
                out[e] = out.get(e, 0) + n
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def rows(self) -> list[dict[str, Any]]:
        """One dict per opcode (the JSON of ``fusetrace top --format json``)."""
        secs = self.duration_ns / 1e9
        rows = []
        for st in self.ordered():
            h = st.latency
            rows.append(
                {
                    "opcode": st.name,
                    "requests": st.requests,
                    "replies": st.replies,
                    "rate": round(st.requests / secs, 3) if secs > 0 else None,
                    "in_flight": st.in_flight,
                    "p50_ns": h.percentile(0.50),
                    "p99_ns": h.percentile(0.99),
                    "max_ns": h.max,
                    "errors": {str(e): n for e, n in sorted(st.errors.items())},
                    "bytes_in": st.bytes_in,
                    "bytes_out": st.bytes_out,
                }
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        neg = self.connection.negotiated
        conn: dict[str, Any] = {"init_seen": self.connection.init_seen}
        if neg is not None:
            conn.update(
                version=f"{neg.major}.{neg.minor}",
                flags=int(neg.flags),
                max_background=neg.max_background,
                congestion_threshold=neg.congestion_threshold,
                max_write=neg.max_write,
            )
        return {
            "frames": self.frames,
            "bytes": self.bytes,
            "duration_ns": self.duration_ns,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "unpaired_replies": self.unpaired,
            "connection": conn,
            "opcodes": self.rows(),
        }


_INIT = int(Opcode.INIT)
