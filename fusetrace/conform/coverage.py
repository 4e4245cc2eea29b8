"""Opcode coverage: which opcodes the kernel sent in a conformance run, and why the others
could not be sent on this kind of mount and connection.

Every opcode of the registry is marked *sent* (at least one request in the capture, whatever
the daemon answered: an ENOSYS reply still means the kernel sent it), *not reachable* (this
kernel cannot send it on this connection: the reason comes from the facts in
:data:`fusetrace.protocol.registry.REACH`, the connection's INIT exchange and mount options),
or *not sent* (it could have been sent, and the workload did not make the kernel send it).
Pure: the facts come in as data.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fusetrace.conform.steps import CATALOGUE, Status, StepResult
from fusetrace.protocol.abi import FUSE_KERNEL_MINOR_VERSION, InitFlag, Opcode
from fusetrace.protocol.registry import OPS, MountKind, Reach, reach

_NO_FLAGS = InitFlag(0)


class Coverage(enum.Enum):
    SENT = "sent"
    NOT_SENT = "not sent"
    UNREACHABLE = "not reachable"


@dataclass(frozen=True)
class ConnectionFacts:
    """What decides which opcodes the kernel can send on one connection."""

    kind: MountKind = MountKind.FUSE
    #: the minor of the kernel's INIT request
    kernel_minor: int = FUSE_KERNEL_MINOR_VERSION
    #: the minor of the daemon's INIT reply; None when the capture holds none
    daemon_minor: int | None = None
    #: the flags the daemon's INIT reply grants
    granted: InitFlag = _NO_FLAGS
    #: mount options (``default_permissions``, ...)
    options: frozenset[str] = frozenset()
    #: notification codes the daemon sent
    notifications: frozenset[int] = frozenset()
    #: opcodes the daemon answered with ENOSYS at least once
    enosys: frozenset[int] = frozenset()

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any] | None, **kw: Any) -> ConnectionFacts:
        """Kind and options from a capture's metadata (``mount_type``, ``mount_options``)."""
        meta = meta or {}
        fstype = str(meta.get("mount_type") or "fuse")
        kind = MountKind.FUSEBLK if fstype.startswith("fuseblk") else MountKind.FUSE
        options: set[str] = set()
        for group in meta.get("mount_options") or []:
            options.update(o.partition("=")[0] for o in str(group).split(",") if o)
        return cls(kind=kind, options=frozenset(options), **kw)


def _kinds(kinds: frozenset[MountKind]) -> str:
    order = [k for k in MountKind if k in kinds]
    return " and ".join(k.value for k in order)


def _flags(flags: InitFlag) -> str:
    return " or ".join(f.name or "" for f in InitFlag if f & flags)


def unreachable(opcode: Opcode, facts: ConnectionFacts) -> str | None:
    """Why the kernel cannot send ``opcode`` on this connection, or None if it can."""
    spec, r = OPS[opcode], reach(opcode)
    if facts.kind not in r.kinds:
        return f"{_kinds(r.kinds)} only" + (f": {r.note}" if r.note else "")
    if spec.since > facts.kernel_minor:
        return f"the kernel speaks 7.{facts.kernel_minor}; {opcode.name} came with 7.{spec.since}"
    if facts.daemon_minor is not None:
        if r.daemon_minor > facts.daemon_minor:
            return (
                f"the daemon speaks 7.{facts.daemon_minor}; the kernel sends {opcode.name} "
                f"from 7.{r.daemon_minor}"
            )
        if r.needs_flags and not facts.granted & r.needs_flags:
            return f"the daemon does not grant {_flags(r.needs_flags)}"
        if facts.granted & r.stopped_by_flags and not facts.granted & r.unless_flags:
            how = f" without {_flags(r.unless_flags)}" if r.unless_flags else ""
            return f"the daemon grants {_flags(facts.granted & r.stopped_by_flags)}{how}"
    if r.stopped_by_option and r.stopped_by_option in facts.options:
        return f"mounted with {r.stopped_by_option}"
    if r.fallback_for is not None:
        first = r.fallback_for
        if OPS[first].since <= facts.kernel_minor and first not in facts.enosys:
            return f"sent only after {first.name} is refused with ENOSYS; this daemon never was"
    if r.answers is not None and r.answers not in facts.notifications:
        return f"sent only in answer to a {r.answers.name} notification; the daemon sent none"
    return None


@dataclass
class OpCoverage:
    opcode: Opcode
    status: Coverage
    requests: int = 0
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "opcode": self.opcode.name,
            "code": int(self.opcode),
            "status": self.status.value,
            "requests": self.requests,
            "reason": self.reason,
        }


def _not_sent_reason(opcode: Opcode, results: Iterable[StepResult]) -> str:
    """Which steps were meant to make the kernel send it, and what became of them."""
    meant = [r for r in results if opcode in r.ops]
    if not meant:
        return "no step of the workload asks for it"
    parts = []
    for r in meant:
        what = r.status.value
        if r.status is not Status.SUPPORTED and r.detail:
            what += f": {r.detail}"
        parts.append(f"{r.name} ({what})")
    return "asked for by " + ", ".join(parts)


def coverage(
    counts: Mapping[str, int], facts: ConnectionFacts, results: Iterable[StepResult] = ()
) -> list[OpCoverage]:
    """Every opcode of the registry, in opcode order: sent, not reachable, or not sent.

    ``counts`` maps opcode names to the number of requests in the capture.
    """
    results = list(results)
    out = []
    for opcode in sorted(OPS):
        op = Opcode(opcode)
        n = counts.get(op.name, 0)
        if n:
            out.append(OpCoverage(op, Coverage.SENT, n))
            continue
        why = unreachable(op, facts)
        if why is not None:
            out.append(OpCoverage(op, Coverage.UNREACHABLE, 0, why))
        else:
            out.append(OpCoverage(op, Coverage.NOT_SENT, 0, _not_sent_reason(op, results)))
    return out


def counts(entries: Iterable[OpCoverage]) -> dict[str, int]:
    out = {c.value: 0 for c in Coverage}
    for e in entries:
        out[e.status.value] += 1
    return out


# ---- the table of the README and the man page -----------------------------------------------


@dataclass(frozen=True)
class TableRow:
    opcode: Opcode
    #: the steps meant to make the kernel send it (or how else it comes)
    sent_by: str
    #: what else it takes: the kind of mount, what the daemon must grant
    condition: str = field(default="")


def _condition(opcode: Opcode, r: Reach) -> str:
    parts = []
    if MountKind.FUSE not in r.kinds:
        parts.append(f"{_kinds(r.kinds)} only")
    if r.daemon_minor:
        parts.append(f"daemon minor ≥ {r.daemon_minor}")
    if r.needs_flags:
        parts.append(f"daemon grants {_flags(r.needs_flags)}")
    if r.stopped_by_flags:
        unless = f" without {_flags(r.unless_flags)}" if r.unless_flags else ""
        parts.append(f"not if the daemon grants {_flags(r.stopped_by_flags)}{unless}")
    if r.stopped_by_option:
        parts.append(f"not with {r.stopped_by_option}")
    if r.fallback_for is not None:
        parts.append(f"after {r.fallback_for.name} gets ENOSYS")
    if r.answers is not None:
        parts.append(f"answers a {r.answers.name} notification")
    if OPS[opcode].since >= 34:
        parts.append(f"kernel 7.{OPS[opcode].since}+")
    return "; ".join(parts)


def table() -> list[TableRow]:
    """Every opcode: the conform steps that make the kernel send it, and what else it takes."""
    rows = []
    for opcode in sorted(OPS):
        op = Opcode(opcode)
        r = reach(op)
        steps = [s.name for s in CATALOGUE if op in s.ops]
        if op is Opcode.INIT:
            sent_by = "(the mount)"
        elif steps:
            sent_by = ", ".join(steps)
        elif r.answers is not None:
            sent_by = f"(the daemon's {r.answers.name})"
        else:
            sent_by = "-"
        rows.append(TableRow(op, sent_by, _condition(op, r)))
    return rows


#: the lines around the generated table in README.md and man/fusetrace-conform.1
MARKDOWN_MARKS = (
    "<!-- coverage table: generated by fusetrace.conform.coverage -->",
    "<!-- end -->",
)
ROFF_MARKS = ('.\\" coverage table: generated by fusetrace.conform.coverage', '.\\" end')


def table_markdown() -> str:
    lines = ["| opcode | sent by the steps | only when |", "|---|---|---|"]
    for row in table():
        lines.append(f"| {row.opcode.name} | {row.sent_by} | {row.condition} |")
    return "\n".join(lines) + "\n"


def table_roff() -> str:
    def esc(text: str) -> str:
        return text.replace("\\", "\\e").replace("-", "\\-").replace("≥", "\\(>=")

    lines = [".TS", "l l lx.", "OPCODE\tSTEPS\tONLY WHEN"]
    for row in table():
        cond = f"T{{\n{esc(row.condition)}\nT}}" if row.condition else ""
        lines.append(f"{row.opcode.name}\t{esc(row.sent_by)}\t{cond}")
    lines.append(".TE")
    return "\n".join(lines) + "\n"


def with_table(text: str, marks: tuple[str, str], table_text: str) -> str:
    """``text`` with the lines between the two marks replaced by ``table_text``."""
    start = text.index(marks[0] + "\n") + len(marks[0]) + 1
    end = text.index(marks[1], start)
    return text[:start] + table_text + text[end:]
