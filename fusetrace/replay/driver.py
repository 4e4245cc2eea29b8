"""The replay driver: the few lines of I/O around the sans-IO engine.

It hands the daemon one end of a ``SOCK_SEQPACKET`` socketpair as ``/dev/fd/N`` (no mount, no
/dev/fuse, no root), then runs the engine's commands: frames go to the socket, frames from the
socket become events, wake-ups become ``select`` timeouts. Every frame that crosses the socket
can be written to a new capture and fed to the tracker. No protocol logic lives here.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fusetrace.errors import DaemonError, EnvironmentProblem
from fusetrace.proxy import daemon as daemons
from fusetrace.proxy.forward import max_frame_size
from fusetrace.proxy.session import make_socketpair
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

#: how often the driver looks at the daemon process while waiting (seconds)
POLL_INTERVAL = 0.2


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
    handoff: str = "fd",
) -> tuple[ReplayResult, LiveRun]:
    """Start the daemon on a socket, run ``engine`` to its end, stop the daemon.

    ``handoff``: ``fd`` passes the socket as /dev/fd/N in place of the mountpoint argument;
    ``fusermount`` stands in for fusermount3/fusermount and passes the socket to a daemon
    that asks it to mount (libfuse 2 daemons; needs root for the mount namespace, mounts
    nothing); ``auto`` picks as ``fusetrace record`` does.
    """
    program = daemons.resolve_program(argv[0])
    if handoff == "auto":
        from fusetrace.proxy.session import choose_handoff

        indexes = daemons.mountpoint_arguments(argv, mountpoint or daemons.PLACEHOLDER)
        handoff = choose_handoff("auto", list(argv), indexes, program)
        if handoff == "fusermount" and not indexes and os.geteuid() != 0:
            daemon_argv(argv, mountpoint, 0)  # raises: say how to name the mountpoint
    # the recorder's socket pair: buffers that hold the largest frame either side may send
    # (daemons.md, "Things the proxy must do")
    ours, theirs = make_socketpair(max_frame_size())
    live = LiveRun()
    shim = None
    try:
        if handoff == "fusermount":
            shim, proc = _spawn_fusermount(list(argv), program, theirs, env)
        elif handoff == "seccomp":
            shim, proc, live_sock = _spawn_seccomp(list(argv), program, env)
            ours.close()
            ours = live_sock
        else:
            args = daemon_argv(argv, mountpoint, theirs.fileno())
            proc = daemons.spawn(args, program, pass_fds=[theirs.fileno()], env=env)
    except BaseException:
        ours.close()
        theirs.close()
        if shim is not None:
            shim.close()
        raise
    theirs.close()
    started = time.monotonic_ns()
    try:
        result = _loop(engine, ours, proc, sinks, on_command)
    finally:
        ours.close()  # the daemon reads EOF and ends, as after an unmount
        status = proc.stop(grace=2.0)
        proc.relay.join(1.0)
        if shim is not None:
            shim.close()
        live.daemon_status = daemons.describe_status(status)
        live.wall_ns = time.monotonic_ns() - started
    return result, live


def _spawn_fusermount(
    argv: list[str], program: str, theirs: socket.socket, env: dict[str, str] | None
) -> tuple[Any, daemons.DaemonProcess]:
    """Start the daemon with fusetrace in place of fusermount; when it asks to mount, hand
    it ``theirs`` (nothing is mounted). Later requests (``fusermount -u``) get "ok"."""
    from fusetrace.proxy import fusermount

    if os.geteuid() != 0:
        raise EnvironmentProblem(
            "the fusermount handoff needs root (a mount namespace for the stand-in)",
            hint="use a daemon that accepts /dev/fd/N (libfuse >= 3.3) to replay unprivileged",
        )
    shim = fusermount.Shim()
    try:
        proc = daemons.spawn(
            argv,
            program,
            pass_fds=[shim.theirs.fileno()],
            env=shim.env(env),
            preexec=shim.preexec(),
        )
    finally:
        shim.theirs.close()
    ctl = shim.ours
    ctl.settimeout(0.25)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() not in (None, 0) or time.monotonic() > deadline:
            proc.stop(grace=0)
            shim.close()
            raise DaemonError(
                "the daemon ended or gave up before asking fusermount to mount"
                + (f": {proc.relay.last_line}" if proc.relay.last_line else "")
            )
        try:
            req = fusermount.next_request(ctl)
        except TimeoutError:
            continue
        if req is None:
            continue
        if req.unmount:
            fusermount.reply(ctl, "ok")
            continue
        fusermount.reply(ctl, "ok", theirs.fileno())
        break
    ctl.settimeout(None)

    def later() -> None:
        while True:
            try:
                payload = ctl.recv(65536)
            except OSError:
                return
            if not payload:
                return
            fusermount.reply(ctl, "ok")

    threading.Thread(target=later, name="fusermount", daemon=True).start()
    return shim, proc


def _spawn_seccomp(
    argv: list[str], program: str, env: dict[str, str] | None
) -> tuple[Any, daemons.DaemonProcess, socket.socket]:
    """Start the daemon under the seccomp hand-off: its open of /dev/fuse gets a socket and
    its mount(2) on it succeeds without mounting anything. Returns the supervisor, the
    daemon and fusetrace's end of the socket the daemon mounted."""
    from fusetrace.proxy import seccomp

    if os.geteuid() != 0:
        raise EnvironmentProblem(
            "the seccomp handoff needs root",
            hint="use a daemon that accepts /dev/fd/N (libfuse >= 3.3) to replay unprivileged",
        )
    got: list[socket.socket] = []

    def on_mount(_call: seccomp.MountCall, sock: socket.socket) -> int:
        got.append(sock)
        return 0

    sup = seccomp.Supervisor("", lambda: make_socketpair(max_frame_size()), on_mount, lambda: 0)
    sup.start()
    try:
        proc = daemons.spawn(argv, program, pass_fds=[], env=env, preexec=sup.preexec())
    finally:
        sup.spawned()
    deadline = time.monotonic() + 30
    while not sup.mounted.wait(0.05):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.stop(grace=0)
            sup.close()
            raise DaemonError(
                "the daemon ended or gave up before mounting"
                + (f": {proc.relay.last_line}" if proc.relay.last_line else "")
            )
    return sup, proc, got[0]


def _loop(
    engine: ReplayEngine,
    sock: socket.socket,
    proc: daemons.DaemonProcess,
    sinks: Sequence[FrameSink],
    on_command: Callable[[Command], None] | None,
) -> ReplayResult:
    buf = bytearray(max_frame_size() + 4096)
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
