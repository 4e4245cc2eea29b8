"""record --live and --check: header summaries and the tracker fed as frames pass."""

from __future__ import annotations

import io

from fusetrace.frame import Direction
from fusetrace.protocol.abi import Opcode
from fusetrace.protocol.encode import encode_reply, encode_request
from fusetrace.report.live import LiveCheck, summary

K, D = Direction.INBOUND, Direction.OUTBOUND


def test_header_summary_names_the_opcode() -> None:
    req = encode_request(Opcode.GETATTR, {}, unique=4, nodeid=1)
    line = summary((K, 1_000_000_000, req, None), 0)
    assert "K>D unique=4 GETATTR nodeid=1" in line
    rep = encode_reply(Opcode.GETATTR, unique=4, error=-2)
    assert "D>K unique=4 error=-2" in summary((D, 0, rep, "changed"), 0)


def test_live_check_reports_as_frames_pass() -> None:
    out = io.StringIO()
    check = LiveCheck(out, mount_options=[])
    check.put((K, 0, encode_request(Opcode.INIT, {"major": 7, "minor": 45}, unique=2), None))
    reply = {"major": 7, "minor": 45, "max_write": 4096}
    check.put((D, 1, encode_reply(Opcode.INIT, reply, unique=2), None))
    check.put((D, 2, encode_reply(Opcode.GETATTR, unique=8, error=-2), None))
    assert [f.rule for f in check.findings] == ["FT101"]
    assert "FT101" in out.getvalue()
    check.finish()
