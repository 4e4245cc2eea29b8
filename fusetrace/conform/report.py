"""The conformance report: workload verdicts merged with what the capture shows.

A step's verdict comes from two sides. The system calls say whether it worked
(:mod:`fusetrace.conform.runner`); the capture says which requests the step made the kernel
send and how the daemon answered them. The capture is split into steps by the marker LOOKUPs
the workload makes before each step (``.fusetrace-step-NN-NAME``). A step is *not supported*
when its system call failed with ENOSYS/EOPNOTSUPP/ENOTTY, or when the daemon answered the
step's own opcodes only with such errors — even if the kernel then emulated the call and the
system call succeeded (LSEEK, POLL, COPY_FILE_RANGE fall back in the kernel).

Rendering here is plain text, JSON and JUnit XML; the rich table lives in the CLI.
"""

from __future__ import annotations

import errno as errno_mod
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree as ET

from fusetrace.conform.coverage import ConnectionFacts, Coverage, OpCoverage, coverage
from fusetrace.conform.coverage import counts as coverage_counts
from fusetrace.conform.steps import (
    BY_NAME,
    MARKER_PREFIX,
    UNSUPPORTED_ERRNOS,
    Status,
    StepResult,
    errno_name,
)
from fusetrace.frame import Direction, Frame
from fusetrace.protocol.abi import Opcode
from fusetrace.protocol.session import Negotiated
from fusetrace.protocol.stream import FrameDecoder
from fusetrace.tracker.findings import Finding, Severity
from fusetrace.tracker.rules import FAMILIES

#: section names of the frames that belong to no step
BEFORE = "(mount)"
SETUP = "(setup)"
DISCOVER = "(discover)"


def summarize(
    requests: Iterable[tuple[str, int | None]], steps: Iterable[str] = ()
) -> dict[str, Any]:
    """Summary of a capture from (opcode name, reply errno or None) per request.

    ``errno`` is positive (``2`` for ENOENT), ``0`` for success, ``None`` when the request got
    no reply (FORGET, or the capture ended first).
    """
    counts: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    unanswered: Counter[str] = Counter()
    for name, err in requests:
        counts[name] += 1
        if err is None:
            unanswered[name] += 1
        elif err:
            errors[f"{name} {errno_name(err)}"] += 1
    return {
        "requests": sum(counts.values()),
        "opcodes": dict(sorted(counts.items())),
        "errors": dict(sorted(errors.items())),
        "unanswered": dict(sorted(unanswered.items())),
        "steps": list(steps),
    }


def _opname(opcode: int | None) -> str:
    if opcode is None:
        return "?"
    try:
        return Opcode(opcode).name
    except ValueError:
        return f"OPCODE_{opcode}"


@dataclass
class OpStats:
    """Requests of one opcode in one step, and how they were answered."""

    requests: int = 0
    ok: int = 0
    #: errno name -> count
    errors: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "ok": self.ok, "errors": dict(self.errors)}

    def describe(self) -> str:
        if not self.errors:
            return str(self.requests)
        errs = ", ".join(f"{name} {n}" for name, n in sorted(self.errors.items()))
        return f"{self.requests} ({errs})"


@dataclass
class CaptureAnalysis:
    """What the capture shows, per section (step name, or one of BEFORE/SETUP/DISCOVER)."""

    sections: dict[str, dict[str, OpStats]] = field(default_factory=dict)
    #: (opcode name, errno or None) per request, for :func:`summarize`
    requests: list[tuple[str, int | None]] = field(default_factory=list)
    #: step names in the order their markers appear
    steps_seen: list[str] = field(default_factory=list)
    frames: int = 0
    undecodable: int = 0
    #: the connection's INIT exchange (None: the capture holds no INIT)
    session: Negotiated | None = None
    #: notification codes the daemon sent
    notifications: set[int] = field(default_factory=set)
    #: opcodes the daemon answered with ENOSYS at least once
    enosys: set[int] = field(default_factory=set)
    #: the capture's metadata (mount type and options)
    meta: dict[str, Any] = field(default_factory=dict)

    def ops(self, section: str) -> dict[str, OpStats]:
        return self.sections.get(section, {})

    def counts(self) -> dict[str, int]:
        """Requests per opcode name over the whole capture (marker LOOKUPs excluded)."""
        out: dict[str, int] = {}
        for name, _ in self.requests:
            out[name] = out.get(name, 0) + 1
        return out

    def facts(self) -> ConnectionFacts:
        """What decides which opcodes the kernel could send on the recorded connection."""
        extra: dict[str, Any] = {
            "notifications": frozenset(self.notifications),
            "enosys": frozenset(self.enosys),
        }
        if self.session is not None:
            extra["kernel_minor"] = self.session.kernel_minor
            if self.session.initialized:
                extra["daemon_minor"] = self.session.minor
                extra["granted"] = self.session.flags
        return ConnectionFacts.from_meta(self.meta, **extra)

    def summary(self) -> dict[str, Any]:
        out = summarize(self.requests, self.steps_seen)
        out["frames"] = self.frames
        return out


def _section_of_marker(name: str) -> str | None:
    if not name.startswith(MARKER_PREFIX):
        return None
    rest = name[len(MARKER_PREFIX) :]
    if rest == "setup":
        return SETUP
    if rest == "discover":
        return DISCOVER
    number, _, step = rest.partition("-")
    return step if number.isdigit() and step else None


def analyze_capture(
    records: Iterable[Frame], byte_order: str = "little", meta: dict[str, Any] | None = None
) -> CaptureAnalysis:
    """Split a capture of the workload into sections and count requests and reply errors;
    note the INIT exchange, the notifications and the ENOSYS answers for the coverage."""
    out = CaptureAnalysis(meta=dict(meta or {}))
    decoder = FrameDecoder(byte_order)
    section = BEFORE
    #: (channel, unique) of requests -> (section, index in out.requests); markers excluded
    owner: dict[tuple[int, int], tuple[str, int]] = {}
    for record in records:
        out.frames += 1
        frame = decoder.feed(record)
        d = frame.decoded
        if d is None:
            out.undecodable += 1
            continue
        if d.kind == "notify":
            if d.opcode is not None:
                out.notifications.add(d.opcode)
            continue
        if record.direction is Direction.INBOUND:
            if d.opcode == Opcode.INIT and out.session is None:
                out.session = Negotiated.default(byte_order).with_init_request(d.body)
            name = _opname(d.opcode)
            if d.opcode == Opcode.LOOKUP:
                marker = _section_of_marker(str(d.body.get("name", "")))
                if marker is not None:
                    section = marker
                    if marker not in (SETUP, DISCOVER):
                        out.steps_seen.append(marker)
                    continue
            stats = out.sections.setdefault(section, {}).setdefault(name, OpStats())
            stats.requests += 1
            owner[(record.channel, d.unique)] = (section, len(out.requests))
            out.requests.append((name, None))
            continue
        if d.kind not in ("reply", "interrupt-reply") or frame.request is None:
            continue
        req = frame.request
        if d.opcode == Opcode.INIT and out.session is not None and not out.session.initialized:
            out.session = out.session.with_init_reply(d.body, d.error or 0)
        if d.error == -errno_mod.ENOSYS and d.opcode is not None:
            out.enosys.add(d.opcode)
        key = (req.record.channel, req.decoded.unique if req.decoded else -1)
        found = owner.pop(key, None)
        if found is None:
            continue  # a marker's reply
        sec, pos = found
        name = out.requests[pos][0]
        err = -(d.error or 0)
        out.requests[pos] = (name, err)
        stats = out.sections[sec][name]
        if err == 0:
            stats.ok += 1
        else:
            ename = errno_name(err)
            stats.errors[ename] = stats.errors.get(ename, 0) + 1
    return out


@dataclass
class StepReport:
    """One row of the report."""

    result: StepResult
    status: Status
    detail: str
    #: opcode name -> stats, for the frames between this step's marker and the next
    seen: dict[str, OpStats]

    @property
    def name(self) -> str:
        return self.result.name

    def seen_text(self) -> str:
        return ", ".join(f"{op} {st.describe()}" for op, st in self.seen.items()) or "-"

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.name,
            "status": self.status.value,
            "ops": [op.name for op in self.result.ops],
            "errno": self.result.error,
            "detail": self.detail,
            "seen": {op: st.to_dict() for op, st in self.seen.items()},
        }


_UNSUPPORTED_NAMES = frozenset(errno_name(e) for e in UNSUPPORTED_ERRNOS)


def judge(result: StepResult, seen: dict[str, OpStats]) -> tuple[Status, str]:
    """A step's verdict from its system calls and its frames in the capture."""
    status, detail = result.status, result.detail
    if status is Status.SKIPPED:
        return status, detail
    own = {op.name: seen[op.name] for op in result.ops if op.name in seen}
    step = BY_NAME.get(result.name)
    names = _UNSUPPORTED_NAMES | {errno_name(e) for e in (step.unsupported if step else ())}
    refused = sorted(
        f"{op} {name}" for op, st in own.items() for name in st.errors if name in names
    )
    answered = any(st.ok for st in own.values())
    if refused and not answered:
        how = "; the kernel emulated the call" if status is Status.SUPPORTED else ""
        note = f"daemon answered {', '.join(refused)}{how}"
        return Status.UNSUPPORTED, f"{detail}; {note}" if detail else note
    if status is Status.SUPPORTED and not own and result.ops:
        note = "no request reached the daemon (handled by the kernel or its caches)"
        return status, f"{detail}; {note}" if detail else note
    if status is Status.FAILED and own:
        errs = sorted(f"{op} {name}" for op, st in own.items() for name in st.errors)
        if errs:
            note = f"daemon answered {', '.join(errs)}"
            return status, f"{detail}; {note}" if detail else note
    return status, detail


@dataclass
class ConformReport:
    """Everything ``fusetrace conform`` reports."""

    daemon: list[str]
    mountpoint: str
    steps: list[StepReport]
    findings: list[Finding]
    read_only: bool = False
    read_only_reason: str = ""
    capture: str | None = None
    kernel: str = ""
    analysis: CaptureAnalysis | None = None
    #: replay against the baseline capture: {"capture", "exit", "differences": [...], ...}
    baseline: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    #: every opcode of the registry: sent, not sent, or not reachable (empty without a capture)
    coverage: list[OpCoverage] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in Status}
        for step in self.steps:
            out[step.status.value] += 1
        return out

    @property
    def error_findings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity >= Severity.ERROR]

    @property
    def failed_steps(self) -> list[StepReport]:
        return [s for s in self.steps if s.status is Status.FAILED]

    @property
    def baseline_differs(self) -> bool:
        return bool(self.baseline and self.baseline.get("differences"))

    @property
    def ok(self) -> bool:
        return not (self.error_findings or self.failed_steps or self.baseline_differs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "fusetrace_conform": 1,
            "daemon": self.daemon,
            "mountpoint": self.mountpoint,
            "kernel": self.kernel,
            "capture": self.capture,
            "read_only": self.read_only,
            "read_only_reason": self.read_only_reason,
            "ok": self.ok,
            "counts": self.counts,
            "steps": [s.to_dict() for s in self.steps],
            "findings": [f.to_dict() for f in self.findings],
            "baseline": self.baseline,
            "capture_summary": self.analysis.summary() if self.analysis else None,
            "coverage": [c.to_dict() for c in self.coverage],
            "coverage_counts": coverage_counts(self.coverage),
            "notes": self.notes,
        }


def build_report(
    results: list[StepResult],
    analysis: CaptureAnalysis | None,
    findings: list[Finding],
    **kwargs: Any,
) -> ConformReport:
    steps = []
    for result in results:
        seen = analysis.ops(result.name) if analysis else {}
        status, detail = judge(result, seen)
        steps.append(StepReport(result, status, detail, seen))
    covered = coverage(analysis.counts(), analysis.facts(), results) if analysis else []
    return ConformReport(
        steps=steps, findings=findings, analysis=analysis, coverage=covered, **kwargs
    )


# ---- rendering ------------------------------------------------------------------------------


def render_text(report: ConformReport) -> str:
    """The report as plain text: a table of steps, then the findings."""
    lines = [f"fusetrace conform: {' '.join(report.daemon)} on {report.mountpoint}"]
    if report.read_only:
        lines.append(f"read-only filesystem: {report.read_only_reason}")
    width = max((len(s.name) for s in report.steps), default=4)
    lines.append("")
    lines.append(f"{'step':<{width}}  {'result':<13}  {'requests (errors)':<40}  detail")
    for s in report.steps:
        lines.append(
            f"{s.name:<{width}}  {s.status.value:<13}  {s.seen_text():<40}  {s.detail}".rstrip()
        )
    lines.append("")
    counts = report.counts
    lines.append(", ".join(f"{n} {k}" for k, n in counts.items()))
    lines.extend(render_coverage_text(report.coverage))
    lines.extend(render_findings_text(report.findings))
    lines.extend(render_baseline_text(report.baseline))
    lines.extend(f"note: {n}" for n in report.notes)
    lines.append("result: " + ("pass" if report.ok else "FAIL"))
    return "\n".join(lines) + "\n"


def render_coverage_text(entries: list[OpCoverage]) -> list[str]:
    """The opcode coverage: a count line, the opcodes sent, then one line per other opcode."""
    if not entries:
        return []
    tally = coverage_counts(entries)
    out = ["opcodes: " + ", ".join(f"{n} {k}" for k, n in tally.items())]
    sent = [f"{e.opcode.name} {e.requests}" for e in entries if e.status is Coverage.SENT]
    out.extend(_wrap("  sent: ", sent))
    for status in (Coverage.NOT_SENT, Coverage.UNREACHABLE):
        for e in entries:
            if e.status is status:
                out.append(f"  {status.value}: {e.opcode.name} ({e.reason})")
    return out


def _wrap(head: str, items: list[str], width: int = 100) -> list[str]:
    lines, line = [], head
    for i, item in enumerate(items):
        text = item + ("," if i < len(items) - 1 else "")
        if len(line) + len(text) + 1 > width and line.strip():
            lines.append(line.rstrip())
            line = " " * len(head)
        line += text + " "
    lines.append(line.rstrip())
    return lines


def render_findings_text(findings: list[Finding]) -> list[str]:
    if not findings:
        return ["findings: none"]
    out = [f"findings: {len(findings)}"]
    for f in findings:
        where = f"frame {f.number}" if f.number is not None else "end of capture"
        op = f" {f.opcode}" if f.opcode else ""
        out.append(f"  {f.rule} {f.severity.label} ({f.culprit.value}) {where}{op}: {f.message}")
    return out


def render_baseline_text(baseline: dict[str, Any] | None) -> list[str]:
    if baseline is None:
        return []
    diffs = baseline.get("differences") or []
    head = f"baseline {baseline.get('capture')}: "
    if baseline.get("error"):
        return [head + f"replay failed: {baseline['error']}"]
    if not diffs:
        return [head + "no behaviour differences"]
    out = [head + f"{len(diffs)} behaviour differences"]
    out.extend(f"  {_difference(d)}" for d in diffs[:50])
    if len(diffs) > 50:
        out.append(f"  ... and {len(diffs) - 50} more")
    return out


def _difference(d: Any) -> str:
    """One replay difference: ``frame 100 READ data: recorded X, live Y``."""
    if not isinstance(d, dict):
        return str(d)
    if "message" in d:
        return str(d["message"])
    where = " ".join(str(d[k]) for k in ("frame", "opcode", "field") if d.get(k) is not None)
    return f"frame {where}: recorded {d.get('recorded')}, live {d.get('live')}"


def render_junit(report: ConformReport) -> str:
    """JUnit XML: one testcase per workload step, one per rule family, one per opcode (sent
    passes; not sent and not reachable are skipped, with the reason), one for the baseline."""
    root = ET.Element("testsuites", name="fusetrace conform")
    suite = ET.SubElement(root, "testsuite", name="conform.workload")
    failures = skipped = 0
    for s in report.steps:
        case = ET.SubElement(suite, "testcase", classname="conform.workload", name=s.name)
        seen = ET.SubElement(case, "system-out")
        seen.text = f"requests: {s.seen_text()}\n{s.detail}"
        if s.status is Status.FAILED:
            failures += 1
            fail = ET.SubElement(case, "failure", message=f"{s.name}: {s.detail}", type="failed")
            fail.text = s.detail
        elif s.status is Status.SKIPPED:
            skipped += 1
            ET.SubElement(case, "skipped", message=f"skipped: {s.detail}")
        elif s.status is Status.UNSUPPORTED:
            skipped += 1
            ET.SubElement(case, "skipped", message=f"not supported: {s.detail}")
    suite.set("tests", str(len(report.steps)))
    suite.set("failures", str(failures))
    suite.set("skipped", str(skipped))
    suite.set("errors", "0")

    fsuite = ET.SubElement(root, "testsuite", name="conform.findings")
    ffail = 0
    by_family: dict[str, list[Finding]] = {}
    for f in report.findings:
        by_family.setdefault(f.rule[:3], []).append(f)
    families = dict(FAMILIES)
    for fam in by_family:
        families.setdefault(fam, "other rules")
    for fam, title in sorted(families.items()):
        found = by_family.get(fam, [])
        case = ET.SubElement(
            fsuite, "testcase", classname="conform.findings", name=f"{fam}xx {title}"
        )
        if not found:
            continue
        text = "\n".join(render_findings_text(found)[1:])
        errors = [f for f in found if f.severity >= Severity.ERROR]
        if errors:
            ffail += 1
            rules = ", ".join(sorted({f.rule for f in errors}))
            fail = ET.SubElement(
                case, "failure", message=f"{len(errors)} error findings: {rules}", type="findings"
            )
            fail.text = text
        else:
            out = ET.SubElement(case, "system-out")
            out.text = text
    fsuite.set("tests", str(len(families)))
    fsuite.set("failures", str(ffail))
    fsuite.set("errors", "0")
    fsuite.set("skipped", "0")

    if report.coverage:
        csuite = ET.SubElement(root, "testsuite", name="conform.coverage")
        cskipped = 0
        for e in report.coverage:
            case = ET.SubElement(
                csuite, "testcase", classname="conform.coverage", name=e.opcode.name
            )
            if e.status is Coverage.SENT:
                out = ET.SubElement(case, "system-out")
                out.text = f"sent: {e.requests} requests"
            else:
                cskipped += 1
                ET.SubElement(case, "skipped", message=f"{e.status.value}: {e.reason}")
        csuite.set("tests", str(len(report.coverage)))
        csuite.set("failures", "0")
        csuite.set("errors", "0")
        csuite.set("skipped", str(cskipped))

    if report.baseline is not None:
        bsuite = ET.SubElement(root, "testsuite", name="conform.baseline", tests="1")
        case = ET.SubElement(
            bsuite, "testcase", classname="conform.baseline", name="replay of baseline capture"
        )
        lines = render_baseline_text(report.baseline)
        if report.baseline_differs or report.baseline.get("error"):
            fail = ET.SubElement(case, "failure", message=lines[0], type="differences")
            fail.text = "\n".join(lines)
            bsuite.set("failures", "1")
        else:
            bsuite.set("failures", "0")
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def errno_value(name: str) -> int:
    """2 for "ENOENT" (used by tests and the baseline comparison)."""
    return int(getattr(errno_mod, name))
