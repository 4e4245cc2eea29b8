"""The whole search: target closure first, then ddmin; parallel tests; the time budget."""

from __future__ import annotations

import sys

from fusetrace.frame import Frame
from fusetrace.protocol.abi import Opcode
from fusetrace.reduce.oracle import DifferenceOracle, RuleOracle
from fusetrace.reduce.runner import Progress, Search
from fusetrace.tracker import Culprit
from tests.reduce.session import Session
from tests.reduce.test_oracle import fake_recording, fakefs  # noqa: F401
from tests.replay.kernel import MOUNTPOINT


def noisy_session(noise: int) -> tuple[Session, int]:
    """INIT, ``noise`` clean lookups and reads, one duplicate reply (FT102) in the middle."""
    s = Session()
    s.init()
    dup = -1
    for k in range(noise):
        s.lookup(1, f"n{k}", 100 + k)
        s.open(100 + k, 500 + k)
        s.read(100 + k, 500 + k, b"x" * 10)
        s.release(100 + k, 500 + k)
        if k == noise // 2:
            s.call(Opcode.GETATTR, {}, 1, error=-2)
            dup = s.reply_again(Opcode.GETATTR, s.unique, -2)
    return s, dup


def test_rule_found_by_the_target_closure_alone() -> None:
    s, dup = noisy_session(40)
    seen: list[Progress] = []
    result = Search(s.records, RuleOracle("FT102", Culprit.DAEMON), on_progress=seen.append).run(
        dup
    )
    assert RuleOracle("FT102", Culprit.DAEMON)(result.records)
    assert len(result.records) <= 5
    assert seen and seen[-1].tests >= 1
    assert result.summary("the FT102 finding").startswith(f"{len(result.records)} frames: INIT")


def test_ddmin_when_the_target_alone_does_not_show_it() -> None:
    """An end-of-capture finding (no frame): ddmin over everything, two workers."""
    s, _ = noisy_session(12)
    # a request left unanswered at the end: an end-of-capture finding
    s.send(Opcode.GETATTR, {}, 1)
    oracle = RuleOracle("FT111", Culprit.DAEMON)  # never answered
    result = Search(s.records, oracle, jobs=2).run(None)
    assert oracle(result.records)
    assert len(result.records) <= 4  # INIT pair + the unanswered request
    assert result.phases == ["ddmin by node", "ddmin by request"]


def test_time_budget_returns_a_passing_result() -> None:
    s, _ = noisy_session(30)
    oracle = RuleOracle("FT102", Culprit.DAEMON)
    result = Search(s.records, oracle, max_time=0.0).run(None)
    assert result.timed_out
    assert oracle(result.records)


def test_difference_reduced_to_the_read(fake_recording: list[Frame]) -> None:  # noqa: F811
    oracle = DifferenceOracle(fakefs("--change"), "READ", "data", MOUNTPOINT, sys.byteorder)
    target = next(
        i
        for i, r in enumerate(fake_recording)
        if r.direction.name == "INBOUND" and int.from_bytes(r.data[4:8], sys.byteorder) == 15
    )
    result = Search(fake_recording, oracle, byte_order=sys.byteorder, jobs=2).run(target)
    assert oracle(result.records)
    assert len(result.records) < len(fake_recording) // 2
    assert "READ (the difference)" in result.summary("the difference")


def test_a_finding_about_a_forget_keeps_that_forget() -> None:
    """FT201 (the kernel forgets more lookups than it holds): the FORGET is the finding and
    stays as recorded; the lookups before it go."""
    s = Session()
    s.init()
    for k in range(5):
        s.lookup(1, f"n{k}", 100 + k)
    s.lookup(1, "x", 7)
    bad = s.forget(7, 3)  # one lookup held, three forgotten
    oracle = RuleOracle("FT201", Culprit.KERNEL)
    assert oracle(s.records)
    result = Search(s.records, oracle).run(bad)
    assert oracle(result.records)
    assert len(result.records) <= 5
    assert result.origin[-1] == bad and result.records[-1].data == s.records[bad].data
