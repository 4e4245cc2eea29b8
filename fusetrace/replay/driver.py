"""The replay driver: the few lines of I/O around the sans-IO engine.

It hands the daemon one end of a ``SOCK_SEQPACKET`` socketpair as ``/dev/fd/N`` (no mount, no
/dev/fuse, no root), then runs the engine's commands: frames go to the socket, frames from the
socket become events, wake-ups become ``select`` timeouts. Every frame that crosses the socket
can be written to a new capture and fed to the tracker. No protocol logic lives here.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fusetrace.errors import DaemonError, EnvironmentProblem
from fusetrace.frame import Direction
from fusetrace.proxy import daemon as daemons
from fusetrace.proxy.forward import max_frame_size
from fusetrace.proxy.handoff import (
    FusermountHandoff,
    SeccompHandoff,
    choose_handoff,
    make_socketpair,
    spawn_on_socket,
)
from fusetrace.proxy.seccomp import MountCall
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
#: at most this many frames waiting in the socket are handed to the engine at once
MAX_BATCH = 64
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


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


PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37


def _prctl(option: int, arg: int | ctypes.c_int | Any) -> int:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, arg, 0, 0, 0))
    except (OSError, AttributeError):
        return -1


class _Subreaper:
    """While active, orphaned descendants (a daemon's background child) become our
    children, so their end can be waited for and told (killed by SIGABRT, ...)."""

    def __enter__(self) -> _Subreaper:
        old = ctypes.c_int(0)
        _prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(old))
        self._old = old.value
        self.active = self._old != 0 or _prctl(PR_SET_CHILD_SUBREAPER, 1) == 0
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._old:
            _prctl(PR_SET_CHILD_SUBREAPER, 0)


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgrp) of a process, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2 :].split()
    return fields[0].decode(), int(fields[1]), int(fields[2])


def _pids() -> list[int]:
    try:
        return [int(n) for n in os.listdir("/proc") if n.isdigit()]
    except OSError:
        return []


def socket_holders(inode: int) -> list[int]:
    """The processes that hold the socket ``inode`` open (our own process left out)."""
    target = f"socket:[{inode}]"
    me = os.getpid()
    found = []
    for pid in _pids():
        if pid == me:
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    found.append(pid)
                    break
            except OSError:
                continue
    return found


class _Daemon:
    """The daemon's process group, and the background processes it forked (followed by
    the socket they hold). Ending it ends all of them."""

    def __init__(self, proc: daemons.DaemonProcess, sock_inode: int) -> None:
        self.proc = proc
        self.pgid = proc.pid
        self.inode = sock_inode
        self.followers: list[int] = []
        self.statuses: dict[int, int] = {}

    def follow(self) -> None:
        """The main process ended with status 0: find who holds the socket now."""
        if not self.followers:
            self.followers = socket_holders(self.inode)

    def _reap(self, pid: int) -> None:
        if pid in self.statuses:
            return
        try:
            got, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if got == pid:
            self.statuses[pid] = os.waitstatus_to_exitcode(status)

    def members(self) -> list[int]:
        """Live (not zombie) processes of the group, and live followers; zombies that are
        our children are reaped on the way."""
        me = os.getpid()
        out = []
        for pid in _pids():
            st = _proc_stat(pid)
            if st is None or pid == self.proc.pid:
                continue
            state, ppid, pgrp = st
            if pgrp != self.pgid and pid not in self.followers:
                continue
            if state in ("Z", "X"):
                if ppid == me:
                    self._reap(pid)
                continue
            out.append(pid)
        return out

    def follower_status(self) -> str | None:
        """How the followed background process ended, if it did and we can tell."""
        for pid in self.followers:
            self._reap(pid)
            if pid in self.statuses:
                status = self.statuses[pid]
                return f"its background process {pid} {_status_words(status)}"
        return None

    def end(self, grace: float) -> int:
        """Give the daemon ``grace`` seconds to end on its own (its socket is closed), then
        SIGTERM, then SIGKILL, the whole group and the followers; reap what is ours."""
        try:
            status: int | None = self.proc.proc.wait(grace)
        except subprocess.TimeoutExpired:
            status = None
        deadline = time.monotonic() + grace
        while self.members() and time.monotonic() < deadline:
            time.sleep(0.02)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            rest = self.members()
            if not rest and (status is not None or self.proc.poll() is not None):
                break
            for pid in [self.proc.pid, *rest]:
                for s in (sig, signal.SIGCONT):  # a stopped process must see it
                    try:
                        os.kill(pid, s)
                    except (ProcessLookupError, PermissionError):
                        pass
            until = time.monotonic() + (2.0 if sig == signal.SIGTERM else 5.0)
            while time.monotonic() < until:
                if self.proc.poll() is not None and not self.members():
                    break
                time.sleep(0.02)
        self.members()  # reap
        return self.proc.proc.wait() if status is None else status


def _status_words(status: int) -> str:
    if status < 0:
        return f"was {daemons.describe_status(status)}"
    return f"ended ({daemons.describe_status(status)})"


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
        indexes = daemons.mountpoint_arguments(argv, mountpoint or daemons.PLACEHOLDER)
        handoff = choose_handoff("auto", list(argv), indexes, program)
        if handoff == "fusermount" and not indexes and os.geteuid() != 0:
            daemon_argv(argv, mountpoint, 0)  # raises: say how to name the mountpoint
    # the recorder's socket pair: buffers that hold the largest frame either side may send
    # (daemons.md, "Things the proxy must do")
    ours, theirs = make_socketpair(max_frame_size())
    inode = os.fstat(theirs.fileno()).st_ino
    live = LiveRun()
    served: FusermountHandoff | SeccompHandoff | None = None
    reaper = _Subreaper().__enter__()
    try:
        if handoff == "fusermount":
            served, proc = _spawn_fusermount(list(argv), program, theirs, env)
        elif handoff == "seccomp":
            served, proc, live_sock = _spawn_seccomp(list(argv), program, env)
            ours.close()
            ours = live_sock
        else:
            args = daemon_argv(argv, mountpoint, theirs.fileno())
            proc = spawn_on_socket(args, program, theirs, env=env, stdout_to_stderr=True)
    except BaseException:
        ours.close()
        theirs.close()
        if served is not None:
            served.close()
        reaper.__exit__()
        raise
    theirs.close()
    started = time.monotonic_ns()
    daemon = _Daemon(proc, inode)
    try:
        result = _loop(engine, ours, daemon, sinks, on_command)
    finally:
        ours.close()  # the daemon reads EOF and ends, as after an unmount
        try:
            status = daemon.end(grace=2.0)
        finally:
            reaper.__exit__()
        proc.relay.join(1.0)
        if served is not None:
            served.close()
        live.daemon_status = daemon.follower_status() or daemons.describe_status(status)
        live.wall_ns = time.monotonic_ns() - started
    return result, live


def _spawn_fusermount(
    argv: list[str], program: str, theirs: socket.socket, env: dict[str, str] | None
) -> tuple[FusermountHandoff, daemons.DaemonProcess]:
    """Start the daemon with fusetrace in place of fusermount; when it asks to mount, hand
    it ``theirs`` (nothing is mounted). Later requests (``fusermount -u``) get "ok"."""
    if os.geteuid() != 0:
        raise EnvironmentProblem(
            "the fusermount handoff needs root (a mount namespace for the stand-in)",
            hint="use a daemon that accepts /dev/fd/N (libfuse >= 3.3) to replay unprivileged",
        )
    handoff = FusermountHandoff()
    proc = handoff.spawn(argv, program, env=env, stdout_to_stderr=True)
    deadline = time.monotonic() + 30
    req = handoff.next_mount(
        lambda: proc.poll() not in (None, 0) or time.monotonic() > deadline, skip_malformed=True
    )
    if req is None:
        proc.stop(grace=0)
        handoff.close()
        raise DaemonError(
            "the daemon ended or gave up before asking fusermount to mount"
            + (f": {proc.relay.last_line}" if proc.relay.last_line else "")
        )
    handoff.hand_over(theirs)
    handoff.serve_later(lambda _request: "ok")
    return handoff, proc


def _spawn_seccomp(
    argv: list[str], program: str, env: dict[str, str] | None
) -> tuple[SeccompHandoff, daemons.DaemonProcess, socket.socket]:
    """Start the daemon under the seccomp hand-off: its open of /dev/fuse gets a socket and
    its mount(2) on it succeeds without mounting anything. Returns the hand-off, the
    daemon and fusetrace's end of the socket the daemon mounted."""
    if os.geteuid() != 0:
        raise EnvironmentProblem(
            "the seccomp handoff needs root",
            hint="use a daemon that accepts /dev/fd/N (libfuse >= 3.3) to replay unprivileged",
        )
    got: list[socket.socket] = []

    def on_mount(_call: MountCall, sock: socket.socket) -> int:
        got.append(sock)
        return 0

    handoff = SeccompHandoff("", on_mount, lambda: 0)
    proc = handoff.spawn(argv, program, env=env, stdout_to_stderr=True)
    deadline = time.monotonic() + 30
    if not handoff.wait_for_mount(lambda: proc.poll() is not None or time.monotonic() > deadline):
        proc.stop(grace=0)
        handoff.close()
        raise DaemonError(
            "the daemon ended or gave up before mounting"
            + (f": {proc.relay.last_line}" if proc.relay.last_line else "")
        )
    return handoff, proc, got[0]


def _loop(
    engine: ReplayEngine,
    sock: socket.socket,
    daemon: _Daemon,
    sinks: Sequence[FrameSink],
    on_command: Callable[[Command], None] | None,
) -> ReplayResult:
    # the hot path, once per frame: methods and constants bound to locals, the common
    # commands told by their exact type, one clock reading per batch of replies
    proc = daemon.proc
    buf = bytearray(max_frame_size() + 4096)
    view = memoryview(buf)
    wake: int | None = None
    events: list[Event] = [Start(time.monotonic_ns())]
    handle_all = engine.handle_all
    send = sock.send
    recv_into = sock.recv_into
    monotonic_ns = time.monotonic_ns
    time_ns = time.time_ns
    dontwait = socket.MSG_DONTWAIT
    inbound, outbound = Direction.INBOUND, Direction.OUTBOUND
    sinks = tuple(sinks)
    while True:
        while events:
            batch, events = events, []
            for cmd in handle_all(batch):
                if on_command is not None:
                    on_command(cmd)
                kind = type(cmd)
                if kind is SendFrame:
                    data = cmd.data  # type: ignore[union-attr]
                    try:
                        send(data)
                    except OSError as e:
                        events.append(DaemonGone(monotonic_ns(), _send_failed(sock, data, e)))
                        continue
                    if sinks:
                        t = time_ns()
                        for sink in sinks:
                            sink(inbound, t, data)
                elif kind is WakeAt:
                    t_ns = cmd.t_ns  # type: ignore[union-attr]
                    wake = t_ns if wake is None else min(wake, t_ns)
                elif kind is Finish:
                    return cmd.result  # type: ignore[union-attr]
        now = monotonic_ns()
        if wake is not None and now >= wake:
            wake = None
            events.append(Tick(now))
            continue
        # frames already waiting are taken without a select() (replies come in bursts), all
        # of them, and handed to the engine together
        try:
            n = recv_into(view, 0, dontwait)
        except BlockingIOError:
            timeout = POLL_INTERVAL
            if wake is not None:
                timeout = min(timeout, max(0.0, (wake - now) / 1e9))
            n = -1 if not select.select([sock], [], [], timeout)[0] else _recv(sock, view)
        except (ConnectionResetError, BrokenPipeError):
            n = 0
        if n >= 0:
            t = monotonic_ns()
            stamp = time_ns() if sinks else 0
            while n > 0:
                frame = bytes(view[:n])
                for sink in sinks:
                    sink(outbound, stamp, frame)
                events.append(FrameReceived(frame, t))
                if len(events) >= MAX_BATCH:
                    break
                try:
                    n = recv_into(view, 0, dontwait)
                except BlockingIOError:
                    break
                except (ConnectionResetError, BrokenPipeError):
                    n = 0
            else:
                events.append(DaemonGone(monotonic_ns(), _gone_reason(daemon)))
        elif (status := proc.poll()) is not None and (status != 0 or not daemon.followers):
            if status == 0:
                # a daemon that forked into the background, as libfuse daemons do without
                # -f: follow the process that holds the socket now
                daemon.follow()
                if daemon.followers:
                    continue
            # drain what the daemon wrote before it went away, then report
            sock.setblocking(False)
            while (frame_or_none := _receive(sock, view)) is not None:
                for sink in sinks:
                    sink(outbound, time_ns(), frame_or_none)
                events.append(FrameReceived(frame_or_none, monotonic_ns()))
            sock.setblocking(True)
            events.append(DaemonGone(monotonic_ns(), _gone_reason(daemon)))
        elif wake is None:
            events.append(Tick(monotonic_ns()))


def _recv(sock: socket.socket, view: memoryview) -> int:
    """One blocking receive after select() said readable: its length, 0 at the end."""
    try:
        return sock.recv_into(view)
    except (BlockingIOError, ConnectionResetError, BrokenPipeError):
        return 0


def _gone_reason(daemon: _Daemon) -> str:
    """What ended: the daemon (how), its background process (how), or just the socket."""
    proc = daemon.proc
    status = proc.poll()
    if status == 0 and not daemon.followers:
        daemon.follow()
    text = None
    if daemon.followers:
        deadline = time.monotonic() + 0.5
        while (text := daemon.follower_status()) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        text = "the daemon's socket closed" + (f": {text}" if text else "")
    elif status is None:
        try:
            status = proc.proc.wait(0.5)
        except subprocess.TimeoutExpired:
            text = "the daemon closed its end of the socket"
    if text is None:
        assert status is not None
        text = f"the daemon {_status_words(status)}"
    if proc.relay.last_line:
        text += f": {proc.relay.last_line}"
    return text


def _send_failed(sock: socket.socket, data: bytes, e: OSError) -> str:
    """Why sending ``data`` failed, in words; raises what is no daemon's doing."""
    if isinstance(e, (BrokenPipeError, ConnectionResetError)):
        return "the daemon closed its end of the socket"
    if e.errno == errno.EMSGSIZE:
        return (
            f"a {len(data)}-byte frame does not fit the socket buffer "
            f"({sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)} bytes); raise "
            "net.core.wmem_max and net.core.rmem_max, or replay as root"
        )
    raise e


def _receive(sock: socket.socket, view: memoryview, flags: int = 0) -> bytes | None:
    """One frame; None at the end of the stream. With MSG_DONTWAIT, BlockingIOError when
    there is none yet."""
    try:
        n = sock.recv_into(view, 0, flags)
    except BlockingIOError:
        if flags & socket.MSG_DONTWAIT:
            raise
        return None
    except (ConnectionResetError, BrokenPipeError):
        return None
    if n == 0:
        return None
    return bytes(view[:n])


class ChildSink:
    """A frame sink that runs in a forked child process: ``make()`` (called in the child)
    returns ``(feed, finish)``; every frame handed to the sink reaches ``feed`` in order,
    with the same arguments, and :meth:`finish` returns what the child's ``finish``
    returned (pickled back). The replay's loop only appends the frame to a buffer, written
    to the child in large pieces, so the work of ``feed`` runs beside the replay (on
    another core) instead of between a reply and the next request."""

    _HEAD = struct.Struct("=BqI")
    FLUSH_AT = 1 << 16
    PIPE_SIZE = 1 << 20

    def __init__(self, make: Callable[[], tuple[FrameSink, Callable[[], Any]]]) -> None:
        frames_r, frames_w = os.pipe()
        result_r, result_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            status = 1
            try:
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # it ends when the frames do
                os.close(frames_w)
                os.close(result_r)
                status = _child_main(make, frames_r, result_w, self._HEAD)
            finally:
                os._exit(status)
        os.close(frames_r)
        os.close(result_w)
        try:
            # room for a burst while the child is busy (or not scheduled): the replay's
            # write does not wait for it
            fcntl.fcntl(frames_w, F_SETPIPE_SZ, self.PIPE_SIZE)
        except OSError:
            pass
        self.pid = pid
        self._w: int | None = frames_w
        self._r = result_r
        self._buf = bytearray()

    def __call__(self, direction: Direction, t_ns: int, data: bytes) -> None:
        buf = self._buf
        buf += self._HEAD.pack(direction is Direction.OUTBOUND, t_ns, len(data))
        buf += data
        if len(buf) >= self.FLUSH_AT:
            self._flush()

    def _flush(self) -> None:
        if self._w is None:
            return
        view = memoryview(self._buf)
        try:
            while view:
                view = view[os.write(self._w, view) :]
        finally:
            view.release()
        self._buf.clear()

    def finish(self) -> Any:
        """Hand over the last frames, wait for the child, return its result."""
        try:
            self._flush()
        finally:
            self.close()
        chunks = []
        while chunk := os.read(self._r, 1 << 16):
            chunks.append(chunk)
        os.close(self._r)
        self._r = -1
        _, status = os.waitpid(self.pid, 0)
        ok, value = pickle.loads(b"".join(chunks)) if chunks else (False, "no result")
        if not ok or os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"the frame checker failed: {value}")
        return value

    def close(self) -> None:
        """Stop handing frames (the child then ends); for a run that ends by an error."""
        if self._w is not None:
            os.close(self._w)
            self._w = None

    def abandon(self) -> None:
        """End the child without waiting for its result (a replay that failed)."""
        self.close()
        if self._r >= 0:
            os.close(self._r)  # the child's write fails: it ends
            self._r = -1
            os.waitpid(self.pid, 0)


def _child_main(
    make: Callable[[], tuple[FrameSink, Callable[[], Any]]],
    frames: int,
    result: int,
    head: struct.Struct,
) -> int:
    try:
        feed, finish = make()
        with os.fdopen(frames, "rb", buffering=1 << 16) as f:
            while h := f.read(head.size):
                outbound, t_ns, n = head.unpack(h)
                data = f.read(n)
                feed(Direction.OUTBOUND if outbound else Direction.INBOUND, t_ns, data)
        payload = pickle.dumps((True, finish()))
    except BaseException as e:  # told to the parent, which raises
        payload = pickle.dumps((False, f"{type(e).__name__}: {e}"))
    try:
        with os.fdopen(result, "wb") as out:
            out.write(payload)
    except OSError:
        return 1
    return 0
