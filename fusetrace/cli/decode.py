"""``fusetrace decode``: print the frames of a capture, one line each (or every field)."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable
from typing import Any, TextIO

import click

from fusetrace.capture.files import open_capture
from fusetrace.cli import Result, options
from fusetrace.protocol.abi import FUSE_INT_REQ_BIT, NotifyCode, Opcode
from fusetrace.protocol.stream import DecodedFrame, FrameDecoder
from fusetrace.report.frames import Stats, json_line, summary_line, verbose_lines

_FLUSH_LINES = 4096

Predicate = Callable[[DecodedFrame], bool]


def _parse_ops(text: str) -> set[str]:
    names: set[str] = set()
    for raw in text.split(","):
        item = raw.strip().upper()
        if not item:
            continue
        if item.isdigit():
            try:
                item = Opcode(int(item)).name
            except ValueError:
                raise click.BadParameter(f"unknown opcode {item}", param_hint="'--op'") from None
        if item.startswith("FUSE_"):
            item = item[5:]
        is_notify = item.startswith("NOTIFY_") and item[7:] in NotifyCode.__members__
        if item in Opcode.__members__ or is_notify:
            names.add(item)
        elif item in NotifyCode.__members__:
            names.add("NOTIFY_" + item)
        else:
            raise click.BadParameter(f"unknown opcode {raw.strip()!r}", param_hint="'--op'")
    return names


#: body fields that hold a node id (entries, LINK, RENAME, COPY_FILE_RANGE, notifications)
_NODEID_KEYS = ("nodeid", "oldnodeid", "newdir", "nodeid_out", "ino", "parent", "child")


def _mentions(body: dict[str, Any], nodeid: int) -> bool:
    """Does a body name ``nodeid`` (an entry, a dirent, BATCH_FORGET, a notification)?"""
    for key in _NODEID_KEYS:
        if body.get(key) == nodeid:
            return True
    for key in ("entries", "forgets"):
        items = body.get(key)
        if items and any(e.get("nodeid") == nodeid for e in items):
            return True
    nodeids = body.get("nodeids")
    return bool(nodeids and nodeid in nodeids)


def _build_filter(
    ops: set[str] | None,
    nodeid: int | None,
    unique: int | None,
    errors: bool,
    since: float | None,
    until: float | None,
    t0: list[int],
    frames: options.FrameSet | None = None,
) -> Predicate | None:
    """One predicate over a frame; a reply is judged by its request (so the pair shows)."""
    tests: list[Predicate] = []
    if frames is not None:

        def by_number(f: DecodedFrame) -> bool:
            return f.record.index + 1 in frames

        tests.append(by_number)
    if ops:

        def by_op(f: DecodedFrame) -> bool:
            d = f.decoded
            if d is None:
                return False
            name = ("NOTIFY_" + d.name) if d.kind == "notify" else d.name
            return name in ops

        tests.append(by_op)
    if nodeid is not None:

        def by_nodeid(f: DecodedFrame) -> bool:
            d = f.decoded
            if d is None:
                return False
            if d.kind == "request":
                return d.header.nodeid == nodeid or _mentions(d.body, nodeid)  # type: ignore[union-attr]
            req = f.request
            if req is not None and req.decoded is not None and req.decoded.nodeid == nodeid:
                return True
            return _mentions(d.body, nodeid)

        tests.append(by_nodeid)
    if unique is not None:
        wanted = {unique, unique | FUSE_INT_REQ_BIT}

        def by_unique(f: DecodedFrame) -> bool:
            d = f.decoded
            return d is not None and d.unique in wanted

        tests.append(by_unique)
    if errors:

        def by_error(f: DecodedFrame) -> bool:
            d = f.decoded
            return d is not None and bool(d.error)

        tests.append(by_error)
    if since is not None or until is not None:
        lo = since if since is not None else float("-inf")
        hi = until if until is not None else float("inf")

        def by_time(f: DecodedFrame) -> bool:
            t = (f.record.t_ns - t0[0]) / 1e9
            return lo <= t <= hi

        tests.append(by_time)
    if not tests:
        return None
    if len(tests) == 1:
        return tests[0]
    return lambda f: all(t(f) for t in tests)


def _tracker(byte_order: str, connection: Any) -> Any:
    from fusetrace.tracker import Tracker

    return Tracker(byte_order=byte_order, connection=connection)


def _severity(name: str) -> Any:
    from fusetrace.tracker import Severity

    return Severity.parse(name)


def _finding_text(finding: Any) -> str:
    return (
        f"    ! {finding.rule} {finding.severity.label} ({finding.culprit.value}): "
        f"{finding.message}"
    )


@click.command(
    "decode",
    epilog="""\b
Examples:
  fusetrace decode trace.pcapng
  fusetrace decode -r trace.pcapng --op LOOKUP,READ --nodeid 5
  fusetrace decode trace.pcapng --frame 120          (a frame `fusetrace check` cites)
  fusetrace decode trace.pcapng --frame 100-200 --unique 0x1b5c
  fusetrace decode trace.pcapng --errors -v
  fusetrace decode trace.pcapng --format jsonl | jq 'select(.opcode == "READ")'
  fusetrace decode trace.pcapng --stats
  cat trace.pcapng | fusetrace decode - --check
""",
)
@click.argument("capture", metavar="FILE|-", required=False)
@options.read_option()
@click.option("-v", "--verbose", is_flag=True, help="Print every field of each frame, nested.")
@options.format_option("text", "jsonl", "json", "parquet", help="text lines, or one JSON "
                       "object per frame (jsonl); json only with --stats; parquet: one row per "
                       "frame with the jsonl fields, written to the --output file.")  # fmt: skip
@options.output_option(help="With --format parquet: the Parquet file to write ('-': standard "
                       "output).")  # fmt: skip
@click.option("--frame", "frames", type=options.FRAMES, metavar="N[-M][,...]",
              help="Only these frames, numbered from 1 as in Wireshark and in the findings of "
              "`fusetrace check`: N, N-M, N- (to the end), comma-separated.")  # fmt: skip
@click.option("--op", "ops", metavar="NAMES", help="Only these opcodes, e.g. LOOKUP,READ "
              "(notifications as NOTIFY_INVAL_ENTRY); replies follow their request.")  # fmt: skip
@click.option("--nodeid", type=options.ID, metavar="ID",
              help="Only frames about node ID (decimal or 0x-hex): requests on it or naming "
              "it, their replies, replies and notifications naming it.")  # fmt: skip
@click.option(
    "--unique",
    type=options.ID,
    metavar="ID",
    help="Only the request with this unique (decimal or 0x-hex), its reply and its INTERRUPT.",
)
@click.option("--errors", is_flag=True, help="Only failed replies (error != 0), each after the "
              "request it answers, as strace shows a call and its error.")  # fmt: skip
@click.option(
    "--since",
    type=float,
    metavar="SECONDS",
    help="Only frames at least this long after the first frame.",
)
@click.option(
    "--until",
    type=float,
    metavar="SECONDS",
    help="Only frames at most this long after the first frame.",
)
@click.option(
    "--stats",
    is_flag=True,
    help="Print per-opcode counts, errors by errno and latency percentiles instead of frames.",
)
@click.option(
    "--check",
    is_flag=True,
    help="Run the protocol checker and print its findings under their frame.",
)
@options.fail_on_option(help="With --check: exit 1 when a finding of this severity or worse "
                        "is reported.")  # fmt: skip
@click.option("--engine", type=click.Choice(["fast", "construct"]), default="fast",
              show_default=True, help="Body decoder: derived struct layouts, or construct "
              "itself (slower; same result).")  # fmt: skip
def decode(
    capture: str | None,
    read: str | None,
    verbose: bool,
    fmt: str,
    output: str | None,
    frames: options.FrameSet | None,
    ops: str | None,
    nodeid: int | None,
    unique: int | None,
    errors: bool,
    since: float | None,
    until: float | None,
    stats: bool,
    check: bool,
    fail_on: str,
    engine: str,
) -> Result:
    """Decode a FUSE capture: one line per frame, like tshark.

    Each line starts with the frame number as Wireshark counts it (from 1), then the time
    since the first frame and the direction. Requests (K>D) show the unique, the opcode, the
    node id and the key arguments; replies (D>K) show the request's opcode, ok or the error
    name (-ENOENT), the key reply fields and the latency. Ids print in decimal; options
    that take one accept decimal or 0x-hex. Filters combine (all must hold); a reply is
    shown when its request is.

    Exit status: 0, or 1 with --check when a finding at or above --fail-on is reported,
    3 when the capture cannot be read or is cut short (after printing every whole frame).
    """
    paths = options.capture_paths(read, capture)
    if len(paths) > 1:
        raise click.UsageError("decode reads one capture: give it with -r FILE or as FILE")
    path = paths[0]
    if fmt == "json" and not stats:
        raise click.BadParameter("json goes with --stats; use jsonl for frames",
                                 param_hint="'--format'")  # fmt: skip
    if check and stats:
        raise click.BadParameter(
            "--check prints findings under frames; `fusetrace check` summarises them",
            param_hint="'--check'",
        )
    if (fmt == "parquet") != (output is not None):
        raise click.BadParameter("parquet is written to a file: --format parquet --output FILE",
                                 param_hint="'--output'")  # fmt: skip
    if fmt == "parquet" and (stats or check or verbose):
        raise click.BadParameter("parquet holds frames, not --stats, --check or -v",
                                 param_hint="'--format'")  # fmt: skip
    op_names = _parse_ops(ops) if ops else None
    threshold = _severity(fail_on) if check else None
    out: TextIO = sys.stdout
    with open_capture(path) as reader:
        info = reader.info
        # summary lines and statistics read few bodies: those are decoded when read
        lazy = fmt == "text" and not verbose and nodeid is None
        decoder = FrameDecoder(info.byte_order, engine=engine, lazy=lazy)  # type: ignore[arg-type]
        # one pass: the connection model reads each frame once for the decoder and the tracker
        tracker = _tracker(info.byte_order, decoder.connection) if check else None
        connection_feed = decoder.connection.feed
        decoded_frame = decoder.frame
        t0 = [0]
        keep = _build_filter(op_names, nodeid, unique, errors, since, until, t0, frames)
        # with only --frame N-M and nothing that needs the rest, stop after M
        last = frames.last if frames is not None and tracker is None else None
        summary = Stats() if stats else None
        lines: list[str] = []
        found = 0
        feed = decoder.feed
        render: Callable[[DecodedFrame, int], str]
        render = json_line if fmt == "jsonl" else summary_line
        records = rest = iter(reader)
        head = next(records, None)
        if head is not None:
            t0[0] = head.t_ns
            records = itertools.chain((head,), records)
        if output is not None:
            from fusetrace.cli.parquet import write_parquet

            write_parquet(output, records, feed, keep, t0[0], info.meta)
            records = iter(())
        elif keep is None and tracker is None and summary is None and not verbose:
            # the common case, kept tight: decode, render, write in chunks, each made by a
            # list comprehension (less work a frame than a loop that appends and counts);
            # after the first chunk (which holds the first record) straight from the reader
            base = t0[0]
            chunks = records
            while True:
                lines = [
                    render(decoded_frame(connection_feed(rec)), base)
                    for rec in itertools.islice(chunks, _FLUSH_LINES)
                ]
                if not lines:
                    break
                out.write("\n".join(lines))
                out.write("\n")
                chunks = rest
            records = iter(())
        elif keep is None and tracker is None and summary is not None:
            # --stats over every frame: count, nothing to render
            count = summary.feed
            for rec in records:
                count(decoded_frame(connection_feed(rec)))
            records = iter(())
        for rec in records:
            ex = connection_feed(rec)
            frame = decoded_frame(ex)
            findings = tracker.judge(ex) if tracker is not None else ()
            if keep is not None and not keep(frame):
                if last is not None and rec.index + 1 >= last:
                    break
                continue
            if summary is not None:
                summary.feed(frame)
                continue
            if errors and frame.request is not None:
                # strace style: the call, then its error
                lines.append(render(frame.request, t0[0]))
                if verbose and fmt == "text":
                    lines.extend(verbose_lines(frame.request))
            lines.append(render(frame, t0[0]))
            if verbose and fmt == "text":
                lines.extend(verbose_lines(frame))
            for f in findings:
                found += f.severity >= threshold
                lines.append(_finding_line(f, fmt))
            if len(lines) >= _FLUSH_LINES:
                out.write("\n".join(lines))
                out.write("\n")
                lines.clear()
            if last is not None and rec.index + 1 >= last:
                break
        if tracker is not None and summary is None:
            for f in tracker.finish():
                found += f.severity >= threshold
                lines.append(_finding_line(f, fmt))
        if lines:
            out.write("\n".join(lines))
            out.write("\n")
        if summary is not None:
            _print_stats(summary, fmt, out)
        out.flush()
        if info.truncated:
            click.echo(
                f"fusetrace: warning: capture cut short at offset {info.truncated_at}: "
                "the last block is incomplete; every whole frame before it was decoded",
                err=True,
            )
    return Result(failed=found > 0, cut_short=info.truncated)


def _finding_line(finding: Any, fmt: str) -> str:
    if fmt == "jsonl":
        import json

        return json.dumps({"kind": "finding", **finding.to_dict()}, separators=(",", ":"))
    return _finding_text(finding)


def _print_stats(summary: Stats, fmt: str, out: TextIO) -> None:
    if fmt in ("json", "jsonl"):
        import json

        out.write(json.dumps(summary.to_dict(), indent=None if fmt == "jsonl" else 2) + "\n")
    elif out.isatty():
        from rich.console import Console

        Console(file=out, highlight=False, emoji=False, markup=False).print(summary.render_rich())
    else:
        out.write(summary.render_plain())
