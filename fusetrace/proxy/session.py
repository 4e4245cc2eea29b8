"""One recording session: mount, start the daemon, forward and capture, end cleanly.

The order of events::

    checks (root, /dev/fuse, mountpoint, daemon) → create the capture → open /dev/fuse →
    mount(2) → socketpair → start the daemon with its end → forward until one of:
      * the filesystem is unmounted (the device read says ENODEV): close the daemon's socket,
        the daemon reads end of file and exits (libfuse daemons exit 1: that is normal);
      * the daemon closes its socket (it exited or crashed): unmount, or detach and abort
        when the filesystem is busy;
      * SIGINT/SIGTERM: unmount (detach and abort if busy), then as above;
      * a request unanswered for ``daemon_timeout`` seconds: abort the connection, unmount.
    → stop the capture writer (every frame forwarded is written) → report.

Whatever happens, nothing stays mounted and the daemon is reaped.
"""

from __future__ import annotations

import contextlib
import errno
import os
import platform
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from fusetrace.capture.files import open_output
from fusetrace.errors import (
    CaptureError,
    DaemonError,
    EnvironmentProblem,
    ExitCode,
    UsageProblem,
)
from fusetrace.frame import Frame
from fusetrace.proxy import choice
from fusetrace.proxy import daemon as daemons
from fusetrace.proxy import mount as mounts
from fusetrace.proxy.handoff import (
    FusermountHandoff,
    SeccompHandoff,
    frame_socketpair,
    record_handoff,
    spawn_on_socket,
)

if TYPE_CHECKING:
    # each hand-off's module is imported where that hand-off is used; the forwarding path
    # and the capture writer while the daemon starts, or just before the mount (the fd
    # hand-off): see load_forwarding
    from fusetrace.capture.pcapng import CaptureWriter
    from fusetrace.proxy import seccomp
    from fusetrace.proxy.forward import Ending, Forwarder
    from fusetrace.proxy.output import CaptureThread

#: seconds a daemon gets to exit after its socket closed, before SIGTERM
DAEMON_GRACE = 10.0


@dataclass
class RecordConfig:
    """Everything ``fusetrace record`` was asked to do."""

    output: str
    mountpoint: str
    daemon_argv: list[str]
    options: list[str] = field(default_factory=list)
    snaplen: int | None = None
    daemon_timeout: float | None = None
    handoff: str = "fd"
    #: the daemon's writes to its FUSE descriptor return the kernel's answer (seccomp only)
    sync_writes: bool = False
    #: called (off the forwarding path) with every captured frame, numbered as in the
    #: capture, for ``--live``, ``--check`` and ``--top``
    live: Callable[[Frame], None] | None = None


@dataclass
class RecordResult:
    frames: int
    output: str
    #: how the session ended, in words: "filesystem unmounted", "daemon exited (...)", ...
    how: str
    exit_code: int
    daemon_status: int | None
    stats: dict[str, Any] = field(default_factory=dict)


def with_user_options(
    call: seccomp.MountCall, spec: mounts.MountSpec
) -> tuple[str | None, str, int, list[str]]:
    """The daemon's mount(2) with fusetrace's own ``-o`` options applied on top (the user
    gave them explicitly): source, type, flags and the options without ``fd=N``."""
    source, fstype, flags = call.source, call.fstype, call.flags
    options = list(call.options)
    for opt in spec.given:
        name, eq, value = opt.partition("=")
        if name in mounts.FLAG_OPTIONS and not eq:
            bit, on = mounts.FLAG_OPTIONS[name]
            flags = (flags | bit) if on else (flags & ~bit)
        elif name == "fsname":
            source = value
        elif name == "subtype":
            fstype = fstype.partition(".")[0] + "." + value
        else:
            kept = [o for o in options if o.partition("=")[0] != name]
            options = [*kept, opt]
    return source, fstype, flags, options


#: the descriptor number the daemon's socket gets with synchronous writes (the filter
#: compares write()'s descriptor with a number fixed before the daemon starts)
SYNC_FD = 1000


M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3


def tune_malloc() -> None:
    """Keep frame-sized buffers (up to 1 MiB and more) in the heap.

    Frames the forwarding threads cannot lend (see ``FrameBuffers``: all buffers lent while
    the capture lags) are copied into fresh bytes objects. With glibc's defaults such sizes
    may be mmap()ed and unmapped again, or trimmed from the heap, so each copy starts by
    faulting in fresh zeroed pages, with the interpreter lock held. Measured on a 1 GiB dd
    write through fuse-overlayfs, when every frame was copied: 2.1 s instead of 2.3-4.0 s.
    Only this process is affected, never the daemon.
    """
    try:
        mallopt = mounts.libc().mallopt
    except AttributeError:  # not glibc
        return
    mallopt(M_MMAP_THRESHOLD, 32 << 20)
    mallopt(M_TRIM_THRESHOLD, 256 << 20)
    mallopt(M_TOP_PAD, 64 << 20)


def load_forwarding() -> None:
    """Import the forwarding paths and the capture writer, a good part of a recorder's
    start-up: while the daemon starts (the seccomp and fusermount hand-offs: it needs none
    of it before it mounts), or just before the mount (the fd hand-off)."""
    import fusetrace.capture.files
    import fusetrace.proxy.output  # noqa: F401  (with it core.py, forward.py, the writer)


def check_environment() -> None:
    """Root and /dev/fuse, before anything is created."""
    if os.geteuid() != 0:
        raise EnvironmentProblem(
            "fusetrace record must run as root (it mounts the filesystem itself)",
            hint="run it with sudo",
        )
    if not os.path.exists("/dev/fuse"):
        raise EnvironmentProblem(
            "/dev/fuse does not exist", hint="load the fuse module: modprobe fuse"
        )


def open_device() -> int:
    try:
        return os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        raise EnvironmentProblem(f"cannot open /dev/fuse: {e.strerror}") from None


class Session:
    """Runs one recording (see the module docstring). Use :meth:`run` once."""

    def __init__(self, config: RecordConfig) -> None:
        self.config = config
        self.mountpoint = config.mountpoint
        self.conn: int | None = None
        self.mounted = False
        self._signal: int | None = None
        self.forwarder: Forwarder | None = None
        self.daemon: daemons.DaemonProcess | None = None
        self.capture: CaptureThread | None = None
        self._capture_error: str | None = None
        self._mp_args: list[int] = []
        self._unmount_requested = False
        self.handoff = config.handoff
        self._release_lock = threading.RLock()
        self._mount_meta: dict[str, Any] = {}
        #: set by the seccomp hand-off's thread
        self._seccomp_ours: socket.socket | None = None
        self._handoff_error: str | None = None
        self._handoff_note: str | None = None
        self._sup: seccomp.Supervisor | None = None
        #: the filesystem is also mounted in the daemon's namespace (fusermount hand-off on
        #: a private mount): an unmount here does not end the connection by itself
        self._watch_mount = False
        #: "c" (the compiled core) or "python", as FUSETRACE_FORWARD chose (proxy/core.py)
        self.forwarding = "python"

    # ---- signals ----------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: object) -> None:
        # only note it: the main loop acts within a quarter second
        if self._signal is None:
            self._signal = signum

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        old = {
            s: signal.signal(s, self._on_signal)
            for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        }
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    # ---- the session ------------------------------------------------------------------
    def run(self) -> RecordResult:
        cfg = self.config
        check_environment()
        # --sync-writes hands frames to the capture from the seccomp thread, which only the
        # Python forwarding path takes (Forwarder.deliver)
        self.forwarding = "python" if cfg.sync_writes else choice.choose()
        mountpoint, rootmode = mounts.check_mountpoint(cfg.mountpoint)
        self.mountpoint = mountpoint
        program = daemons.resolve_program(cfg.daemon_argv[0])
        spec = mounts.parse_options(cfg.options)
        self._mp_args = daemons.mountpoint_arguments(cfg.daemon_argv, cfg.mountpoint)
        self.handoff = record_handoff(cfg.handoff, cfg.daemon_argv, self._mp_args, program)
        if self.handoff == "seccomp":
            from fusetrace.proxy import seccomp

            if (why := seccomp.available()) is not None:
                raise EnvironmentProblem(why, hint="try --handoff fd or --handoff fusermount")
        if cfg.sync_writes and self.handoff != "seccomp":
            raise UsageProblem(
                f"--sync-writes needs the seccomp hand-off (this is the {self.handoff} one)",
                hint="name the mountpoint instead of {}, or leave --handoff at auto",
            )
        if self.handoff == "fd" and not self._mp_args:
            raise DaemonError(
                f"the daemon's arguments name neither the mountpoint {cfg.mountpoint} nor {{}}",
                hint="fusetrace replaces that argument with the socket it hands the daemon",
            )
        if self.handoff == "fd":
            spec = self._daemon_spec(program, spec)
        if mounts.find_mount(mountpoint) is not None:
            raise EnvironmentProblem(f"a FUSE filesystem is already mounted on {mountpoint}")
        try:
            fileobj = open_output(cfg.output)
        except CaptureError as e:
            raise EnvironmentProblem(
                e.message, hint="choose a writable place for the capture file"
            ) from None
        tune_malloc()
        with self._signals():
            try:
                return self._run(fileobj, program, spec, rootmode)
            finally:
                fileobj.close()

    def _daemon_spec(self, program: str, spec: mounts.MountSpec) -> mounts.MountSpec:
        """Under the /dev/fd/N hand-off the daemon never mounts: the mount gets the options
        it would have mounted with (read from its command line as libfuse reads it), then
        fusetrace's own -o. What cannot be known is said on stderr."""
        cfg = self.config
        found = mounts.daemon_mount_options(cfg.daemon_argv, program)
        for warning in found.warnings:
            print(f"fusetrace: warning: {warning}", file=sys.stderr)
        if not found.options:
            return spec
        try:
            return mounts.parse_options(found.options + list(cfg.options))
        except mounts.MountOptionError as e:
            raise DaemonError(f"the daemon's own mount options: {e}") from None

    def _mount_and_forward(
        self,
        fileobj: BinaryIO,
        devfd: int,
        spec: mounts.MountSpec,
        rootmode: int,
        meta: dict[str, Any],
    ) -> tuple[socket.socket, socket.socket]:
        """mount(2) as fusetrace builds it, the socket pair, the capture and the
        forwarding threads."""
        load_forwarding()  # before the mount: the kernel's INIT comes at once
        source = spec.source()
        data = spec.data_string(devfd, rootmode, os.getuid(), os.getgid())
        try:
            mounts.sys_mount(source, self.mountpoint, spec.fstype, spec.flags, data)
        except OSError as e:
            raise EnvironmentProblem(f"cannot mount {self.mountpoint}: {e.strerror}") from None
        ours, theirs = frame_socketpair()
        self._mounted(source, spec.fstype, spec.given)
        self._forward(fileobj, devfd, ours, meta)
        return ours, theirs

    def _mounted(self, source: str | None, fstype: str, options: list[str]) -> None:
        with self._release_lock:
            self.mounted = True
        entry = mounts.find_mount(self.mountpoint)
        self.conn = entry.conn if entry else None
        self._mount_meta = {
            "mount_options": options,
            "mount_source": source,
            "mount_type": fstype,
        }

    def _forward(
        self, fileobj: BinaryIO, devfd: int, ours: socket.socket, meta: dict[str, Any]
    ) -> None:
        """The capture and the forwarding threads, for a mounted filesystem."""
        from fusetrace.capture.files import host_writer
        from fusetrace.capture.pcapng import Channel
        from fusetrace.proxy import core
        from fusetrace.proxy.forward import Forwarder, FrameBuffers, max_frame_size
        from fusetrace.proxy.output import CaptureThread

        cfg = self.config
        frame = max_frame_size()
        meta = {
            "daemon": list(cfg.daemon_argv),
            **meta,
            "mountpoint": self.mountpoint,
            **self._mount_meta,
            "handoff": self.handoff,
            "kernel_release": platform.release(),
            "connection": self.conn,
            "forwarding": self.forwarding,
        }

        def make_writer(sink: BinaryIO) -> CaptureWriter:
            return host_writer(
                sink, meta, channels=[Channel(description=self.mountpoint)], snaplen=cfg.snaplen
            )

        track = cfg.daemon_timeout is not None
        if self.forwarding == "c":  # the compiled core (proxy/core.py)
            fast = core.CoreForwarder(devfd, ours, bufsize=frame, track_outstanding=track)
            self.capture = CaptureThread(
                fileobj, make_writer, self._on_capture_error, cfg.live,
                buffers=fast.buffers, source=fast,
            )  # fmt: skip
            fast.encode_blocks(self.capture.writer)
            self.forwarder = fast
        else:
            buffers = FrameBuffers(frame + 1)
            self.capture = CaptureThread(
                fileobj, make_writer, self._on_capture_error, cfg.live, buffers=buffers
            )
            self.forwarder = Forwarder(
                devfd, ours, self.capture.put, bufsize=frame, track_outstanding=track,
                buffers=buffers,
            )  # fmt: skip
        self.forwarder.start()

    def _run(
        self, fileobj: BinaryIO, program: str, spec: mounts.MountSpec, rootmode: int
    ) -> RecordResult:
        cfg = self.config
        devfd = open_device()
        ours: socket.socket | None = None
        handoff: FusermountHandoff | SeccompHandoff | None = None
        stdout_to_stderr = cfg.output == "-"
        try:
            if self.handoff == "fd":
                argv0 = daemons.substitute(cfg.daemon_argv, self._mp_args, "/dev/fd/N")
                ours, theirs = self._mount_and_forward(
                    fileobj, devfd, spec, rootmode, {"daemon_run_as": argv0}
                )
                argv = daemons.substitute(
                    cfg.daemon_argv, self._mp_args, f"/dev/fd/{theirs.fileno()}"
                )
                self.daemon = spawn_on_socket(
                    argv, program, theirs, stdout_to_stderr=stdout_to_stderr
                )
            elif self.handoff == "seccomp":
                handoff = SeccompHandoff(
                    self.mountpoint,
                    lambda call, sock: self._seccomp_mount(call, sock, fileobj, devfd, spec),
                    self._seccomp_umount,
                    sync_fd=SYNC_FD if cfg.sync_writes else None,
                    on_write=self._deliver,
                )
                self._sup = handoff.supervisor
                self.daemon = handoff.spawn(
                    list(cfg.daemon_argv), program, stdout_to_stderr=stdout_to_stderr
                )
                load_forwarding()  # while the daemon starts: it asks for none of it yet
                ours = self._wait_for_seccomp_mount(handoff)
                if ours is None:
                    return self._ended_before_mount(handoff.supervisor)
            else:
                handoff = FusermountHandoff()
                self.daemon = handoff.spawn(
                    list(cfg.daemon_argv), program, stdout_to_stderr=stdout_to_stderr
                )
                load_forwarding()  # while the daemon starts
                ours = self._serve_fusermount(handoff, fileobj, devfd, spec, rootmode)
                if ours is None:
                    return self._ended_before_mount()
            ending = self._wait()
            return self._finish(ending)
        finally:
            self._cleanup(devfd, ours)
            if handoff is not None:
                handoff.close()

    # ---- the seccomp hand-off (called in the supervisor's thread) ---------------------------
    def _seccomp_mount(
        self,
        call: seccomp.MountCall,
        ours: socket.socket,
        fileobj: BinaryIO,
        devfd: int,
        spec: mounts.MountSpec,
    ) -> int:
        """The daemon's mount(2) on a socket fusetrace handed it: the same mount on the
        real device. Returns 0 or the errno the daemon gets."""
        try:
            target = os.path.realpath(call.target)
            if target != self.mountpoint:
                self._handoff_error = (
                    f"the daemon mounts {call.target}, fusetrace was told {self.config.mountpoint}"
                )
                return errno.EPERM
            source, fstype, flags, options = with_user_options(call, spec)
            at = call.fd_index
            data = ",".join([*options[:at], f"fd={devfd}", *options[at:]])
            try:
                mounts.sys_mount(source, self.mountpoint, fstype, flags, data)
            except OSError as e:
                self._handoff_note = f"its mount(2) failed: {e.strerror}"
                return e.errno or errno.EIO
            self._mounted(source, fstype, options)
            self._forward(fileobj, devfd, ours, {"daemon_mount_flags": flags})
            self._seccomp_ours = ours
            return 0
        except Exception as e:  # the daemon must get an answer
            self._handoff_error = f"serving the daemon's mount failed: {e!r}"
            return errno.EIO

    def _deliver(self, data: bytes) -> int:
        """A synchronous write of the daemon's: the kernel's answer (0 or an errno)."""
        fwd = self.forwarder
        if fwd is None:
            return errno.EIO
        return fwd.deliver(data)

    def _seccomp_umount(self) -> int:
        """The daemon unmounts fusetrace's mountpoint. Once the filesystem is gone (the
        usual case: libfuse unmounts when its session ends, which it learns from the
        socket's end of file rather than from ENODEV), the call succeeds without touching
        whatever may be mounted there by then; natively libfuse would not even ask."""
        fwd = self.forwarder
        if self._blk() and fwd is not None:
            # libfuse closes its descriptor before it unmounts (natively that aborts the
            # connection, and the DESTROY a fuseblk unmount sends is not waited for): give
            # the end of its socket a moment to arrive
            fwd.ended.wait(0.2)
        self._release()
        return 0

    def _wait_for_seccomp_mount(self, handoff: SeccompHandoff) -> socket.socket | None:
        """Wait until the daemon's mount is served; None if the daemon ended, a signal
        came, or the hand-off failed before."""
        daemon = self.daemon
        assert daemon is not None
        sup = handoff.supervisor
        stopped = False

        def give_up() -> bool:
            nonlocal stopped
            if self._signal is not None or self._handoff_error is not None:
                stopped = True
                return True
            # a daemon that forked into the background: its child may still mount
            return daemon.poll() is not None and (not sup.alive() or sup.mounted.wait(0.5))

        if handoff.wait_for_mount(give_up) and not stopped and self._seccomp_ours is not None:
            return self._seccomp_ours
        return None

    def _serve_fusermount(
        self,
        handoff: FusermountHandoff,
        fileobj: BinaryIO,
        devfd: int,
        spec: mounts.MountSpec,
        rootmode: int,
    ) -> socket.socket | None:
        """Wait for the daemon's fusermount request; mount and hand over the socket.

        Returns the proxy's socket end, or None if the daemon ended (or a signal came)
        before asking.
        """
        from fusetrace.proxy import fusermount

        daemon = self.daemon
        assert daemon is not None
        # (read before mounting: a mount on a shared mount reaches the daemon's namespace)
        propagates = mounts.shared_at(self.mountpoint)
        try:
            req = handoff.next_mount(lambda: self._signal is not None or daemon.poll() is not None)
            if req is None:
                return None
            try:
                if os.path.realpath(req.mountpoint) != self.mountpoint:
                    raise ValueError(
                        f"the daemon mounts {req.mountpoint}, fusetrace was told "
                        f"{self.config.mountpoint}"
                    )
                daemon_spec = mounts.parse_options(
                    fusermount.kernel_options(req.options) + spec.given,
                    every_flag=mounts.lists_every_flag(req.options),
                )
            except (ValueError, mounts.MountOptionError) as e:
                handoff.refuse(f"fusetrace: {e}")
                raise
        except (ValueError, mounts.MountOptionError) as e:
            raise DaemonError(f"cannot mount for the daemon: {e}") from None
        if "blkdev" in req.options:
            print(
                "fusetrace: warning: the daemon asks for blkdev (a fuseblk mount on a "
                "block device): fusetrace mounts a plain fuse filesystem",
                file=sys.stderr,
            )
        try:
            ours, theirs = self._mount_and_forward(
                fileobj, devfd, daemon_spec, rootmode, {"daemon_options": req.options}
            )
        except EnvironmentProblem as e:
            handoff.refuse(str(e))
            raise
        if not propagates:
            try:
                fusermount.attach_in_namespace(daemon.pid, self.mountpoint)
            except EnvironmentProblem as e:
                theirs.close()
                handoff.refuse(str(e))
                raise
            self._watch_mount = True
        handoff.hand_over(theirs)
        handoff.serve_later(self._answer_later)
        return ours

    def _answer_later(self, payload: bytes) -> str:
        """Later requests: ``fusermount -u`` from the daemon asks fusetrace to unmount."""
        from fusetrace.proxy import fusermount

        try:
            req = fusermount.parse_request(payload)
        except ValueError as e:
            return f"fusetrace: {e}"
        if req.unmount:
            self._unmount_requested = True
            return "ok"
        return "fusetrace: already mounted"

    def _ended_before_mount(self, sup: seccomp.Supervisor | None = None) -> RecordResult:
        daemon = self.daemon
        assert daemon is not None
        if self._signal is not None:
            status = daemon.stop(2.0)
            signum = self._signal
            code = ExitCode.INTERRUPTED if signum == signal.SIGINT else 128 + signum
            return RecordResult(0, self.config.output, "interrupted before mounting", code, status)
        status = daemon.stop(2.0 if self._handoff_error else DAEMON_GRACE)
        daemon.relay.join(2.0)
        last = daemon.relay.last_line
        did = self._what_it_did(sup)
        if self._handoff_error is not None:
            raise DaemonError(
                f"{self.handoff} hand-off: {self._handoff_error}",
                hint="give fusetrace the mountpoint the daemon mounts",
            )
        raise DaemonError(
            f"{self.handoff} hand-off: the daemon ended without mounting "
            f"({daemons.describe_status(status)}){did}"
            + (f"; its last words: {last}" if last else ""),
            hint=self._what_to_try(sup),
        )

    def _what_it_did(self, sup: seccomp.Supervisor | None) -> str:
        if sup is None:
            if self.handoff == "fusermount":
                return "; it never asked fusermount to mount"
            return ""
        ev = sup.events
        parts = []
        helpers = ev.execs[1:]  # the first is the daemon's own exec
        if helpers:
            parts.append("exec'd " + ", ".join(os.path.basename(e) for e in helpers[:5]))
        if ev.foreign_mounts:
            parts.append(
                "mounted " + ", ".join(ev.foreign_mounts[:3]) + " with a device fusetrace did "
                "not hand out"
            )
        elif ev.opened:
            parts.append(f"opened /dev/fuse {ev.opened} time(s)")
            parts.append(self._handoff_note or "but never called mount(2) on it")
        else:
            parts.append("never opened /dev/fuse")
        return "; it " + ", ".join(parts)

    def _what_to_try(self, sup: seccomp.Supervisor | None) -> str:
        if self.handoff == "seccomp":
            if sup is not None and not sup.events.opened and not sup.events.foreign_mounts:
                return (
                    "run the daemon in the foreground (-f) on the mountpoint fusetrace was "
                    "given, or try --handoff fd with {} in place of the mountpoint"
                )
            return "run the daemon alone in the foreground to see why"
        if self.handoff == "fusermount":
            return "try --handoff seccomp (the daemon mounts as it does natively)"
        return "try --handoff seccomp, or run the daemon alone in the foreground to see why"

    def _on_capture_error(self, message: str) -> None:
        self._capture_error = message

    def _wait(self) -> Ending:
        fwd = self.forwarder
        assert fwd is not None
        timeout_ns = int(self.config.daemon_timeout * 1e9) if self.config.daemon_timeout else None
        while not fwd.ended.wait(0.25):
            if self._watch_mount and self.mounted and not self._still_mounted():
                # unmounted here; the daemon's namespace holds the last reference
                with self._release_lock:
                    self.mounted = False
                if self.conn is not None:
                    mounts.abort_connection(self.conn)
            elif self._unmount_requested:
                self._unmount_requested = False
                self._release()
            elif self._signal is not None:
                fwd.end("interrupted", signal.Signals(self._signal).name)
            elif self._capture_error is not None:
                fwd.end("capture failed", self._capture_error)
            elif timeout_ns is not None:
                oldest = fwd.oldest_outstanding()
                if oldest is not None and time.time_ns() - oldest > timeout_ns:
                    fwd.end(
                        "timeout",
                        f"a request went unanswered for {self.config.daemon_timeout:g} s",
                    )
        assert fwd.ending is not None
        return fwd.ending

    def _blk(self) -> bool:
        return str(self._mount_meta.get("mount_type", "")).startswith("fuseblk")

    def _daemon_gone(self) -> bool:
        fwd = self.forwarder
        if fwd is not None and fwd.ending is not None and fwd.ending.reason == "daemon closed":
            return True
        return self.daemon is not None and self.daemon.poll() is not None

    def _still_mounted(self) -> bool:
        entry = mounts.find_mount(self.mountpoint)
        return entry is not None and entry.conn == self.conn

    def _release(self, *, abort_first: bool = False) -> str:
        """Take the filesystem away; idempotent (and safe from the seccomp thread)."""
        with self._release_lock:
            return self._release_locked(abort_first)

    def _release_locked(self, abort_first: bool) -> str:
        if not self.mounted:
            return "not mounted"
        if self._blk() and self._daemon_gone():
            # unmounting a fuseblk filesystem sends DESTROY and waits for the answer, which
            # a daemon that is gone never gives: abort first (as closing /dev/fuse would)
            abort_first = True
        if abort_first and self.conn is not None:
            mounts.abort_connection(self.conn)
        try:
            how = mounts.release(self.mountpoint, self.conn)
        except OSError as e:
            print(
                f"fusetrace: warning: cannot unmount {self.mountpoint}: {e.strerror}",
                file=sys.stderr,
            )
            if self.conn is not None:
                mounts.abort_connection(self.conn)
            how = "aborted"
        if self._watch_mount and self.conn is not None:
            mounts.abort_connection(self.conn)  # the daemon's namespace still holds it
        self.mounted = False
        return how

    def _finish(self, ending: Ending) -> RecordResult:
        fwd = self.forwarder
        daemon = self.daemon
        assert fwd is not None and daemon is not None
        reason = ending.reason
        exit_code: int = ExitCode.OK
        if reason == "unmounted":
            self.mounted = False
            how = "filesystem unmounted"
        elif reason == "daemon closed":
            self._release()
            how = "daemon exited"
        elif reason == "interrupted":
            unmount = self._release()
            how = f"interrupted ({ending.detail}; {unmount})"
            signum = self._signal or signal.SIGINT
            exit_code = ExitCode.INTERRUPTED if signum == signal.SIGINT else 128 + signum
        elif reason == "timeout":
            self._release(abort_first=True)
            how = f"daemon timeout ({ending.detail}; connection aborted)"
            exit_code = ExitCode.ENVIRONMENT
        else:  # capture failed, device error
            self._release()
            how = f"{reason}: {ending.detail}" if ending.detail else reason
            exit_code = ExitCode.ENVIRONMENT
            if ending.detail == "the reader of the capture went away":
                exit_code = ExitCode.OK
        # the device is unmounted or aborted: the kernel → daemon loop ends with ENODEV;
        # closing our socket end gives the daemon end of file
        fwd.close_daemon_side()
        status = daemon.stop(2.0 if reason == "timeout" else DAEMON_GRACE)
        daemon.relay.join(2.0)
        fwd.join(5.0)
        assert self.capture is not None
        self.capture.close()
        frames = self.capture.writer.frames
        if reason == "unmounted" and status != 0:
            how, exit_code = self._after_unmount(status)
        if reason == "daemon closed":
            how = f"daemon exited ({daemons.describe_status(status)})"
            if not fwd.init_answered.is_set():
                last = daemon.relay.last_line
                hint = "run the daemon alone in the foreground to see why"
                if self.handoff == "fd":
                    hint += (
                        "; a daemon that does not take /dev/fd/N (libfuse 2, fuse-lite) "
                        "needs the mountpoint in place of {} (the seccomp hand-off)"
                    )
                raise DaemonError(
                    f"{self.handoff} hand-off: the filesystem was mounted, but the daemon "
                    f"ended before answering INIT ({daemons.describe_status(status)})"
                    + (f"; its last words: {last}" if last else ""),
                    hint=hint,
                )
            if status != 0:
                exit_code = daemons.exit_code_for(status)
        stats = {
            "requests": fwd.stats.inbound,
            "replies": fwd.stats.outbound + fwd.stats.synchronous,
            "refused": dict(fwd.stats.refused),
            "joined": fwd.stats.joined,
            "synchronous": fwd.stats.synchronous,
            "proto": fwd.stats.proto,
            "caught": self._sup.events.caught if self._sup is not None else None,
            "init_changes": [
                c for c in (fwd.stats.init_comment_in, fwd.stats.init_comment_out) if c
            ],
        }
        return RecordResult(frames, self.config.output, how, exit_code, status, stats)

    def _after_unmount(self, status: int) -> tuple[str, int]:
        """How the session ended and fusetrace's exit status, when the daemon did not exit
        0 after the filesystem was unmounted. Behind the socket a daemon reads end of file
        where /dev/fuse would say ENODEV: libfuse prints "short read on fuse device" and
        exits 1 or 8 (fuse_main), where natively it exits 0. That is the expected ending
        (fusetrace exits 0). Any other ending (another status, a signal) is the daemon's
        failure at teardown: fusetrace exits with the daemon's status (128 + N for a
        signal), as when the daemon exits on its own."""
        daemon = self.daemon
        assert daemon is not None
        said = daemons.describe_status(status)
        if daemon.relay.saw_eof and status in daemons.LIBFUSE_EOF_STATUSES:
            return (
                f"filesystem unmounted; daemon {said}, as libfuse ends on the end of file "
                "it reads from the socket (natively it reads ENODEV and exits 0)",
                ExitCode.OK,
            )
        return (
            f"filesystem unmounted; daemon {said}: a failure at teardown "
            "(libfuse's end behind a socket is 'short read on fuse device' and status 1 or 8)",
            daemons.exit_code_for(status),
        )

    def _cleanup(self, devfd: int, ours: socket.socket | None) -> None:
        """Whatever went wrong: nothing mounted, daemon reaped, threads stopped."""
        if self.mounted:
            self._release()
        if self.forwarder is not None:
            self.forwarder.end("cleanup")
            self.forwarder.close_daemon_side()
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.stop(DAEMON_GRACE)
        if self.forwarder is not None:
            self.forwarder.join(5.0)
        if self.capture is not None:
            self.capture.close()
        if ours is not None:
            ours.close()
        try:
            os.close(devfd)
        except OSError as e:
            if e.errno != errno.EBADF:
                raise
