"""``fusetrace top`` and ``record --top``: per-opcode rates, requests in flight, latency
percentiles, errors and bytes, on a screen refreshed about once a second.

Three sources feed one :class:`~fusetrace.observe.aggregate.Aggregate`: a capture file (or a
pipe from ``record -w -``), the recorder's capture path (``record --top``, frames taken off
the writer thread as ``--live`` does), and the kernel's fuse tracepoints (``--attach``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

import click

from fusetrace.cli import Result, options
from fusetrace.errors import EnvironmentProblem, ExitCode
from fusetrace.frame import Direction, Frame
from fusetrace.observe.aggregate import Aggregate
from fusetrace.protocol.abi import InitFlag, flag_names
from fusetrace.protocol.abi import errno_name as abi_errno_name
from fusetrace.report.units import latency

#: what the tracepoints cannot show, said on the screen and in the JSON
TRACEPOINT_GAPS = (
    "node ids",
    "payload (bytes are the frames' lengths)",
    "FORGET, BATCH_FORGET and INTERRUPT (not traced)",
    "notifications",
    "INIT flags (INIT came before the attach)",
)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _errors(errors: dict[str, int]) -> str:
    if not errors:
        return ""
    parts = []
    for e, n in sorted(errors.items(), key=lambda kv: -kv[1]):
        name = abi_errno_name(int(e))
        parts.append(f"{name} {n}")
    return ", ".join(parts)


class Top:
    """An aggregate shared between the thread that feeds it and the one that shows it."""

    def __init__(
        self,
        agg: Aggregate,
        *,
        header: Callable[[], list[str]] | None = None,
        notes: list[str] | None = None,
        live_rates: bool = True,
    ) -> None:
        self.agg = agg
        self.lock = threading.Lock()
        self._header = header
        self.notes = notes or []
        self.live_rates = live_rates
        self._prev: tuple[float, dict[str, int]] | None = None
        self.dropped = 0

    def feed(self, record: Frame) -> None:
        with self.lock:
            self.agg.feed(record)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            doc = self.agg.to_dict()
        if self.live_rates:
            now = time.monotonic()
            counts = {r["opcode"]: r["requests"] for r in doc["opcodes"]}
            if self._prev is not None and now > self._prev[0]:
                dt = now - self._prev[0]
                for r in doc["opcodes"]:
                    r["rate"] = round((r["requests"] - self._prev[1].get(r["opcode"], 0)) / dt, 1)
            else:
                for r in doc["opcodes"]:
                    r["rate"] = None
            self._prev = (now, counts)
        return doc

    def header_lines(self, doc: dict[str, Any]) -> list[str]:
        lines = list(self._header()) if self._header is not None else []
        conn = doc["connection"]
        if "version" in conn:
            names = flag_names(conn["flags"], InitFlag)
            shown = " ".join(names[:6]) + (f" +{len(names) - 6}" if len(names) > 6 else "")
            lines.append(
                f"FUSE {conn['version']}  max_background {conn['max_background']}  "
                f"congestion_threshold {conn['congestion_threshold']}  "
                f"max_write {conn['max_write']}  flags 0x{conn['flags']:x} ({shown})"
            )
        tail = f"  dropped {self.dropped}" if self.dropped else ""
        lines.append(
            f"{doc['frames']} frames  {_size(doc['bytes'])}  {doc['duration_ns'] / 1e9:.1f}s  "
            f"in flight {doc['in_flight']} (max {doc['max_in_flight']}){tail}"
        )
        return lines

    def rows(self, doc: dict[str, Any]) -> list[list[str]]:
        out = []
        for r in doc["opcodes"]:
            rate = r["rate"]
            out.append(
                [
                    r["opcode"],
                    str(r["requests"]),
                    "-" if rate is None else f"{rate:.1f}",
                    str(r["in_flight"]),
                    latency(r["p50_ns"]),
                    latency(r["p99_ns"]),
                    _errors(r["errors"]),
                    _size(r["bytes_in"]),
                    _size(r["bytes_out"]),
                ]
            )
        return out

    HEAD = ("opcode", "requests", "rate/s", "in flight", "p50", "p99", "errors", "bytes in",
            "bytes out")  # fmt: skip

    def render(self) -> Any:
        """The screen: a rich renderable."""
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        doc = self.snapshot()
        table = Table(expand=False, pad_edge=False, box=None, header_style="bold")
        for i, h in enumerate(self.HEAD):
            table.add_column(h, justify="left" if i in (0, 6) else "right", no_wrap=i != 6)
        for row in self.rows(doc):
            table.add_row(*row)
        parts: list[Any] = [Text(line) for line in self.header_lines(doc)]
        parts.append(table)
        parts.extend(Text(n, style="dim") for n in self.notes)
        return Group(*parts)

    def plain(self) -> str:
        doc = self.snapshot() if not self.live_rates else self._final()
        cells = [list(self.HEAD), *self.rows(doc)]
        widths = [max(len(r[i]) for r in cells) for i in range(len(self.HEAD))]
        lines = self.header_lines(doc)
        for row in cells:
            lines.append(
                "  ".join(
                    c.ljust(w) if i in (0, 6) else c.rjust(w)
                    for i, (c, w) in enumerate(zip(row, widths, strict=True))
                ).rstrip()
            )
        lines.extend(self.notes)
        return "\n".join(lines) + "\n"

    def _final(self) -> dict[str, Any]:
        """The whole session: rates over its whole duration."""
        with self.lock:
            return self.agg.to_dict()

    def final_json(self, extra: dict[str, Any]) -> str:
        doc = self._final()
        doc.update(extra)
        if self.dropped:
            doc["dropped"] = self.dropped
        return json.dumps(doc, indent=2)


@contextlib.contextmanager
def screen(top: Top, out: TextIO, interval: float, *, enabled: bool = True) -> Iterator[None]:
    """Show ``top`` on ``out`` (a rich Live display) while the block runs."""
    if not enabled:
        yield
        return
    from rich.console import Console
    from rich.live import Live

    console = Console(file=out, highlight=False, emoji=False)
    with Live(
        get_renderable=top.render,
        console=console,
        refresh_per_second=1 / interval,
        redirect_stdout=False,
        redirect_stderr=False,
    ):
        yield


class RecordTop:
    """``record --top``: the screen on standard error while recording.

    :meth:`put` runs in the capture writer thread (off the forwarding path): it only reads
    the frame's header into the aggregate, under a lock the screen takes once a second.
    """

    def __init__(self, out: TextIO, *, output: str, daemon: list[str], mountpoint: str) -> None:
        self.top = Top(Aggregate(sys.byteorder), header=self._header)
        self._output = output
        self._daemon = " ".join(daemon)
        self._mountpoint = mountpoint
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(screen(self.top, out, 1.0))

    def _header(self) -> list[str]:
        size = ""
        with contextlib.suppress(OSError):
            st = os.stat(self._output)
            if st.st_size:
                size = f" ({_size(st.st_size)})"
        where = "standard output" if self._output == "-" else self._output
        return [f"{self._mountpoint}: {self._daemon}", f"capture: {where}{size}"]

    def put(self, frame: Frame) -> None:
        try:
            self.top.feed(frame)
        except Exception:  # the screen must never stop recording
            self.top.dropped += 1

    def close(self) -> None:
        self._stack.close()


# ---- the command -----------------------------------------------------------------------


def _conn_limits(conn: int) -> list[str]:
    """max_background and congestion_threshold as fusectl shows them, if it is mounted."""
    out = []
    for name in ("max_background", "congestion_threshold"):
        try:
            with open(f"/sys/fs/fuse/connections/{conn}/{name}") as f:
                out.append(f"{name} {f.read().strip()}")
        except OSError:
            pass
    return out


def _run_attach(
    mountpoint: str, output: str | None, fmt: str, duration: float | None, interval: float
) -> None:
    from fusetrace.proxy import mount as mounts
    from fusetrace.proxy.tracefs import End, TraceSession

    real = os.path.realpath(mountpoint)
    entry = mounts.find_mount(real)
    if entry is None:
        raise click.BadParameter(f"{mountpoint} is not a FUSE mount", param_hint="'--attach'")
    if os.geteuid() != 0:
        raise EnvironmentProblem("--attach reads the kernel's tracepoints: it needs root")
    limits = _conn_limits(entry.conn)
    agg = Aggregate(sys.byteorder)
    notes = ["tracepoints cannot show: " + "; ".join(TRACEPOINT_GAPS)]

    def header() -> list[str]:
        lost = f"  lost {session.lost} events" if session.lost else ""
        lines = [
            f"{entry.mountpoint}: {entry.source} ({entry.fstype}), connection {entry.conn}, "
            f"through fuse tracepoints{lost}",
            "  ".join(limits) if limits else "limits: fusectl not mounted",
        ]
        if output is not None and writer is not None:
            size = ""
            with contextlib.suppress(OSError):
                size = f" ({_size(os.stat(output).st_size)})"
            lines.append(f"capture: {output}{size}, {writer.frames} header-only frames")
        return lines

    top = Top(agg, header=header, notes=notes, live_rates=True)
    writer = None
    sink = None
    if output is not None:
        import platform

        from fusetrace.capture.files import host_writer, open_output
        from fusetrace.capture.pcapng import Channel

        sink = open_output(output)
        meta = {
            "source": "tracepoints",
            "tracepoints": ["fuse:fuse_request_send", "fuse:fuse_request_end"],
            "header_only": True,
            "mountpoint": entry.mountpoint,
            "mount_source": entry.source,
            "mount_type": entry.fstype,
            "connection": entry.conn,
            "kernel_release": platform.release(),
        }
        writer = host_writer(sink, meta, channels=[Channel(description=entry.mountpoint)])
    offset = time.time_ns() - time.monotonic_ns()
    import struct

    in_head = struct.Struct("=IIQQIIIHH")
    out_head = struct.Struct("=IiQ")
    session = TraceSession(entry.conn)
    done = threading.Event()
    failed: list[Exception] = []

    def on_term(signum: int, frame: Any) -> None:
        done.set()

    # Ctrl-C and SIGTERM end the wait from the moment the tracepoints are set up, so a
    # signal that comes right after "attached" still prints the figures
    old_term = signal.signal(signal.SIGTERM, on_term)
    old_int = signal.signal(signal.SIGINT, on_term)
    try:
        with session:
            click.echo(
                f"fusetrace: attached to {entry.mountpoint} (connection {entry.conn}) through "
                "the fuse tracepoints; Ctrl-C ends",
                err=True,
            )

            def pump() -> None:
                try:
                    _pump()
                except Exception as e:  # reported after tracefs is restored
                    failed.append(e)
                finally:
                    done.set()  # reading ended (stop, or an error): so does the wait

            def _pump() -> None:
                for ev in session.events():
                    t = ev.t_ns + offset
                    with top.lock:
                        if isinstance(ev, End):
                            agg.reply(t, ev.unique, ev.error, ev.len)
                        else:
                            agg.request(t, ev.unique, ev.opcode, ev.len)
                    if writer is not None:
                        if isinstance(ev, End):
                            head = out_head.pack(ev.len, ev.error, ev.unique)
                            writer.write(Direction.OUTBOUND, t, head, orig_len=max(ev.len, 16))
                        else:
                            head = in_head.pack(ev.len, ev.opcode, ev.unique, 0, 0, 0, 0, 0, 0)
                            writer.write(Direction.INBOUND, t, head, orig_len=max(ev.len, 40))

            reader = threading.Thread(target=pump, name="tracepoints", daemon=True)
            reader.start()
            try:
                with screen(top, sys.stdout, interval, enabled=fmt == "screen"):
                    done.wait(duration)
            except KeyboardInterrupt:
                pass
            session.stop()
            reader.join(30)
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)
        if sink is not None:
            with contextlib.suppress(OSError):
                sink.close()
    if session.leftover:
        click.echo(f"fusetrace: warning: could not remove the ftrace instance {session.leftover}",
                   err=True)  # fmt: skip
    if failed:
        e = failed[0]
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise EnvironmentProblem(f"reading the fuse tracepoints failed: {why}")
    _print_final(top, fmt, {"source": "tracepoints", "lost_events": session.lost,
                            "cannot_show": list(TRACEPOINT_GAPS)})  # fmt: skip
    if writer is not None:
        click.echo(f"fusetrace: {writer.frames} header-only frames written to {output}", err=True)


def _print_final(top: Top, fmt: str, extra: dict[str, Any]) -> None:
    if fmt == "json":
        sys.stdout.write(top.final_json(extra) + "\n")
    elif fmt == "text":
        sys.stdout.write(top.plain())
    sys.stdout.flush()


def _run_capture(path: str, fmt: str, duration: float | None, interval: float) -> int:
    from fusetrace.capture.files import open_capture

    with open_capture(path) as reader:
        info = reader.info
        daemon = info.meta.get("daemon")
        source = info.meta.get("source")

        def header() -> list[str]:
            size = ""
            if path != "-":
                with contextlib.suppress(OSError):
                    size = f" ({_size(os.path.getsize(path))})"
            if isinstance(daemon, list):
                who = " ".join(map(str, daemon))
            else:
                where = info.meta.get("mountpoint")
                who = f"{info.meta.get('mount_source', 'daemon unknown')}" + (
                    f" on {where}" if where else ""
                )
            who = who if len(who) <= 100 else who[:99] + "…"
            return [f"{path}{size}: {who}" + (f" [{source}]" if source else "")]

        top = Top(Aggregate(info.byte_order), header=header, live_rates=path == "-")
        deadline = None if duration is None else time.monotonic() + duration
        try:
            with screen(top, sys.stdout, interval, enabled=fmt == "screen"):
                for n, rec in enumerate(reader):
                    top.feed(rec)
                    if deadline is not None and n % 1024 == 0 and time.monotonic() > deadline:
                        break
        except KeyboardInterrupt:
            pass
        top.live_rates = False
        _print_final(top, fmt, {"source": source or "capture"})
        if info.truncated:
            click.echo(
                f"fusetrace: warning: capture cut short at offset {info.truncated_at}",
                err=True,
            )
            return ExitCode.BAD_CAPTURE
    return ExitCode.OK


@click.command(
    "top",
    epilog="""\b
Examples:
  fusetrace top --attach /mnt
  fusetrace top --attach /mnt -w kernel.pcapng --duration 60 --format json
  fusetrace record -w - /mnt -- squashfuse_ll -f img.sqfs {} | fusetrace top -
  fusetrace top trace.pcapng --format text
""",
)
@click.argument("capture", required=False, metavar="[FILE|-]")
@click.option(
    "--attach",
    metavar="MOUNTPOINT",
    help="Watch an already-mounted FUSE filesystem through the kernel's fuse tracepoints "
    "(no remount; root only).",
)
@click.option(
    "-w",
    "--write",
    "output",
    metavar="FILE",
    help="With --attach: also write what the tracepoints show to FILE, a header-only capture.",
)
@options.format_option(
    "text",
    "json",
    help="text: on a terminal, the screen refreshed live; otherwise the final table, once, "
    "at the end. json: the final table as one JSON document.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Stop after this long (otherwise at the end of FILE, or on Ctrl-C).",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="Seconds between screen refreshes.",
)
def top(
    capture: str | None,
    attach: str | None,
    output: str | None,
    fmt: str,
    duration: float | None,
    interval: float,
) -> Result | None:
    """Show per-opcode rates, requests in flight, p50/p99 latency, errors and bytes.

    With FILE, the capture is read (a pipe from `fusetrace record -w -` is shown live).
    With --attach, an already-mounted FUSE filesystem is watched through the kernel's
    fuse_request_send and fuse_request_end tracepoints, in a private ftrace instance that
    is removed at the end; tracefs is left as it was found. The tracepoints give no node
    ids, no payload and no FORGET or INTERRUPT; the screen says so.

    Ctrl-C ends (exit status 0).
    """
    if (capture is None) == (attach is None):
        raise click.UsageError("give either a capture FILE or --attach MOUNTPOINT")
    if output is not None and attach is None:
        raise click.BadParameter("-w goes with --attach", param_hint="'-w'")
    if fmt == "text" and sys.stdout.isatty():
        fmt = "screen"
    if attach is not None:
        _run_attach(attach, output, fmt, duration, interval)
        return None
    assert capture is not None
    return Result.from_status(_run_capture(capture, fmt, duration, interval))
