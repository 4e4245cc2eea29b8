"""The kernel's fuse tracepoints, read through tracefs: ``fusetrace top --attach``.

``fuse:fuse_request_send`` fires when the kernel queues a request for the daemon
(connection, unique, opcode, len) and ``fuse:fuse_request_end`` when the request ends
(connection, unique, len and error of the reply). FORGET, BATCH_FORGET and INTERRUPT do not
go through them, and neither carries node ids or payload.

:class:`TraceSession` sets up a private ftrace instance (``instances/fusetrace-PID``) with
only those two events enabled, filtered on one connection, and reads its ``trace_pipe``. The
global buffer, its events, sizes and filters are never written. At the end the instance is
removed and, if fusetrace had to mount tracefs, tracefs is unmounted again, so tracefs is
left as it was found. :func:`tracefs_state` describes that state, for before/after checks.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import select
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from fusetrace.errors import EnvironmentProblem

#: where tracefs is mounted on current systems; the debugfs path is the older one
TRACEFS = "/sys/kernel/tracing"
DEBUGFS_TRACING = "/sys/kernel/debug/tracing"
EVENTS = ("fuse_request_send", "fuse_request_end")
#: the fields each event must have (read from its ``format`` file)
FIELDS = {
    "fuse_request_send": ("connection", "unique", "opcode", "len"),
    "fuse_request_end": ("connection", "unique", "len", "error"),
}
#: kilobytes per CPU of the private ring buffer
BUFFER_KB = 4096


@dataclass(frozen=True, slots=True)
class Send:
    """``fuse_request_send``: the kernel queued a request. ``t_ns``: CLOCK_MONOTONIC."""

    t_ns: int
    connection: int
    unique: int
    opcode: int
    len: int
    pid: int


@dataclass(frozen=True, slots=True)
class End:
    """``fuse_request_end``: a request ended (answered, or failed by the kernel)."""

    t_ns: int
    connection: int
    unique: int
    len: int
    error: int


Event = Send | End

_LINE = re.compile(
    r"^\s*.*?-(?P<pid>\d+)\s+(?:\(\s*[-\d]+\)\s+)?\[\d+\]\s+(?:\S+\s+)?"
    r"(?P<sec>\d+)\.(?P<usec>\d+):\s+(?P<event>fuse_request_send|fuse_request_end):\s+"
    r"(?P<rest>.*)$"
)
_SEND = re.compile(r"connection (\d+) req (\d+) opcode (\d+) \([^)]*\) len (\d+)")
_END = re.compile(r"connection (\d+) req (\d+) len (\d+) error (-?\d+)")
_LOST = re.compile(r"\[LOST (\d+) EVENTS\]")


def parse_line(line: str) -> Event | int | None:
    """One ``trace_pipe`` line: an event, the number of events the buffer lost (an int),
    or None for anything else."""
    m = _LINE.match(line)
    if m is None:
        lost = _LOST.search(line)
        return int(lost.group(1)) if lost else None
    usec = m.group("usec")
    t_ns = int(m.group("sec")) * 1_000_000_000 + int(usec.ljust(9, "0")[:9])
    rest = m.group("rest")
    if m.group("event") == "fuse_request_send":
        s = _SEND.match(rest)
        if s is None:
            return None
        conn, unique, opcode, length = map(int, s.groups())
        return Send(t_ns, conn, unique, opcode, length, int(m.group("pid")))
    e = _END.match(rest)
    if e is None:
        return None
    conn, unique, length, error = map(int, e.groups())
    return End(t_ns, conn, unique, length, error)


def _mounts() -> list[tuple[str, str]]:
    with open("/proc/self/mounts") as f:
        return [(p[1], p[2]) for p in (line.split() for line in f) if len(p) > 2]


def find_tracefs() -> str | None:
    """The mounted tracefs directory, if any."""
    mounted = _mounts()
    for where, fstype in mounted:
        if fstype == "tracefs" and where == TRACEFS:
            return TRACEFS
    for where, fstype in mounted:
        if fstype == "tracefs":
            return where
    if os.path.isdir(os.path.join(DEBUGFS_TRACING, "events")):
        return DEBUGFS_TRACING
    return None


def read_format(root: str, event: str) -> dict[str, str]:
    """The fields of ``fuse:EVENT`` from its ``format`` file: name -> C type."""
    path = os.path.join(root, "events", "fuse", event, "format")
    fields: dict[str, str] = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("field:"):
                continue
            decl = line.split(";", 1)[0][len("field:") :]
            ctype, _, name = decl.rpartition(" ")
            fields[name] = ctype
    return fields


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return "?"


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def tracefs_state(root: str | None = None) -> dict[str, str] | None:
    """What fusetrace could change in tracefs: the fuse events' enable and filter files, the
    global buffer size and the list of instances. None when tracefs is not mounted."""
    root = root or find_tracefs()
    if root is None:
        return None
    state = {
        "buffer_size_kb": _read(os.path.join(root, "buffer_size_kb")),
        "tracing_on": _read(os.path.join(root, "tracing_on")),
        "instances": " ".join(sorted(os.listdir(os.path.join(root, "instances")))),
    }
    for ev in EVENTS:
        d = os.path.join(root, "events", "fuse", ev)
        state[f"{ev}/enable"] = _read(os.path.join(d, "enable"))
        state[f"{ev}/filter"] = _read(os.path.join(d, "filter"))
    return state


class TraceSession:
    """A private ftrace instance with the fuse events of one connection enabled.

    Use as a context manager; :meth:`events` yields what the kernel reports until
    :meth:`stop` is called (from another thread or a signal handler). Needs root.
    """

    def __init__(self, connection: int, *, buffer_kb: int = BUFFER_KB) -> None:
        self.connection = connection
        self.buffer_kb = buffer_kb
        self.mounted_by_us = False
        self.root: str | None = None
        self.instance: str | None = None
        self.lost = 0
        #: set when the instance could not be removed (what and why)
        self.leftover: str | None = None
        self._stop_r, self._stop_w = os.pipe()
        self._pipe: int | None = None

    # ---- setup and teardown ----------------------------------------------------------

    def __enter__(self) -> TraceSession:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        if os.geteuid() != 0:
            raise EnvironmentProblem("--attach reads the kernel's tracepoints: it needs root")
        root = find_tracefs()
        if root is None:
            os.makedirs(TRACEFS, exist_ok=True)
            r = subprocess.run(
                ["mount", "-t", "tracefs", "nodev", TRACEFS],
                capture_output=True,
                text=True,
                check=False,
            )
            if r.returncode != 0:
                raise EnvironmentProblem(
                    f"cannot mount tracefs on {TRACEFS}: {r.stderr.strip() or r.returncode}"
                )
            self.mounted_by_us = True
            root = TRACEFS
        self.root = root
        for ev in EVENTS:
            try:
                fields = read_format(root, ev)
            except FileNotFoundError:
                raise EnvironmentProblem(
                    f"this kernel has no fuse:{ev} tracepoint ({os.uname().release}); "
                    "--attach needs the fuse request tracepoints"
                ) from None
            missing = [f for f in FIELDS[ev] if f not in fields]
            if missing:
                raise EnvironmentProblem(
                    f"fuse:{ev} has no field {', '.join(missing)} on this kernel"
                )
        inst = os.path.join(root, "instances", f"fusetrace-{os.getpid()}")
        try:
            os.mkdir(inst)
        except OSError as e:
            raise EnvironmentProblem(f"cannot create the ftrace instance {inst}: "
                                     f"{e.strerror}") from None  # fmt: skip
        self.instance = inst
        _write(os.path.join(inst, "tracing_on"), "0")
        _write(os.path.join(inst, "buffer_size_kb"), str(self.buffer_kb))
        with contextlib.suppress(OSError):  # a kernel without "mono" keeps its default
            _write(os.path.join(inst, "trace_clock"), "mono")
        for ev in EVENTS:
            d = os.path.join(inst, "events", "fuse", ev)
            _write(os.path.join(d, "filter"), f"connection == {self.connection}")
            _write(os.path.join(d, "enable"), "1")
        self._pipe = os.open(os.path.join(inst, "trace_pipe"), os.O_RDONLY | os.O_NONBLOCK)
        _write(os.path.join(inst, "tracing_on"), "1")

    def close(self) -> None:
        """Disable the events, remove the instance, unmount tracefs if it was ours."""
        inst = self.instance
        if inst is not None:
            for path, value in [
                (os.path.join(inst, "tracing_on"), "0"),
                *[(os.path.join(inst, "events", "fuse", ev, "enable"), "0") for ev in EVENTS],
                *[(os.path.join(inst, "events", "fuse", ev, "filter"), "0") for ev in EVENTS],
            ]:
                with contextlib.suppress(OSError):
                    _write(path, value)
        if self._pipe is not None:
            os.close(self._pipe)
            self._pipe = None
        if inst is not None:
            for _ in range(50):
                try:
                    os.rmdir(inst)
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY:
                        self.leftover = f"{inst}: {e.strerror}"
                        break
                    select.select([], [], [], 0.02)
            else:
                self.leftover = f"{inst}: still busy"
            self.instance = None
        if self.mounted_by_us:
            subprocess.run(["umount", TRACEFS], capture_output=True, check=False)
            self.mounted_by_us = False
        for fd in (self._stop_r, self._stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._stop_r = self._stop_w = -1

    def stop(self) -> None:
        """Make :meth:`events` return (safe from another thread or a signal handler)."""
        with contextlib.suppress(OSError):
            os.write(self._stop_w, b"x")

    # ---- reading ---------------------------------------------------------------------

    def events(self, on_idle: Callable[[], None] | None = None) -> Iterator[Event]:
        """What the tracepoints report, in time order, until :meth:`stop`. ``on_idle`` is
        called whenever the pipe is found empty (about ten times a second)."""
        assert self._pipe is not None
        pipe = self._pipe
        tail = b""
        stopping = False
        while True:
            try:
                chunk = os.read(pipe, 1 << 16)
            except BlockingIOError:
                chunk = None
            if not chunk:
                # empty: trace_pipe's poll() may wait for buffer_percent, so sleep instead
                if stopping:
                    break
                if on_idle is not None:
                    on_idle()
                ready, _, _ = select.select([self._stop_r], [], [], 0.1)
                stopping = bool(ready)
                continue
            lines = (tail + chunk).split(b"\n")
            tail = lines.pop()
            for raw in lines:
                ev = parse_line(raw.decode("utf-8", "replace"))
                if isinstance(ev, int):
                    self.lost += ev
                elif ev is not None and ev.connection == self.connection:
                    yield ev
        if tail:
            ev = parse_line(tail.decode("utf-8", "replace"))
            if isinstance(ev, Send | End) and ev.connection == self.connection:
                yield ev
