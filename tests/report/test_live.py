"""record --live and --check: header summaries and the tracker fed as frames pass."""

from __future__ import annotations

import io

from fusetrace.frame import Direction
from fusetrace.protocol.abi import Opcode
from fusetrace.protocol.encode import encode_reply, encode_request
from fusetrace.report.live import LiveCheck, LiveView, summary
from fusetrace.testing import record

K, D = Direction.INBOUND, Direction.OUTBOUND


def test_header_summary_names_the_opcode() -> None:
    req = encode_request(Opcode.GETATTR, {}, unique=4, nodeid=1)
    line = summary(record(0, K, req, t=1_000_000_000), 0)
    assert "K>D unique=4 GETATTR nodeid=1" in line
    rep = encode_reply(Opcode.GETATTR, unique=4, error=-2)
    got = summary(record(1, D, rep)._replace(comment="changed"), 0)
    assert "D>K unique=4 error=-2" in got and got.endswith("# changed")


def test_live_check_reports_as_frames_pass() -> None:
    out = io.StringIO()
    check = LiveCheck(out, mount_options=[])
    check.put(record(0, K, encode_request(Opcode.INIT, {"major": 7, "minor": 45}, unique=2)))
    reply = {"major": 7, "minor": 45, "max_write": 4096}
    check.put(record(1, D, encode_reply(Opcode.INIT, reply, unique=2)))
    check.put(record(2, D, encode_reply(Opcode.GETATTR, unique=8, error=-2)))
    assert [(f.rule, f.frame) for f in check.findings] == [("FT101", 2)]
    assert "FT101" in out.getvalue()
    check.finish()


def test_live_view_numbers_frames_as_the_capture_does() -> None:
    """Lines carry the frame's number in the capture (not a count of lines printed), and a
    refused reply says so, as ``fusetrace decode`` prints them."""
    out = io.StringIO()
    view = LiveView(out)
    view.put(record(0, K, encode_request(Opcode.INIT, {"major": 7, "minor": 45}, unique=2)))
    # frames 2..6 were dropped on the way (a slow terminal)
    view.put(record(6, K, encode_request(Opcode.GETATTR, {}, unique=4, nodeid=1)))
    view.put(record(7, D, encode_reply(Opcode.GETATTR, unique=4, error=-2), result=2))
    view.close()
    lines = out.getvalue().splitlines()
    assert [line.split()[0] for line in lines] == ["1", "7", "8"]
    assert "GETATTR" in lines[1] and lines[2].endswith("refused ENOENT")
