"""Quantities as the reports print them."""

from __future__ import annotations

import pytest

from fusetrace.report.units import latency


@pytest.mark.parametrize(
    ("ns", "text", "html"),
    [
        (None, "-", "-"),
        (0, "0.0us", "0.0 µs"),
        (4_249, "4.2us", "4.2 µs"),
        (9_999, "10.0us", "10.0 µs"),
        (10_000, "10us", "10 µs"),
        (420_999, "420us", "420 µs"),
        (9_999_999, "9999us", "9999 µs"),
        (10_000_000, "10.0ms", "10.0 ms"),
        (1_234_567_890, "1234.6ms", "1234.6 ms"),
    ],
)
def test_latency_reads_the_same_in_every_report(ns: int | None, text: str, html: str) -> None:
    assert latency(ns) == text
    assert latency(ns, sep=" ", micro="µs") == html
    assert latency(ns, missing="") == ("" if ns is None else text)
