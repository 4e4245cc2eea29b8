"""``fusetrace replay``: re-feed a capture to a daemon and report every difference."""

from __future__ import annotations

import json
import os
import statistics
import sys
from collections.abc import Iterator
from contextlib import ExitStack, nullcontext
from typing import Any, TextIO

import click

from fusetrace.capture import CaptureReader, Channel
from fusetrace.capture.files import host_writer, open_capture, open_output
from fusetrace.cli import Result, options
from fusetrace.errors import CaptureError
from fusetrace.frame import Direction, Frame
from fusetrace.replay.codec import ProtocolCodec
from fusetrace.replay.driver import ChildSink, FrameSink, LiveRun, run
from fusetrace.replay.engine import (
    Command,
    Outcome,
    ReplayEngine,
    ReplayOptions,
    ReplayResult,
    SendFrame,
)
from fusetrace.replay.matching import ALLOCATION, DEFAULT_IGNORE, MatchPolicy


def _stream(path: str, reader: CaptureReader) -> tuple[Iterator[Frame], dict[str, Any]]:
    """The capture's records as an iterator (read as the replay goes) and its metadata,
    known once the first record is read."""
    it = iter(reader)
    first = next(it, None)
    info = reader.info
    meta = dict(info.meta)
    meta.setdefault("byte_order", info.byte_order)

    def records() -> Iterator[Frame]:
        if first is None:
            return
        yield first
        yield from it
        if info.truncated:
            click.echo(
                f"fusetrace: warning: {path}: capture cut short at byte {info.truncated_at}; "
                "replayed what is there",
                err=True,
            )

    return records(), meta


def _tracker_sink(byte_order: str) -> tuple[FrameSink, Any, Any] | None:
    """The tracker over the live run's frames: (sink, finish → findings, abandon). Where
    the platform forks, it runs in a child process beside the replay."""
    try:
        from fusetrace.tracker import Tracker
    except ImportError:  # pragma: no cover - the tracker ships with fusetrace
        return None

    def make() -> tuple[FrameSink, Any]:
        tracker = Tracker(byte_order=byte_order)
        count = [0]
        findings: list[Any] = []

        def sink(direction: Direction, t_ns: int, data: bytes) -> None:
            findings.extend(tracker.feed(Frame(count[0], t_ns, direction, data, len(data))))
            count[0] += 1

        def finish() -> list[Any]:
            findings.extend(tracker.finish())
            return findings

        return sink, finish

    if not hasattr(os, "fork"):  # pragma: no cover - Linux forks
        sink, finish = make()
        return sink, finish, lambda: None
    child = ChildSink(make)
    return child, child.finish, child.abandon


def _frame_count(path: str) -> int:
    """A rough frame count for the progress bar (file size / 100), 0 when unknown."""
    if path == "-" or not sys.stderr.isatty():
        return 0
    try:
        return os.path.getsize(path) // 100
    except OSError:
        return 0


def _progress(total: int) -> Any:
    """A progress bar on a terminal's stderr for long replays; nothing otherwise."""
    if not sys.stderr.isatty() or total < 2000:
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn

    return Progress(
        TextColumn("replaying"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,} frames"),
        console=Console(stderr=True),
        transient=True,
    )


def _latency_table(result: ReplayResult) -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, float]] = {}
    for name, st in sorted(result.by_opcode.items()):
        if not st.latencies:
            continue
        lat = sorted(st.latencies.samples)
        table[name] = {
            "count": st.latencies.count,
            "median_us": statistics.median(lat) / 1e3,
            "p99_us": lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1e3,
            "max_us": st.latencies.max / 1e3,
        }
    return table


def _summary(result: ReplayResult, live: LiveRun, speed: float) -> dict[str, Any]:
    seconds = max(result.ended_ns - result.started_ns, 1) / 1e9
    answered = sum(st.answered for st in result.by_opcode.values())
    out: dict[str, Any] = {
        "outcome": result.outcome.value,
        "reason": result.reason,
        "script_frames": result.script_frames,
        "requests_sent": result.sent,
        "replies_compared": result.compared,
        "differences": len(result.differences),
        "not_sent": result.not_sent,
        "unanswered": result.unanswered,
        "skipped": result.skipped,
        "daemon": live.daemon_status,
        "seconds": round(seconds, 6),
        "by_opcode": {
            name: {
                "sent": st.sent,
                "answered": st.answered,
                "differences": st.differences,
                "not_sent": st.not_sent,
            }
            for name, st in sorted(result.by_opcode.items())
        },
    }
    if result.died_on is not None:
        idx, op, unique = result.died_on
        out["died_on"] = {"frame": idx, "opcode": op, "unique": unique}
        out["outstanding"] = [
            {"frame": i, "opcode": o, "unique": u} for i, o, u in result.outstanding
        ]
    if speed == 0:
        out["requests_per_second"] = round(answered / seconds, 1)
        out["latency"] = _latency_table(result)
    if result.recorded_notifications or result.live_notifications:
        out["notifications"] = {
            "recorded": dict(result.recorded_notifications),
            "live": dict(result.live_notifications),
        }
    return out


def _print_text(
    out: TextIO, result: ReplayResult, summary: dict[str, Any], findings: list[Any]
) -> None:
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    if result.notes_dropped:
        click.echo(f"note: {result.notes_dropped} more notes not shown", err=True)
    for d in result.differences:
        click.echo(d.line(), file=out)
    for f in findings:
        where = f" live frame {f.number}" if f.frame is not None else ""
        click.echo(
            f"finding {f.rule} {f.severity.label} ({f.culprit.value}){where}: {f.message}",
            file=out,
        )
    s = summary
    click.echo(
        f"replay {s['outcome']}: {s['requests_sent']} frames sent of {s['script_frames']}, "
        f"{s['replies_compared']} replies compared, {s['differences']} differences, "
        f"{s['not_sent']} not sent, {len(findings)} findings, {s['seconds']:.3f} s",
        file=out,
    )
    if s["reason"]:
        click.echo(f"  {s['reason']}", file=out)
    if "died_on" in s:
        d = s["died_on"]
        click.echo(
            f"  died on frame {d['frame']} {d['opcode']} (unique {d['unique']}); "
            f"{len(s['outstanding'])} requests were outstanding",
            file=out,
        )
    diffs = {k: v["differences"] for k, v in s["by_opcode"].items() if v["differences"]}
    if diffs:
        click.echo(
            "  differences by opcode: " + ", ".join(f"{k} {v}" for k, v in diffs.items()),
            file=out,
        )
    if s["unanswered"]:
        click.echo(f"  {s['unanswered']} requests unanswered in the recording and live", file=out)
    if "notifications" in s:
        n = s["notifications"]

        def counts(c: dict[str, int]) -> str:
            return ", ".join(f"{k} {v}" for k, v in sorted(c.items())) or "none"

        click.echo(
            f"  notifications: recorded {counts(n['recorded'])}; live {counts(n['live'])}",
            file=out,
        )
    if "requests_per_second" in s:
        click.echo(f"  {s['requests_per_second']} requests/s", file=out)
        for name, lat in s["latency"].items():
            click.echo(
                f"  {name:<14} {lat['count']:>7}  median {lat['median_us']:9.1f} µs  "
                f"p99 {lat['p99_us']:9.1f} µs  max {lat['max_us']:9.1f} µs",
                file=out,
            )


@click.command(context_settings={"ignore_unknown_options": False})
@click.argument("capture", metavar="CAPTURE", required=False)
@click.argument("daemon", nargs=-1, metavar="-- DAEMON [ARGS...]")
@options.read_option()
@options.write_option(
    dest="write_path", help="Also write the live run as a new capture ('-' = stdout)."
)
@click.option("--serial", is_flag=True, help="Send one request at a time.")
@click.option(
    "--speed",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    metavar="X",
    help="Keep the recorded pacing, X times faster; 0 = as fast as the daemon answers "
    "(and report requests/s and latency per opcode).",
)
@click.option(
    "--window",
    type=click.IntRange(min=0),
    default=16,
    show_default=True,
    metavar="N",
    help="With --speed 0: read-only requests (LOOKUP, GETATTR, READ, ...), OPENs and a "
    "file's RELEASE of the next N frames may go before their turn once the ids they name "
    "are known; 0 keeps the recorded order exactly.",
)
@options.timeout_option(
    default=10.0,
    help="Give up on the daemon when it leaves a request unanswered this long.",
)
@click.option(
    "--ignore-field",
    "ignore_field",
    multiple=True,
    metavar="FIELD[,FIELD...]",
    help="Do not compare these reply fields; a name matches whole dotted parts of a field "
    "name (attr.size, entry.generation, atime; data for file contents). Repeatable.",
)
@click.option(
    "--ignore",
    "ignore_old",
    multiple=True,
    metavar="FIELD[,FIELD...]",
    hidden=True,
    help="Deprecated name of --ignore-field.",
)
@click.option(
    "--compare-allocation",
    is_flag=True,
    help="Also compare the fields that follow the backing store's allocation (attr.blocks, "
    "statx blocks, statfs blocks/bfree/bavail/files/ffree), left out by default.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Compare every field, also those left out by default (times, cache validity, "
    "generations, inode numbers, allocation, padding), and directory listings in order.",
)
@click.option(
    "--handoff",
    type=click.Choice(["auto", "fd", "fusermount", "seccomp"]),
    default="auto",
    show_default=True,
    help="How the daemon gets its socket: 'fd' replaces the mountpoint argument (or {}) with "
    "/dev/fd/N (libfuse >= 3.3, pyfuse3); 'fusermount' stands in for fusermount3 when the "
    "daemon asks it to mount (libfuse 2 daemons; needs root, mounts nothing); 'seccomp' "
    "answers the daemon's own open of /dev/fuse and its mount(2) (daemons that mount by "
    "themselves, such as ntfs-3g and mergerfs; needs root, mounts nothing). 'auto' takes "
    "seccomp for a capture recorded through it (as root) unless {} names the mountpoint, "
    "else fd or fusermount.",
)
@options.format_option("text", "json", help="Report format on stdout: text or json.")
@options.fail_on_option(help="Exit 1 when a finding of this severity or worse is reported "
                        "for the live run; a difference always fails.")  # fmt: skip
def replay(
    capture: str | None,
    daemon: tuple[str, ...],
    read: str | None,
    write_path: str | None,
    serial: bool,
    speed: float,
    window: int,
    timeout: float,
    ignore_field: tuple[str, ...],
    ignore_old: tuple[str, ...],
    compare_allocation: bool,
    strict: bool,
    handoff: str,
    fmt: str,
    fail_on: str,
) -> Result:
    """Re-feed the requests of CAPTURE to a fresh DAEMON and report every difference.

    fusetrace plays the kernel: it hands the daemon a socket as /dev/fd/N in place of the
    mountpoint (write `{}` for it, or the mountpoint the capture recorded), sends the
    recorded INIT and requests, and compares each live reply with the recorded one. No
    mount, no /dev/fuse and no root are needed.

    Node ids, file handles and directory offsets the live daemon hands out differently are
    learned from its replies and rewritten into later requests. A request naming one the
    live daemon did not give (its LOOKUP or OPEN failed) is not sent, as the kernel would
    not send it; it is reported under the frame that differed. Times, cache validity,
    generations, inode numbers, allocation counters and padding are not compared, and
    listings are compared as sets, unless --strict. With --speed 0 the summary gives
    requests/s and latency per opcode.

    \b
    Examples:
      fusetrace replay trace.pcapng -- squashfuse_ll image.sqfs {}
      fusetrace replay --serial -w live.pcapng trace.pcapng -- ./mydaemon-v2 -f {}
      fusetrace replay --ignore-field attr.size --format json trace.pcapng -- mydaemon {}

    Exit status: 0 no differences, 1 differences or findings at or above --fail-on,
    3 unreadable capture or one cut short (after the report), 4 the daemon failed to start,
    died or stopped answering.
    """
    if read is not None:  # with -r, the first word after -- is the daemon's
        capture, daemon = read, ((capture,) if capture else ()) + daemon
    if capture is None or not daemon:
        raise click.UsageError("give the capture (CAPTURE or -r FILE) and -- DAEMON [ARGS...]")
    if ignore_old:
        click.echo(
            "fusetrace: warning: replay --ignore is now --ignore-field (check's --ignore "
            "takes rule codes); the old name still works",
            err=True,
        )
    policy = MatchPolicy.build(
        ignore_field + ignore_old, strict=strict, allocation=compare_allocation
    )
    options = ReplayOptions(
        serial=serial, speed=speed, timeout_ns=int(timeout * 1e9), policy=policy, window=window
    )
    # the capture may go to stdout (-w -): the report then goes to stderr
    out = sys.stderr if write_path == "-" else sys.stdout
    with ExitStack() as stack:
        reader = stack.enter_context(open_capture(capture))
        records, meta = _stream(capture, reader)
        byte_order = str(meta.get("byte_order", "little"))
        if byte_order != sys.byteorder:
            raise CaptureError(
                f"{capture}: recorded on a {byte_order}-endian machine; replay needs a daemon "
                f"on the same byte order (this machine is {sys.byteorder}-endian)"
            )
        engine = ReplayEngine(records, ProtocolCodec(byte_order), options)
        mountpoint = meta.get("mountpoint")
        if (
            handoff == "auto"
            and meta.get("handoff") == "seccomp"
            and os.geteuid() == 0
            and "{}" not in daemon[1:]
        ):
            # recorded through the seccomp hand-off: the daemon mounts by itself (ntfs-3g,
            # mergerfs, rclone), so it is replayed the same way; {} on the command line
            # asks for the /dev/fd/N hand-off, as in record
            handoff = "seccomp"

        sinks: list[FrameSink] = []
        tracked = _tracker_sink(byte_order)
        if tracked is not None:
            sinks.append(tracked[0])
            stack.callback(tracked[2])  # a replay that fails ends the tracker's process
        if write_path is not None:
            writer_file = stack.enter_context(open_output(write_path))
            # the recorded mountpoint is kept, so the live run replays with the same command
            mp = mountpoint if isinstance(mountpoint, str) else ""
            writer = host_writer(
                writer_file,
                {"daemon": list(daemon), "mountpoint": mp or None, "replay_of": capture},
                channels=[Channel(description=mp)],
            )
            sinks.append(lambda d, t, data: writer.write(d, t, data))

        total = _frame_count(capture)
        bar = _progress(total)

        def on_command(cmd: Command) -> None:
            if progress is not None and isinstance(cmd, SendFrame):
                progress.advance(task)

        with bar as progress:
            task = progress.add_task("replay", total=total) if progress else 0
            result, live = run(
                engine,
                list(daemon),
                mountpoint=mountpoint if isinstance(mountpoint, str) else None,
                sinks=sinks,
                on_command=on_command if progress is not None else None,
                handoff=handoff,
            )
        cut_short = bool(reader.info.truncated)
        findings = tracked[1]() if tracked is not None else []
    summary = _summary(result, live, speed)
    if fmt == "json":
        doc = {
            "capture": capture,
            "daemon": list(daemon),
            "summary": summary,
            "differences": [d.to_dict() for d in result.differences],
            "findings": [f.to_dict() for f in findings],
            "notes": result.notes,
            "notes_dropped": result.notes_dropped,
            "ignored": list(policy.ignore),
            "policy": {
                "strict": strict,
                "compare_allocation": compare_allocation,
                "window": window,
                "serial": serial,
            },
        }
        click.echo(json.dumps(doc, indent=2, default=str), file=out)
    else:
        _print_text(out, result, summary, findings)
    if result.outcome is not Outcome.COMPLETED:
        click.echo(f"fusetrace: error: {result.reason}", err=True)
        return Result(environment=True, cut_short=cut_short)
    from fusetrace.tracker import Severity

    errors = [f for f in findings if f.severity >= Severity.parse(fail_on)]
    return Result(failed=bool(result.differences or errors), cut_short=cut_short)


#: documented default ignores, for the man page and --help readers
IGNORED_BY_DEFAULT = {**DEFAULT_IGNORE, **ALLOCATION}
