"""The two tests reduce asks: the tracker (a rule and its culprit) and a replay (a
difference's opcode and field), against fakefs on a socket (no mount needed)."""

from __future__ import annotations

import sys

import pytest

from fusetrace.capture import CaptureReader
from fusetrace.frame import Frame
from fusetrace.protocol.abi import Opcode
from fusetrace.reduce.oracle import DifferenceOracle, RuleOracle, replay_differences
from fusetrace.tracker import Culprit
from tests.reduce.session import Session
from tests.replay.kernel import FAKEFS, MOUNTPOINT, record_fakefs_session


@pytest.fixture(scope="module")
def fake_recording(tmp_path_factory: pytest.TempPathFactory) -> list[Frame]:
    path = tmp_path_factory.mktemp("rec") / "fake.pcapng"
    record_fakefs_session(str(path))
    with open(path, "rb") as f:
        return list(CaptureReader(f))


def fakefs(*flags: str) -> tuple[str, ...]:
    return (sys.executable, FAKEFS, *flags, "{}")


def test_replay_differences_as_keys(fake_recording: list[Frame]) -> None:
    same = replay_differences(fake_recording, fakefs(), mountpoint=MOUNTPOINT)
    assert same.differences == () and same.stopped == ""
    changed = replay_differences(fake_recording, fakefs("--change"), mountpoint=MOUNTPOINT)
    assert changed.differences
    frame, opcode, field = changed.differences[0]
    assert (opcode, field) == ("READ", "data")
    assert fake_recording[frame].direction.name == "INBOUND"


def test_difference_oracle(fake_recording: list[Frame]) -> None:
    oracle = DifferenceOracle(fakefs("--change"), "READ", "data", MOUNTPOINT, sys.byteorder)
    assert oracle(fake_recording)
    assert not DifferenceOracle(fakefs(), "READ", "data", MOUNTPOINT, sys.byteorder)(fake_recording)
    assert not DifferenceOracle(fakefs("--change"), "READ", "size", MOUNTPOINT)(fake_recording)
    # not a session (no INIT): fails the test, does not raise
    assert not oracle(fake_recording[2:])


def test_rule_oracle_wants_the_rule_and_the_culprit() -> None:
    s = Session()
    s.init()
    i = s.call(Opcode.GETATTR, {}, 1, error=-2)
    s.reply_again(Opcode.GETATTR, s.unique, -2)  # a second reply: FT102, the daemon's fault
    assert RuleOracle("FT102", Culprit.DAEMON)(s.records)
    assert not RuleOracle("FT102", Culprit.KERNEL)(s.records)
    assert not RuleOracle("FT102", Culprit.DAEMON)(s.records[: i + 2])
