"""``fusetrace conform``: run the built-in workload against a daemon and report what it supports."""

from __future__ import annotations

import sys
from typing import Any

import click

from fusetrace.errors import ExitCode

EPILOG = """\b
Examples:
  fusetrace conform /mnt -- squashfuse_ll image.sqfs /mnt
  fusetrace conform --report junit.xml --json conform.json /mnt -- mydaemon -f /mnt
  fusetrace conform -w run.pcapng --baseline captures/overlay.pcapng /mnt \\
      -- fuse-overlayfs -f -o lowerdir=/lo,upperdir=/up,workdir=/w /mnt
"""


def _write(path: str, text: str) -> None:
    if path == "-":
        sys.stdout.write(text)
        return
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as e:
        raise click.FileError(path, e.strerror) from None


def _rich_table(report: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    from fusetrace.conform.report import render_text

    console = Console(highlight=False, emoji=False, markup=False)
    styles = {
        "supported": "green",
        "not supported": "yellow",
        "failed": "bold red",
        "skipped": "dim",
    }
    title = f"fusetrace conform: {' '.join(report.daemon)}"
    table = Table(title=title, title_justify="left")
    table.add_column("step")
    table.add_column("result")
    table.add_column("requests (errors)")
    table.add_column("detail", overflow="fold")
    for s in report.steps:
        table.add_row(s.name, s.status.value, s.seen_text(), s.detail, style=styles[s.status.value])
    if report.read_only:
        console.print(f"read-only filesystem: {report.read_only_reason}")
    console.print(table)
    tail = render_text(report).split("\n\n", 2)[-1]
    console.print(tail.rstrip("\n"), style=None if report.ok else "bold")


@click.command(epilog=EPILOG)
@click.option(
    "--report",
    "junit",
    metavar="FILE",
    help="Write a JUnit XML report to FILE: one testcase per workload step, one per rule "
    "family, one per opcode (coverage), one for the baseline ('-' = stdout).",
)
@click.option(
    "--json",
    "json_path",
    metavar="FILE",
    help="Write the whole report as one JSON object to FILE ('-' = stdout).",
)
@click.option(
    "--baseline",
    metavar="CAPTURE",
    type=click.Path(dir_okay=False),
    help="Also replay CAPTURE against the same daemon command (fusetrace replay) and report "
    "behaviour differences; they fail the run.",
)
@click.option(
    "-w",
    "--write",
    "capture",
    metavar="CAPTURE",
    help="Keep the capture of the run in CAPTURE (pcapng). Without it, a temporary file.",
)
@click.option(
    "-o",
    "--options",
    "options",
    multiple=True,
    metavar="OPT[,OPT...]",
    help="Mount options passed to fusetrace record (ro, allow_other, ...). Repeatable.",
)
@click.option(
    "--snaplen",
    type=click.IntRange(min=16),
    metavar="BYTES",
    help="Store at most BYTES of each frame in the capture (file data is cut).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="Abandon a step that takes longer (the connection is aborted; the step fails).",
)
@click.option(
    "--large-dir",
    "large_entries",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    metavar="N",
    help="Entries the workload puts in its large directory (smaller: a smaller capture).",
)
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="Print no table on stdout, only the verdict on stderr (also when --report or --json "
    "writes to stdout).",
)
@click.argument("mountpoint", type=click.Path(file_okay=False))
@click.argument("daemon", nargs=-1, required=True)
def conform(
    junit: str | None,
    json_path: str | None,
    baseline: str | None,
    capture: str | None,
    options: tuple[str, ...],
    snaplen: int | None,
    timeout: float,
    large_entries: int,
    quiet: bool,
    mountpoint: str,
    daemon: tuple[str, ...],
) -> None:
    """Mount DAEMON on MOUNTPOINT through fusetrace record, run the built-in workload, and
    report which operations the daemon supports and whether it keeps the protocol.

    The workload makes about fifty deterministic steps: lookup, getattr, setattr (truncate,
    chmod, chown, utimens), create, mknod, mkdir, symlink, link, unlink, rmdir, rename and
    renameat2 flags, read/write/fsync, small and large directory listings, xattrs, POSIX
    locks and flock, fallocate and punch-hole, SEEK_DATA/SEEK_HOLE, copy_file_range, statx,
    O_TMPFILE, statfs, access, poll, ioctl, mmap, fsync of a directory, syncfs, an
    interrupted request and dropped caches. Each step is reported as supported, not
    supported (ENOSYS, EOPNOTSUPP, ENOTTY: from the system call or from the daemon's reply in
    the capture), failed, or skipped. A read-only daemon is detected and only the read steps
    run, on the tree it serves. Every opcode is reported as sent, not sent, or not reachable
    on this mount and connection (with the reason). Then the capture is checked with the
    tracker's rules.

    Exit status: 0 no failed step and no error finding (an unsupported operation is not a
    failure), 1 otherwise, 4 the daemon could not be mounted, 130 interrupted. Needs root.
    """
    from fusetrace.conform.report import render_junit, render_text
    from fusetrace.conform.session import ConformConfig, run_conform

    config = ConformConfig(
        mountpoint=mountpoint,
        daemon=list(daemon),
        capture=capture,
        options=list(options),
        baseline=baseline,
        timeout=timeout,
        snaplen=snaplen,
        large_entries=large_entries,
    )
    report = run_conform(config)
    if junit:
        _write(junit, render_junit(report))
    if json_path:
        import json

        _write(json_path, json.dumps(report.to_dict(), indent=2) + "\n")
    if quiet or "-" in (junit, json_path):  # stdout carries the report file
        click.echo(f"fusetrace conform: {'pass' if report.ok else 'FAIL'}", err=True)
    elif sys.stdout.isatty():
        _rich_table(report)
    else:
        sys.stdout.write(render_text(report))
    sys.exit(ExitCode.OK if report.ok else ExitCode.FINDINGS)
