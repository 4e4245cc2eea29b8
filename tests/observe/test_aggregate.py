"""The aggregate behind top and report: counts, pairing, latency, time buckets."""

from __future__ import annotations

import random
from pathlib import Path

from fusetrace.capture.files import open_capture
from fusetrace.observe.aggregate import Aggregate, Histogram, Timeline, bucket_bounds, bucket_of
from fusetrace.protocol.stream import FrameDecoder
from fusetrace.report.frames import Stats

CAPTURES = Path(__file__).resolve().parent.parent.parent / "captures"


def test_buckets_cover_every_value_once() -> None:
    prev_hi = -1
    for index in range(0, 16 * 40):
        lo, hi = bucket_bounds(index)
        assert lo == prev_hi + 1, index
        assert bucket_of(lo) == index and bucket_of(hi) == index
        prev_hi = hi


def test_histogram_percentiles_are_within_a_sixteenth() -> None:
    rng = random.Random(7)
    values = sorted(int(rng.lognormvariate(10, 2)) for _ in range(20_000))
    h = Histogram()
    for v in values:
        h.add(v)
    for q in (0.5, 0.9, 0.99):
        exact = values[round(q * (len(values) - 1))]
        got = h.percentile(q)
        assert got is not None
        assert abs(got - exact) <= exact / 16 + 1, (q, got, exact)
    assert h.max == values[-1] and h.min == values[0] and h.count == len(values)


def test_pairs_replies_and_counts_in_flight_and_errors() -> None:
    agg = Aggregate()
    agg.request(1_000, 2, 1, 50)  # LOOKUP
    agg.request(2_000, 4, 15, 80)  # READ
    agg.request(2_500, 6, 2, 48)  # FORGET: no reply
    assert agg.in_flight == 2
    assert agg.reply(5_000, 2, -2, 16) == "LOOKUP"
    assert agg.reply(9_000, 4, 0, 4096 + 16) == "READ"
    assert agg.reply(9_500, 99, 0, 16) is None
    rows = {r["opcode"]: r for r in agg.rows()}
    assert rows["LOOKUP"]["errors"] == {"2": 1}
    assert rows["LOOKUP"]["p50_ns"] == 4_000
    assert rows["READ"]["p50_ns"] == 7_000 and rows["READ"]["bytes_out"] == 4112
    assert rows["FORGET"]["replies"] == 0 and rows["FORGET"]["in_flight"] == 0
    assert agg.in_flight == 0 and agg.max_in_flight == 2 and agg.unpaired == 1


def test_an_interrupt_ends_with_the_request_it_interrupts() -> None:
    agg = Aggregate()
    agg.request(1_000, 8, 15, 80)  # READ
    agg.request(2_000, 9, 36, 48)  # INTERRUPT of unique 8
    assert agg.in_flight == 2
    agg.reply(3_000, 8, -4, 16)  # READ ends with EINTR; the INTERRUPT gets no reply
    assert agg.in_flight == 0
    rows = {r["opcode"]: r for r in agg.rows()}
    assert rows["INTERRUPT"]["in_flight"] == 0 and rows["INTERRUPT"]["replies"] == 0
    assert rows["READ"]["errors"] == {"4": 1}


def test_timeline_coarsens_and_keeps_totals() -> None:
    tl = Timeline(width_ns=10, max_buckets=8)
    for t in range(0, 1000, 5):
        tl.request(t, "READ", 1, 1)
    assert tl.length <= 8
    assert sum(tl.requests["READ"]) == 200
    assert tl.width >= 1000 / 8


def test_counts_agree_with_decode_stats_on_a_real_capture() -> None:
    path = str(CAPTURES / "fuse-overlayfs.pcapng")
    with open_capture(path) as reader:
        agg = Aggregate(reader.info.byte_order)
        stats = Stats()
        decoder = FrameDecoder(reader.info.byte_order)
        for rec in reader:
            agg.feed(rec)
            stats.feed(decoder.feed(rec))
    rows = {r["opcode"]: r for r in agg.rows()}
    for row in stats.rows():
        mine = rows[row["opcode"]]
        assert mine["requests"] == row["count"], row["opcode"]
        assert mine["replies"] == row["replies"], row["opcode"]
        assert sum(mine["errors"].values()) == row["errors"], row["opcode"]
        if row["max_ns"] is not None:
            assert mine["max_ns"] == row["max_ns"]
            assert abs(mine["p50_ns"] - row["p50_ns"]) <= row["p50_ns"] / 16 + 1
    assert agg.frames == stats.frames
    neg = agg.connection.negotiated
    assert neg is not None and agg.connection.init_seen
    assert neg.max_background > 0 and neg.congestion_threshold > 0
    # the timeline holds every request once
    total = sum(sum(s) for s in agg.timeline.requests.values())
    assert total == sum(r["requests"] for r in agg.rows())
