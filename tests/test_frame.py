"""The frame record every part passes around."""

from __future__ import annotations

from fusetrace.frame import PENDING, RESULT, Direction, Frame, landed


def test_numbers_count_from_one_and_cut_frames_are_seen() -> None:
    r = Frame(0, 5, Direction.INBOUND, b"x" * 40, 64)
    assert r.number == 1 and r.truncated and r.result is None
    assert Frame(9, 5, Direction.OUTBOUND, b"y" * 16, 16, result=2).number == 10
    assert Direction.INBOUND.arrow == "K>D" and Direction.OUTBOUND.arrow == "D>K"


def test_an_in_flight_frame_lands_as_a_frame_of_its_own() -> None:
    buf = bytearray(b"r" * 32)
    pending = [Direction.OUTBOUND, 7, memoryview(buf)[:20], "changed", PENDING]
    frame = landed(pending, 4)
    buf[:] = b"x" * 32  # the receive buffer is reused: the frame keeps its bytes
    assert frame == Frame(4, 7, Direction.OUTBOUND, b"r" * 20, 20, 0, "changed", None)
    assert type(frame.data) is bytes and frame.number == 5
    pending[RESULT] = 2
    assert landed(pending, 4, channel=1).result == 2 and landed(pending, 4, 1).channel == 1
    assert landed((Direction.INBOUND, 1, b"q" * 40, None, None), 0).result is None
