"""``fusetrace reduce``: the few frames of a capture that still show one finding or one
replay difference."""

from __future__ import annotations

import json
import os
import sys
from contextlib import nullcontext
from typing import Any

import click

from fusetrace.cli import options
from fusetrace.cli.redact import load, write_like
from fusetrace.errors import CaptureError, ExitCode, FusetraceError
from fusetrace.reduce.closure import build
from fusetrace.reduce.oracle import DifferenceOracle, RuleOracle, findings, replay_differences
from fusetrace.reduce.runner import Oracle, Progress, Search
from fusetrace.tracker import RULES, Culprit


class NothingToReduce(FusetraceError):
    """The capture does not show what was asked for."""

    exit_code = ExitCode.USAGE


def _progress_bar(max_time: float | None) -> Any:
    if not sys.stderr.isatty():
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("reduce"),
        BarColumn(),
        TextColumn("{task.fields[phase]}: {task.fields[frames]} frames"),
        TextColumn("{task.fields[tests]} tests"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )


@click.command(context_settings={"ignore_unknown_options": False})
@click.argument("capture", metavar="FILE", required=False)
@click.argument("daemon", nargs=-1, metavar="[-- DAEMON ARGS...]")
@options.read_option(dest="read_path")
@options.write_option(help="Write the reduced capture to FILE ('-' for standard output).",
                      dest="write_path", required=True)  # fmt: skip
@click.option("--rule", metavar="FTxxx", help="Keep the frames that make the checker raise "
              "this rule (same rule, same culprit).")  # fmt: skip
@click.option("--culprit", type=click.Choice([c.value for c in Culprit]),
              help="With --rule: the side the finding must blame (default: the first "
              "finding's).")  # fmt: skip
@click.option("--difference", is_flag=True, help="Keep the frames that make a replay against "
              "DAEMON show the same difference (same opcode, same field).")  # fmt: skip
@click.option("--op", "op_name", metavar="OPCODE", help="With --difference: reduce to the "
              "first difference on this opcode (default: the first difference).")  # fmt: skip
@click.option("--max-time", type=float, default=300.0, show_default=True, metavar="SECONDS",
              help="Time budget; when it runs out, the smallest result so far is "
              "written.")  # fmt: skip
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None, metavar="N",
              help="Candidates tested at once (default: the number of CPUs).")  # fmt: skip
@options.timeout_option(default=10.0, help="With --difference: how long a replayed daemon may "
                        "leave a request unanswered.")  # fmt: skip
@options.format_option("text", "json", help="Report format.")
def reduce(
    capture: str | None,
    daemon: tuple[str, ...],
    read_path: str | None,
    write_path: str,
    rule: str | None,
    culprit: str | None,
    difference: bool,
    op_name: str | None,
    max_time: float,
    jobs: int | None,
    timeout: float,
    fmt: str,
) -> None:
    """Shrink FILE to the frames that still show one finding or one replay difference.

    The result is always a whole session, closed under the protocol's dependencies: INIT,
    every request that created an id a kept request names (LOOKUP chains, OPEN before READ,
    OPENDIR before READDIR), the RELEASEs and FORGETs the kernel would send for what is
    kept, and every reply with its request. Within that, delta debugging (by node, then by
    request) drops what the finding or difference does not need; candidates are tested in
    parallel. The report says what was kept and why.

    \b
    Examples:
      fusetrace reduce trace.pcapng -w small.pcapng --rule FT102
      fusetrace reduce trace.pcapng -w small.pcapng --difference -- squashfuse_ll new.sqfs {}

    Exit status: 0 written, 2 usage (or the capture does not show the finding or
    difference), 3 unreadable capture, 4 the daemon failed to start.
    """
    if read_path and capture:
        daemon = (capture, *daemon)
    path = read_path or capture
    if path is None:
        raise click.UsageError("no capture given (FILE or -r FILE)")
    if (rule is None) == (not difference):
        raise click.UsageError("give exactly one of --rule FTxxx and --difference")
    if difference and not daemon:
        raise click.UsageError("--difference needs the daemon command after --")
    if rule is not None and daemon:
        raise click.UsageError(f"unexpected arguments: {' '.join(daemon)}")
    if rule is not None:
        rule = rule.upper()
        if rule not in RULES:
            raise click.UsageError(f"unknown rule {rule} (see `fusetrace rules`)")
    records, info = load(path)
    if not records:
        raise CaptureError(f"{path}: no frames")
    byte_order = str(info.meta.get("byte_order", info.byte_order))
    out = sys.stderr if write_path == "-" else sys.stdout
    oracle: Oracle
    if rule is not None:
        found = [f for f in findings(records, byte_order) if f.rule == rule]
        if culprit is not None:
            found = [f for f in found if f.culprit.value == culprit]
        if not found:
            raise NothingToReduce(f"{path}: the checker raises no {rule} finding")
        first = found[0]
        target_frame = first.frame
        oracle = RuleOracle(rule, first.culprit, byte_order)
        what = f"the {rule} finding"
        desc = first.message
        key = f"{rule} [{first.culprit.value}]"
    else:
        if byte_order != sys.byteorder:
            raise CaptureError(f"{path}: recorded on a {byte_order}-endian machine")
        mp = info.meta.get("mountpoint")
        mountpoint = mp if isinstance(mp, str) else None
        whole = replay_differences(
            records, daemon, mountpoint=mountpoint, byte_order=byte_order, timeout_s=timeout
        )
        diffs = [d for d in whole.differences if d[0] >= 0]
        if op_name:
            diffs = [d for d in diffs if d[1] == op_name.upper()]
        if not diffs:
            raise NothingToReduce(
                f"{path}: replaying against {daemon[0]} shows no difference"
                + (f" on {op_name.upper()}" if op_name else "")
                + (f" ({whole.stopped})" if whole.stopped else "")
            )
        target_frame, opcode, fld = diffs[0]
        oracle = DifferenceOracle(
            tuple(daemon), opcode, fld, mountpoint, byte_order, timeout_s=timeout
        )
        what = "the difference"
        desc = key = f"{opcode} {fld}"

    graph = build(records, byte_order)
    bar = _progress_bar(max_time)
    with bar as progress:
        task = (
            progress.add_task("reduce", total=max_time, phase="", frames=len(records), tests=0)
            if progress is not None
            else None
        )

        def on_progress(p: Progress) -> None:
            if progress is not None and task is not None:
                progress.update(
                    task, completed=p.elapsed, phase=p.phase, frames=p.frames, tests=p.tests
                )

        search = Search(
            records,
            oracle,
            byte_order=byte_order,
            jobs=jobs or os.cpu_count() or 1,
            max_time=max_time,
            on_progress=on_progress,
            graph=graph,
        )
        try:
            result = search.run(target_frame)
        except LookupError:
            raise NothingToReduce(
                f"{path}: the whole capture, made a valid session, no longer shows {desc}"
            ) from None
    meta = dict(info.meta)
    meta["reduced"] = {"frames": len(records), "reproduces": key}
    write_like(write_path, info, result.records, meta=meta)
    summary = result.summary(what)
    why = result.reasons(what)
    if fmt == "json":
        doc = {
            "capture": path,
            "frames_in": len(records),
            "frames_out": len(result.records),
            "kept": [
                {"frame": n + 1, "original_frame": o + 1, "why": why[o]}
                for n, o in enumerate(result.origin)
            ],
            "target_frame": None if target_frame is None else target_frame + 1,
            "reproduces": desc,
            "tests": result.tests,
            "seconds": round(result.elapsed, 3),
            "timed_out": result.timed_out,
            "summary": summary,
        }
        click.echo(json.dumps(doc, indent=2), file=out)
    else:
        click.echo(summary, file=out)
        note = " (time budget used up: not minimal)" if result.timed_out else ""
        where = "" if target_frame is None else f" (frame {target_frame + 1} of {path})"
        click.echo(
            f"{len(records)} → {len(result.records)} frames, {result.tests} tests, "
            f"{result.elapsed:.1f} s{note}; reproduces: {desc}{where}",
            file=out,
        )
