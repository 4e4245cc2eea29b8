"""The shipped frame factories: records, playbooks and raw-frame fixtures."""

from __future__ import annotations

from pathlib import Path

from fusetrace.frame import Direction
from fusetrace.protocol.abi import Opcode
from fusetrace.testing import Play, all_fixtures, entry, lookup, record

FRAMES = Path(__file__).resolve().parent / "data" / "frames"


def test_record_defaults() -> None:
    r = record(3, Direction.INBOUND, b"x" * 40, orig=64)
    assert (r.t_ns, r.orig_len, r.truncated, r.number) == (3000, 64, True, 4)


def test_a_playbook_drives_the_tracker() -> None:
    p = Play.session()
    u = p.req(Opcode.LOOKUP, {"name": "a"}, nodeid=1)
    p.rep(Opcode.LOOKUP, entry(5), unique=u)
    p.rep(Opcode.LOOKUP, entry(5), unique=u)
    assert p.codes == {"FT102"}
    assert p.records[0].index == 0 and len(p.records) == p.index


def test_fixtures_load_with_their_session_and_expectations() -> None:
    fixtures = all_fixtures(FRAMES)
    assert len(fixtures) > 50
    fx = next(f for f in fixtures if f.stem == "lookup-request")
    assert fx.kind == "request" and fx.op == Opcode.LOOKUP and fx.data
    from fusetrace.protocol.decode import decode_request

    d = decode_request(fx.data, fx.negotiated)
    for path, want in fx.expect.items():
        assert lookup(d, path) == want
