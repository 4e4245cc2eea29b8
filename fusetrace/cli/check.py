"""``fusetrace check``, ``explain`` and ``rules``: the protocol checker on the command line.

Thin adapters: read captures, feed the tracker, hand the result to a reporter, and return a
:class:`~fusetrace.cli.Result` the group turns into the exit status (0 clean, 1 findings at or
above ``--fail-on``, 3 unreadable or cut-short capture).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from contextlib import nullcontext
from typing import IO, Any

import click

from fusetrace.capture.files import open_capture
from fusetrace.cli import Result, options
from fusetrace.errors import CaptureError
from fusetrace.report.findings import (
    CaptureResult,
    CheckResult,
    JsonReporter,
    JunitReporter,
    TextReporter,
)
from fusetrace.tracker import (
    FAMILIES,
    RULES,
    Finding,
    SessionState,
    Severity,
    Tracker,
    select_rules,
)
from fusetrace.tracker.rules import raised_by

#: show a progress display on a terminal once a capture has this many frames
PROGRESS_EVERY = 20_000


def _split(values: Iterable[str]) -> list[str]:
    return [p.strip().upper() for v in values for p in v.split(",") if p.strip()]


def _mount_options(meta: dict[str, Any]) -> dict[str, str | None] | None:
    opts = meta.get("mount_options")
    if not isinstance(opts, list):
        return None
    out: dict[str, str | None] = {}
    for o in opts:
        for part in str(o).split(","):
            name, eq, value = part.partition("=")
            out[name.strip()] = value if eq else None
    return out


def check_capture(
    path: str,
    *,
    rules: Iterable[str] | None = None,
    header_only: bool = False,
    progress: Any = None,
) -> CaptureResult:
    """Check one capture file; raises CaptureError if it cannot be read."""
    with open_capture(path) as reader:
        # `top --attach -w`: headers from the kernel's tracepoints, of a session begun earlier
        attached = reader.info.meta.get("source") == "tracepoints"
        tracker = Tracker(
            byte_order=reader.info.byte_order,
            rules=rules,
            mount_options=_mount_options(reader.info.meta),
            header_only=header_only or attached,
        )
        if attached:
            tracker.state = SessionState.READY
        findings: list[Finding] = []
        # Tracker.feed, unrolled: the connection's exchange straight to the judge
        connection_feed = tracker.connection.feed
        judge = tracker.judge
        task = None
        for n, rec in enumerate(reader, 1):
            found = judge(connection_feed(rec))
            if found:
                findings.extend(found)
            if progress is not None and n % PROGRESS_EVERY == 0:
                if task is None:
                    task = progress.add_task(f"checking {path}", total=None)
                progress.update(task, completed=n)
        findings.extend(tracker.finish())
        if task is not None:
            progress.remove_task(task)
        result = CaptureResult(path, findings, tracker.summary, reader.info.truncated)
        if tracker.summary.internal_errors:
            click.echo(
                f"fusetrace: warning: {path}: {tracker.summary.internal_errors} frames could "
                "not be judged because of an internal error (please report it)",
                err=True,
            )
        if reader.info.truncated:
            click.echo(
                f"fusetrace: warning: {path}: the capture is cut short at offset "
                f"{reader.info.truncated_at}; checked up to its last whole frame",
                err=True,
            )
        return result


def _progress() -> Any:
    if not sys.stderr.isatty():
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn

    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}: {task.completed:,} frames"),
        console=Console(stderr=True),
        transient=True,
    )


@options.renamed({"-o": "--output"})
@click.command(
    "check",
    epilog="""\b
Examples:
  fusetrace check trace.pcapng
  fusetrace check --fail-on warning --format junit --output check.xml -r trace.pcapng
  fusetrace check --select FT1,FT3 --ignore FT314 a.pcapng b.pcapng
  fusetrace check --format json trace.pcapng | jq '.captures[].findings[].frame'
""",
)
@click.argument("captures", nargs=-1, metavar="FILE...")
@options.read_option(multiple=True)
@options.format_option("text", "json", "junit", help="text (a table on a terminal, "
                       "file:frame: lines otherwise), json, or junit XML for CI.")  # fmt: skip
@options.fail_on_option()
@click.option(
    "--select",
    multiple=True,
    metavar="CODES",
    help="Only these rules: codes or prefixes, comma-separated (FT1 = the whole family).",
)
@click.option(
    "--ignore",
    multiple=True,
    metavar="CODES",
    help="Leave out these rules: codes or prefixes, comma-separated.",
)
@click.option(
    "--header-only",
    is_flag=True,
    help="Check only what the frame headers show (ids, pairing, lengths, errors, INIT): "
    "faster, skips every rule that reads a body.",
)
@options.output_option()
def check(
    captures: tuple[str, ...],
    read: tuple[str, ...],
    fmt: str,
    fail_on: str,
    select: tuple[str, ...],
    ignore: tuple[str, ...],
    header_only: bool,
    output: str | None,
) -> Result:
    """Check captures against the kernel's FUSE protocol rules.

    Every frame is judged as the kernel would judge it: reply ids and pairing, lookup
    counts and file handles, frame and reply sizes, INIT negotiation, notifications and
    interrupts. Each finding names its rule (`fusetrace explain CODE` tells what it means),
    its severity, the side at fault and the frame, numbered from 1 as Wireshark and
    `fusetrace decode` number it (`decode --frame N` shows it). Ids print in decimal.

    Exit status: 0 when nothing at or above --fail-on was found, 1 when something was,
    3 when a capture cannot be read or is cut short (after reporting what it held).
    """
    paths = options.capture_paths(read, captures)
    try:
        enabled = select_rules(_split(select) or None, _split(ignore) or None)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--select/--ignore") from None
    result = CheckResult(fail_on=Severity.parse(fail_on))
    unreadable = False
    with _progress() as progress:
        for path in paths:
            try:
                result.captures.append(
                    check_capture(path, rules=enabled, header_only=header_only, progress=progress)
                )
            except CaptureError as e:
                click.echo(f"fusetrace: error: {e}", err=True)
                unreadable = True
    _write_report(result, fmt, output or "-")
    return Result(
        failed=result.failed,
        cut_short=any(c.truncated for c in result.captures),
        unreadable=unreadable,
    )


def _write_report(result: CheckResult, fmt: str, output: str) -> None:
    out: IO[str]
    if output == "-":
        out = sys.stdout
        close = False
    else:
        try:
            out = open(output, "w", encoding="utf-8")  # noqa: SIM115
        except OSError as e:
            raise click.FileError(output, e.strerror) from None
        close = True
    try:
        if fmt == "json":
            JsonReporter().render(result, out)
        elif fmt == "junit":
            JunitReporter().render(result, out)
        else:
            console = None
            if not close and out.isatty():
                from rich.console import Console

                console = Console(file=out, highlight=False, emoji=False)
            TextReporter(console).render(result, out)
    finally:
        if close:
            out.close()


@click.command(
    "explain",
    epilog="""\b
Examples:
  fusetrace explain FT203
  fusetrace explain FT3        (every rule of the family)
""",
)
@click.argument("codes", nargs=-1, required=True, metavar="CODE...")
def explain(codes: tuple[str, ...]) -> None:
    """Print what a checker rule means: the kernel behaviour it models, its sources, and the
    text of the protocol reference sections it cites."""
    import textwrap

    from fusetrace.reference import citations, quote

    wanted: list[str] = []
    for code in _split(codes):
        hits = [c for c in RULES if c.startswith(code)]
        if not hits:
            raise click.BadParameter(
                f"no rule {code}; `fusetrace rules` lists them", param_hint="CODE"
            )
        wanted.extend(c for c in hits if c not in wanted)
    for i, code in enumerate(wanted):
        r = RULES[code]
        if i:
            click.echo()
        click.echo(f"{r.code} {r.name}: {r.title}")
        click.echo(
            f"severity: {r.severity.label}; at fault: {r.culprit.value}; "
            f"family: {FAMILIES[r.family]}"
        )
        click.echo(f"checked in: {raised_by(code)}")
        click.echo()
        click.echo(textwrap.fill(r.doc, width=78))
        for cite in citations(r.doc):
            quoted = quote(cite)
            if quoted is None:
                continue
            title, lines = quoted
            click.echo()
            click.echo(f"protocol.md {cite}: {title}")
            for line in lines:
                click.echo(f"  {line}".rstrip())


@click.command(
    "rules",
    epilog="""\b
Examples:
  fusetrace rules
  fusetrace rules --format json | jq -r '.[] | select(.severity == "error") | .code'
""",
)
@options.format_option(
    "text", "json", help="A table, or a JSON list of {code, name, severity, culprit, title, doc}."
)
def rules(fmt: str) -> None:
    """List the checker's rules: code, severity, side at fault and title."""
    if fmt == "json":
        doc = [
            {
                "code": r.code,
                "name": r.name,
                "severity": r.severity.label,
                "culprit": r.culprit.value,
                "family": FAMILIES[r.family],
                "title": r.title,
                "doc": r.doc,
            }
            for r in RULES.values()
        ]
        click.echo(json.dumps(doc, indent=2))
        return
    for r in RULES.values():
        click.echo(f"{r.code}  {r.severity.label:<7}  {r.culprit.value:<7}  {r.title}")
