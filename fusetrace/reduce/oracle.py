"""The tests ``fusetrace reduce`` asks of a candidate capture.

:func:`replay_differences` is the one place that calls the replay package: replay these
records against this daemon command, return the differences as (frame, opcode, field) keys.
:class:`RuleOracle` asks the tracker, :class:`DifferenceOracle` asks a replay. Both are plain
picklable objects, so candidates can be tested in worker processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fusetrace.errors import CaptureError
from fusetrace.frame import Frame
from fusetrace.tracker import Culprit, Finding, Tracker

#: a difference: (0-based frame index in the replayed records, opcode name, field)
DiffKey = tuple[int, str, str]


@dataclass(frozen=True)
class ReplayOutcome:
    differences: tuple[DiffKey, ...]
    #: "" when the replay ran to its end, else why it stopped
    stopped: str = ""


def replay_differences(
    records: Sequence[Frame],
    argv: Sequence[str],
    *,
    mountpoint: str | None = None,
    byte_order: str = "little",
    timeout_s: float = 10.0,
) -> ReplayOutcome:
    """Replay ``records`` (a whole session, INIT first) against a fresh daemon started with
    ``argv`` and return the differences (default comparison policy)."""
    from fusetrace.replay.codec import ProtocolCodec
    from fusetrace.replay.driver import run
    from fusetrace.replay.engine import Outcome, ReplayEngine, ReplayOptions

    options = ReplayOptions(timeout_ns=int(timeout_s * 1e9))
    engine = ReplayEngine(records, ProtocolCodec(byte_order), options)
    result, _live = run(engine, list(argv), mountpoint=mountpoint, handoff="auto")
    keys = tuple((d.index, d.opcode, d.field) for d in result.differences)
    stopped = "" if result.outcome is Outcome.COMPLETED else result.reason
    return ReplayOutcome(keys, stopped)


def findings(records: Sequence[Frame], byte_order: str = "little") -> list[Finding]:
    """Everything the tracker finds in ``records``."""
    t = Tracker(byte_order=byte_order)
    out: list[Finding] = []
    for r in records:
        out.extend(t.feed(r))
    out.extend(t.finish())
    return out


@dataclass(frozen=True)
class RuleOracle:
    """Passes when the tracker still raises ``rule`` blaming ``culprit``."""

    rule: str
    culprit: Culprit
    byte_order: str = "little"

    def __call__(self, records: Sequence[Frame]) -> bool:
        return any(
            f.rule == self.rule and f.culprit is self.culprit
            for f in findings(records, self.byte_order)
        )


@dataclass(frozen=True)
class DifferenceOracle:
    """Passes when replaying against ``argv`` still shows a difference in ``opcode``'s
    ``field``."""

    argv: tuple[str, ...]
    opcode: str
    field: str
    mountpoint: str | None = None
    byte_order: str = "little"
    timeout_s: float = 10.0

    def __call__(self, records: Sequence[Frame]) -> bool:
        try:
            out = replay_differences(
                records,
                self.argv,
                mountpoint=self.mountpoint,
                byte_order=self.byte_order,
                timeout_s=self.timeout_s,
            )
        except CaptureError:
            return False
        return any(op == self.opcode and f == self.field for _, op, f in out.differences)
