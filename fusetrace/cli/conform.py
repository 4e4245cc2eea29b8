"""``fusetrace conform``: run the built-in workload against a daemon and report what it supports."""

from __future__ import annotations

import sys
from typing import Any

import click

from fusetrace.cli import Result, options

EPILOG = """\b
Examples:
  fusetrace conform /mnt -- squashfuse_ll image.sqfs /mnt
  fusetrace conform --format junit --output junit.xml /mnt -- mydaemon -f /mnt
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


def _deprecated(new: str) -> Any:
    def note(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None:
            click.echo(
                f"fusetrace conform: warning: {param.opts[0]} is deprecated and will be removed "
                f"in the next release; use {new}",
                err=True,
            )
        return value

    return note


@click.command(epilog=EPILOG)
@options.format_option("text", "json", "junit", help="text: a table of the steps and the "
                       "verdict; json: the whole report as one JSON object; junit: JUnit XML, "
                       "one testcase per workload step, one per rule family, one per opcode "
                       "(coverage), one for the baseline.")  # fmt: skip
@options.output_option(help="Write the --format report to FILE instead of standard output.")
@options.fail_on_option(help="Fail (exit 1) on a finding of this severity or worse; a failed "
                        "step or a baseline difference always fails.")  # fmt: skip
@click.option("--report", "junit", metavar="FILE", hidden=True,
              callback=_deprecated("--format junit --output FILE"))  # fmt: skip
@click.option("--json", "json_path", metavar="FILE", hidden=True,
              callback=_deprecated("--format json --output FILE"))  # fmt: skip
@click.option(
    "--baseline",
    metavar="CAPTURE",
    type=click.Path(dir_okay=False),
    help="Also replay CAPTURE against the same daemon command (fusetrace replay) and report "
    "behaviour differences; they fail the run.",
)
@options.write_option(
    dest="capture",
    help="Keep the capture of the run in FILE (pcapng). Without it, a temporary file.",
)
@options.mount_options_option(
    help="Mount options passed to fusetrace record (ro, allow_other, ...). Repeatable."
)
@click.option(
    "--snaplen",
    type=click.IntRange(min=16),
    metavar="BYTES",
    help="Store at most BYTES of each frame in the capture (file data is cut).",
)
@options.timeout_option(
    default=30.0,
    help="Abandon a step that keeps fusetrace waiting longer (the connection is aborted; "
    "the step fails).",
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
    help="Print no table on stdout, only the verdict on stderr (also when a json or junit "
    "report goes to stdout).",
)
@click.argument("mountpoint", type=click.Path(file_okay=False))
@click.argument("daemon", nargs=-1, required=True)
def conform(
    fmt: str,
    output: str | None,
    fail_on: str,
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
) -> Result:
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

    Exit status: 0 no failed step and no finding at or above --fail-on (an unsupported
    operation is not a failure), 1 otherwise, 3 the --baseline capture cannot be read or is
    cut short (after the report), 4 the daemon could not be mounted, 130 interrupted.
    Needs root.
    """
    from fusetrace.conform.report import render_junit, render_text
    from fusetrace.conform.session import ConformConfig, run_conform
    from fusetrace.tracker import Severity

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
    if fmt == "junit":
        junit = output or "-"
    elif fmt == "json":
        json_path = output or "-"
    elif output:
        _write(output, render_text(report))
    if junit:
        _write(junit, render_junit(report))
    if json_path:
        import json

        _write(json_path, json.dumps(report.to_dict(), indent=2) + "\n")
    threshold = Severity.parse(fail_on)
    failed = not report.ok or any(f.severity >= threshold for f in report.findings)
    if quiet or "-" in (junit, json_path) or (fmt == "text" and output):  # report elsewhere
        click.echo(f"fusetrace conform: {'FAIL' if failed else 'pass'}", err=True)
    elif sys.stdout.isatty():
        _rich_table(report)
    else:
        sys.stdout.write(render_text(report))
    # the baseline's replay exits 3 when that capture cannot be read or is cut short
    baseline_unread = bool(report.baseline and report.baseline.get("exit") == 3)
    return Result(failed=failed, cut_short=baseline_unread)
