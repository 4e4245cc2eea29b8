"""The frame record every part passes around."""

from __future__ import annotations

from fusetrace.frame import Direction, Frame


def test_numbers_count_from_one_and_cut_frames_are_seen() -> None:
    r = Frame(0, 5, Direction.INBOUND, b"x" * 40, 64)
    assert r.number == 1 and r.truncated and r.result is None
    assert Frame(9, 5, Direction.OUTBOUND, b"y" * 16, 16, result=2).number == 10
    assert Direction.INBOUND.arrow == "K>D" and Direction.OUTBOUND.arrow == "D>K"
