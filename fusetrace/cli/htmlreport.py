"""``fusetrace report``: a capture as one self-contained HTML page of plots and findings."""

from __future__ import annotations

import os
import sys

import click

from fusetrace.capture.files import open_capture
from fusetrace.cli import Result
from fusetrace.errors import EnvironmentProblem
from fusetrace.observe.aggregate import Aggregate


@click.command(
    "report",
    epilog="""\b
Examples:
  fusetrace report trace.pcapng --output report.html
  fusetrace report trace.pcapng --output - --no-check > report.html
""",
)
@click.argument("capture", metavar="FILE|-")
@click.option(
    "--output",
    "output",
    required=True,
    metavar="FILE",
    help="Write the HTML page to FILE ('-': standard output).",
)
@click.option(
    "--no-check",
    "no_check",
    is_flag=True,
    help="Leave out the checker's findings (faster on large captures).",
)
@click.option(
    "--title",
    metavar="TEXT",
    help="The page's title (default: the capture's file name).",
)
def report(capture: str, output: str, no_check: bool, title: str | None) -> Result | None:
    """Write a capture's report: one HTML file that opens offline in any browser.

    Plots: latency distribution per opcode, requests in flight over time (with the
    negotiated max_background), throughput over time by opcode, failed replies by errno.
    Then the checker's findings with their frame numbers (counted from 1, as Wireshark
    does) and what each rule means (`fusetrace explain`). The data is aggregated before it
    is plotted (latency histograms, time buckets), so a capture of millions of frames gives
    a page of the same size as a small one.
    """
    try:
        from fusetrace.observe.html import ReportInput, render
    except ImportError as e:
        raise EnvironmentProblem(
            f"report needs plotly ({e.name} is missing): pip install 'fusetrace[report]'"
        ) from None
    from fusetrace import __version__

    with open_capture(capture) as reader:
        info = reader.info
        agg = Aggregate(info.byte_order)
        tracker = None
        if not no_check:
            from fusetrace.cli.check import _mount_options
            from fusetrace.tracker import Tracker
            from fusetrace.tracker.machine import SessionState

            attached = info.meta.get("source") == "tracepoints"
            tracker = Tracker(
                byte_order=info.byte_order,
                mount_options=_mount_options(info.meta),
                header_only=attached,
            )
            if attached:
                tracker.state = SessionState.READY
        findings = []
        feed = agg.feed
        if tracker is None:
            for rec in reader:
                feed(rec)
        else:
            check = tracker.feed
            for rec in reader:
                feed(rec)
                found = check(rec)
                if found:
                    findings.extend(found)
            findings.extend(tracker.finish())
        name = "standard input" if capture == "-" else os.path.basename(capture)
        page = render(
            agg,
            ReportInput(
                title=title or f"fusetrace report: {name}",
                capture=capture,
                meta=info.meta,
                findings=None if tracker is None else findings,
                truncated=info.truncated,
                generator=f"fusetrace {__version__}",
            ),
        )
    if output == "-":
        sys.stdout.write(page)
        sys.stdout.flush()
    else:
        try:
            with open(output, "w", encoding="utf-8") as f:
                f.write(page)
        except OSError as e:
            raise click.FileError(output, e.strerror) from None
        click.echo(
            f"fusetrace: report of {agg.frames} frames written to {output} "
            f"({len(page.encode()) // 1024} KiB)",
            err=True,
        )
    if info.truncated:
        click.echo(
            f"fusetrace: warning: capture cut short at offset {info.truncated_at}; "
            "reported up to its last whole frame",
            err=True,
        )
        return Result(cut_short=True)
    return None
