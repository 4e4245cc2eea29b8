"""Findings: protocol violations as data, never exceptions (style.md §7).

A :class:`Finding` names the rule it breaks (``FT203``), how bad it is, which side is at fault
and the frame that shows it. The tracker keeps going after a finding.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Severity(enum.IntEnum):
    """How bad a finding is. Ordered: ``--fail-on warning`` fails on warnings and errors."""

    INFO = 0
    WARNING = 1
    ERROR = 2

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        return cls[text.upper()]


class Culprit(enum.Enum):
    """The side a finding blames."""

    #: the daemon wrote something the kernel rejects or misreads
    DAEMON = "daemon"
    #: the kernel sent something its own rules do not allow (or our model of it is wrong)
    KERNEL = "kernel"
    #: the capture itself is damaged or incomplete
    CAPTURE = "capture"


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule broken at one frame.

    ``frame`` is the 0-based index of the frame in packet order (``None`` for end-of-capture
    findings that belong to no frame); ``related`` lists other frames that explain it (the
    request a reply answers, the first reply of a duplicate, ...).
    """

    rule: str
    severity: Severity
    culprit: Culprit
    frame: int | None
    message: str
    unique: int | None = None
    opcode: str | None = None
    related: tuple[int, ...] = field(default=())

    @property
    def number(self) -> int | None:
        """The frame as Wireshark numbers it (``frame.number``, from 1); None at the end."""
        return None if self.frame is None else self.frame + 1

    def describe(self) -> str:
        """One line: ``FT102 error [daemon] frame 5 GETATTR unique=4: message``.

        Frames are numbered from 1 as in Wireshark, ids in decimal as everywhere else.
        """
        where = "end of capture" if self.frame is None else f"frame {self.frame + 1}"
        op = f" {self.opcode}" if self.opcode else ""
        uq = "" if self.unique is None else f" unique={self.unique}"
        return (
            f"{self.rule} {self.severity.label} [{self.culprit.value}] {where}{op}{uq}: "
            f"{self.message}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity.label,
            "culprit": self.culprit.value,
            "frame": self.number,
            "unique": self.unique,
            "opcode": self.opcode,
            "message": self.message,
            "related": [r + 1 for r in self.related],
        }
