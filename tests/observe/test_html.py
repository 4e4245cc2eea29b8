"""The report page: plots of aggregated data only, findings with frame numbers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fusetrace.capture.files import open_capture
from fusetrace.frame import Direction, Frame
from fusetrace.observe.aggregate import Aggregate
from fusetrace.tracker import Tracker

pytest.importorskip("plotly")

from fusetrace.observe.html import ReportInput, render

CAPTURES = Path(__file__).resolve().parent.parent.parent / "captures"


def test_page_is_self_contained_and_lists_findings_from_frame_1() -> None:
    path = str(CAPTURES / "fuse-overlayfs.pcapng")
    with open_capture(path) as reader:
        agg = Aggregate(reader.info.byte_order)
        tracker = Tracker(byte_order=reader.info.byte_order)
        findings = []
        for rec in reader:
            agg.feed(rec)
            findings.extend(tracker.feed(rec))
        findings.extend(tracker.finish())
        page = render(agg, ReportInput("t", path, reader.info.meta, findings))
    assert not re.search(r"<script[^>]+src=", page)
    assert not re.search(r"<link[^>]+href=", page)
    for div in ("plot-latency", "plot-in-flight", "plot-throughput", "plot-errors"):
        assert f'id="{div}"' in page
    framed = [f for f in findings if f.frame is not None]
    if framed:
        f = framed[0]
        assert f"<td>{f.frame + 1}</td><td><a href='#rule-{f.rule}'>" in page
        assert f"id='rule-{f.rule}'" in page


def test_many_frames_make_a_page_of_bounded_size() -> None:
    """Every point is an aggregate: the page of 200,000 request/reply pairs is no larger
    than a few hundred kilobytes of data besides plotly.js."""
    agg = Aggregate()
    for i in range(200_000):
        t = i * 50_000
        req = Frame(
            2 * i,
            t,
            Direction.INBOUND,
            (40).to_bytes(4, "little")
            + (15).to_bytes(4, "little")
            + (2 * i + 2).to_bytes(8, "little")
            + bytes(24),
            40,
        )
        rep = Frame(
            2 * i + 1,
            t + 20_000 + i % 997,
            Direction.OUTBOUND,
            (16).to_bytes(4, "little")
            + (0).to_bytes(4, "little", signed=True)
            + (2 * i + 2).to_bytes(8, "little"),
            16,
        )
        agg.feed(req)
        agg.feed(rep)
    small = Aggregate()
    page = render(agg, ReportInput("t", "x", {}, None))
    empty = render(small, ReportInput("t", "x", {}, None))
    assert agg.frames == 400_000 and agg.timeline.length <= 1000
    assert len(page) - len(empty) < 400_000
