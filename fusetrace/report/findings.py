"""Reporters for ``fusetrace check``: text, JSON and JUnit XML over one result object.

The check command builds a :class:`CheckResult` (one :class:`CaptureResult` per file) and
hands it to the reporter the user picked; reporters only render. Text is a rich table on a
terminal and plain ``file:frame: CODE ...`` lines otherwise (so it greps and diffs well).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import IO, Any, ClassVar

from fusetrace.tracker import FAMILIES, RULES, Finding, Severity, Summary


@dataclass
class CaptureResult:
    """The check of one capture file."""

    file: str
    findings: list[Finding] = field(default_factory=list)
    summary: Summary = field(default_factory=Summary)
    #: the file ended inside a block; checked up to its last whole frame
    truncated: bool = False

    @property
    def frames(self) -> int:
        return self.summary.frames


@dataclass
class CheckResult:
    captures: list[CaptureResult] = field(default_factory=list)
    fail_on: Severity = Severity.ERROR

    def counts(self) -> dict[str, int]:
        out = {s.label: 0 for s in reversed(Severity)}
        for c in self.captures:
            for f in c.findings:
                out[f.severity.label] += 1
        return out

    @property
    def failed(self) -> bool:
        return any(f.severity >= self.fail_on for c in self.captures for f in c.findings)

    def summary(self) -> dict[str, Any]:
        return {
            "captures": len(self.captures),
            "frames": sum(c.frames for c in self.captures),
            "requests": sum(c.summary.requests for c in self.captures),
            "replies": sum(c.summary.replies for c in self.captures),
            "notifications": sum(c.summary.notifications for c in self.captures),
            "findings": self.counts(),
            "fail_on": self.fail_on.label,
            "failed": self.failed,
        }


def _unique(u: int | None) -> str:
    """Ids print in decimal, as in ``fusetrace decode`` and Wireshark's fuse.unique."""
    return "" if u is None else str(u)


def _where(f: Finding) -> str:
    """The frame as Wireshark numbers it (from 1), or ``end`` for end-of-capture findings."""
    return "end" if f.number is None else str(f.number)


class Reporter(ABC):
    name: ClassVar[str]

    @abstractmethod
    def render(self, result: CheckResult, out: IO[str]) -> None: ...


class TextReporter(Reporter):
    """One line per finding, then a summary. ``rich`` is used only when ``console`` is given."""

    name = "text"

    def __init__(self, console: Any = None) -> None:
        self.console = console

    def render(self, result: CheckResult, out: IO[str]) -> None:
        if self.console is not None:
            self._rich(result)
            return
        for c in result.captures:
            for f in c.findings:
                where = _where(f)
                op = f" {f.opcode}" if f.opcode else ""
                uq = f" unique={_unique(f.unique)}" if f.unique is not None else ""
                out.write(
                    f"{c.file}:{where}: {f.rule} {f.severity.label} [{f.culprit.value}]"
                    f"{op}{uq}: {f.message}\n"
                )
        for line in self._summary_lines(result):
            out.write(line + "\n")

    def _summary_lines(self, result: CheckResult) -> list[str]:
        lines = []
        for c in result.captures:
            s = c.summary
            n = {k: v for k, v in _counts(c.findings).items() if v}
            found = ", ".join(f"{v} {k}{'s' if v != 1 else ''}" for k, v in n.items()) or (
                "no findings"
            )
            cut = " (capture cut short)" if c.truncated else ""
            lines.append(
                f"{c.file}: {s.frames} frames, {s.requests} requests, {s.replies} replies, "
                f"{s.notifications} notifications: {found}{cut}; open at end: "
                f"{s.outstanding} requests, {s.nodeids_held} node ids, "
                f"{s.handles_open} handles"
            )
        return lines

    def _rich(self, result: CheckResult) -> None:
        from rich.table import Table

        con = self.console
        style = {"error": "bold red", "warning": "yellow", "info": "dim"}
        for c in result.captures:
            if c.findings:
                table = Table(title=c.file, title_justify="left", expand=False)
                for col in ("frame", "rule", "severity", "culprit", "opcode", "unique", "message"):
                    table.add_column(col, overflow="fold")
                for f in c.findings:
                    table.add_row(
                        _where(f),
                        f.rule,
                        f"[{style[f.severity.label]}]{f.severity.label}[/]",
                        f.culprit.value,
                        f.opcode or "",
                        _unique(f.unique),
                        f.message,
                    )
                con.print(table)
        for line in self._summary_lines(result):
            con.print(line, markup=False, highlight=False)


def _counts(findings: list[Finding]) -> dict[str, int]:
    out = {s.label: 0 for s in reversed(Severity)}
    for f in findings:
        out[f.severity.label] += 1
    return out


class JsonReporter(Reporter):
    """``{"captures": [{"file", "frames", "findings": [...]}, ...], "summary": {...}}``."""

    name = "json"

    def render(self, result: CheckResult, out: IO[str]) -> None:
        doc = {
            "captures": [
                {
                    "file": c.file,
                    "frames": c.frames,
                    "truncated": c.truncated,
                    "summary": c.summary.to_dict(),
                    "findings": [{**f.to_dict(), "title": RULES[f.rule].title} for f in c.findings],
                }
                for c in result.captures
            ],
            "summary": result.summary(),
        }
        json.dump(doc, out, indent=2)
        out.write("\n")


class JunitReporter(Reporter):
    """JUnit XML: a testsuite per capture, a testcase per rule family.

    A family's findings at or above ``--fail-on`` make its testcase fail (one line per
    finding in the failure text); lower ones go to the testcase's system-out, so CI pages
    show them without failing the build.
    """

    name = "junit"

    def render(self, result: CheckResult, out: IO[str]) -> None:
        root = ET.Element("testsuites", name="fusetrace check")
        total = failures = 0
        for c in result.captures:
            suite = ET.SubElement(root, "testsuite", name=c.file)
            s_fail = 0
            for prefix, title in FAMILIES.items():
                case = ET.SubElement(
                    suite,
                    "testcase",
                    classname=f"fusetrace.check.{c.file}",
                    name=f"{prefix}xx {title}",
                )
                mine = [f for f in c.findings if f.rule.startswith(prefix)]
                bad = [f for f in mine if f.severity >= result.fail_on]
                rest = [f for f in mine if f.severity < result.fail_on]
                if bad:
                    s_fail += 1
                    fail = ET.SubElement(
                        case,
                        "failure",
                        message=f"{len(bad)} finding(s): "
                        + ", ".join(sorted({f.rule for f in bad})),
                        type=prefix,
                    )
                    fail.text = "\n".join(_line(f) for f in bad)
                if rest:
                    ET.SubElement(case, "system-out").text = "\n".join(_line(f) for f in rest)
            n = len(FAMILIES)
            suite.set("tests", str(n))
            suite.set("failures", str(s_fail))
            suite.set("errors", "0")
            total += n
            failures += s_fail
        root.set("tests", str(total))
        root.set("failures", str(failures))
        ET.indent(root)
        out.write('<?xml version="1.0" encoding="UTF-8"?>\n')
        out.write(ET.tostring(root, encoding="unicode"))
        out.write("\n")


def _line(f: Finding) -> str:
    return f.describe()


REPORTERS: dict[str, type[Reporter]] = {
    r.name: r for r in (TextReporter, JsonReporter, JunitReporter)
}
