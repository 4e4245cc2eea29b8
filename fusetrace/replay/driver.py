"""The replay driver: the few lines of I/O around the sans-IO engine.

It hands the daemon one end of a ``SOCK_SEQPACKET`` socketpair as ``/dev/fd/N`` (no mount, no
/dev/fuse, no root), then runs the engine's commands: frames go to the socket, frames from the
socket become events, wake-ups become ``select`` timeouts. Every frame that crosses the socket
can be written to a new capture and fed to the tracker. No protocol logic lives here.
"""

from __future__ import annotations

import errno
import select
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fusetrace.errors import DaemonError
from fusetrace.proxy import daemon as daemons
from fusetrace.record import Direction
from fusetrace.replay.engine import (
    Command,
    DaemonGone,
    Event,
    Finish,
    FrameReceived,
    ReplayEngine,
    ReplayResult,
    SendFrame,
    Start,
    Tick,
    WakeAt,
)

#: socket buffer for each direction: the largest frame (1 MiB WRITE or READ reply, more
#: with a raised max_pages) must fit in one message (daemons.md, "Things the proxy must do")
SOCKET_BUFFER = 8 << 20
#: receive buffer for one daemon frame
RECV_BUFFER = 8 << 20
#: how often the driver looks at the daemon process while waiting (seconds)
POLL_INTERVAL = 0.2

_SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


def _size_buffers(sock: socket.socket) -> None:
    """Large buffers; the FORCE options need CAP_NET_ADMIN, the plain ones are capped by
    net.core.wmem_max / rmem_max (enough for 1 MiB frames on most machines)."""
    for force, plain in (
        (_SO_SNDBUFFORCE, socket.SO_SNDBUF),
        (_SO_RCVBUFFORCE, socket.SO_RCVBUF),
    ):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, SOCKET_BUFFER)
        except OSError:
            try:
                sock.setsockopt(socket.SOL_SOCKET, plain, SOCKET_BUFFER)
            except OSError:
                pass


def daemon_argv(argv: Sequence[str], mountpoint: str | None, fd: int) -> list[str]:
    """The daemon's argv with ``{}`` (or the recorded mountpoint) replaced by /dev/fd/N."""
    indexes = daemons.mountpoint_arguments(argv, mountpoint or daemons.PLACEHOLDER)
    if not indexes:
        where = f" or the recorded mountpoint {mountpoint}" if mountpoint else ""
        raise DaemonError(
            "no daemon argument names the mountpoint",
            hint=f"write {{}}{where} where the daemon expects it, e.g. "
            "`fusetrace replay trace.pcapng -- squashfuse_ll image.sqfs {}`",
        )
    return daemons.substitute(argv, indexes, f"/dev/fd/{fd}")


@dataclass
class LiveRun:
    """What the driver saw besides the engine's result."""

    daemon_status: str = ""
    wall_ns: int = 0


FrameSink = Callable[[Direction, int, bytes], None]


def run(
    engine: ReplayEngine,
    argv: Sequence[str],
    *,
    mountpoint: str | None = None,
    sinks: Sequence[FrameSink] = (),
    on_command: Callable[[Command], None] | None = None,
    env: dict[str, str] | None = None,
) -> tuple[ReplayResult, LiveRun]:
    """Start the daemon on a socket, run ``engine`` to its end, stop the daemon."""
    program = daemons.resolve_program(argv[0])
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for s in (ours, theirs):
        _size_buffers(s)
    live = LiveRun()
    try:
        args = daemon_argv(argv, mountpoint, theirs.fileno())
        proc = daemons.spawn(args, program, pass_fds=[theirs.fileno()], env=env)
    except BaseException:
        ours.close()
        theirs.close()
        raise
    theirs.close()
    started = time.monotonic_ns()
    try:
        result = _loop(engine, ours, proc, sinks, on_command)
    finally:
        ours.close()  # the daemon reads EOF and ends, as after an unmount
        status = proc.stop(grace=2.0)
        proc.relay.join(1.0)
        live.daemon_status = daemons.describe_status(status)
        live.wall_ns = time.monotonic_ns() - started
    return result, live


def _loop(
    engine: ReplayEngine,
    sock: socket.socket,
    proc: daemons.DaemonProcess,
    sinks: Sequence[FrameSink],
    on_command: Callable[[Command], None] | None,
) -> ReplayResult:
    buf = bytearray(RECV_BUFFER)
    view = memoryview(buf)
    wake: int | None = None
    events: list[Event] = [Start(time.monotonic_ns())]
    while True:
        while events:
            event = events.pop(0)
            for cmd in engine.handle(event):
                if on_command is not None:
                    on_command(cmd)
                if isinstance(cmd, SendFrame):
                    gone = _send(sock, cmd.data, sinks)
                    if gone is not None:
                        events.append(DaemonGone(time.monotonic_ns(), gone))
                elif isinstance(cmd, WakeAt):
                    wake = cmd.t_ns if wake is None else min(wake, cmd.t_ns)
                elif isinstance(cmd, Finish):
                    return cmd.result
        now = time.monotonic_ns()
        if wake is not None and now >= wake:
            wake = None
            events.append(Tick(now))
            continue
        timeout = POLL_INTERVAL
        if wake is not None:
            timeout = min(timeout, max(0.0, (wake - now) / 1e9))
        readable, _, _ = select.select([sock], [], [], timeout)
        if readable:
            frame = _receive(sock, view)
            if frame is None:
                events.append(DaemonGone(time.monotonic_ns(), _gone_reason(proc)))
            else:
                t = time.monotonic_ns()
                for sink in sinks:
                    sink(Direction.OUTBOUND, time.time_ns(), frame)
                events.append(FrameReceived(frame, t))
        elif proc.poll() not in (None, 0):
            # (exit status 0 is a daemon that forked into the background, as libfuse
            # daemons do without -f: the child still holds the socket; its end shows as EOF)
            # drain what the daemon wrote before it went away, then report
            sock.setblocking(False)
            while (frame := _receive(sock, view)) is not None:
                events.append(FrameReceived(frame, time.monotonic_ns()))
            sock.setblocking(True)
            events.append(DaemonGone(time.monotonic_ns(), _gone_reason(proc)))
        elif wake is None:
            events.append(Tick(time.monotonic_ns()))


def _gone_reason(proc: daemons.DaemonProcess) -> str:
    status = proc.poll()
    if status is None:
        try:
            status = proc.proc.wait(0.5)
        except Exception:
            return "the daemon closed its end of the socket"
    text = f"the daemon ended ({daemons.describe_status(status)})"
    if proc.relay.last_line:
        text += f": {proc.relay.last_line}"
    return text


def _send(sock: socket.socket, data: bytes, sinks: Sequence[FrameSink]) -> str | None:
    try:
        sock.send(data)
    except (BrokenPipeError, ConnectionResetError):
        return "the daemon closed its end of the socket"
    except OSError as e:
        if e.errno == errno.EMSGSIZE:
            return (
                f"a {len(data)}-byte frame does not fit the socket buffer "
                f"({sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)} bytes); raise "
                "net.core.wmem_max and net.core.rmem_max, or replay as root"
            )
        raise
    t = time.time_ns()
    for sink in sinks:
        sink(Direction.INBOUND, t, data)
    return None


def _receive(sock: socket.socket, view: memoryview) -> bytes | None:
    try:
        n = sock.recv_into(view)
    except BlockingIOError:
        return None
    except (ConnectionResetError, BrokenPipeError):
        return None
    if n == 0:
        return None
    return bytes(view[:n])
