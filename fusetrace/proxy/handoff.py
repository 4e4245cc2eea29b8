"""How the daemon gets its end of the socket: the hand-offs, shared by record and replay.

Three ways, one socket pair (:func:`make_socketpair`):

* ``fd``: the daemon's mountpoint argument becomes ``/dev/fd/N`` and it inherits the socket
  (:func:`spawn_on_socket`);
* ``fusermount``: fusetrace stands in for fusermount3/fusermount (:mod:`.fusermount`);
  :class:`FusermountHandoff` starts the daemon with the stand-in, waits for its request to
  mount, hands over the socket and answers its later requests;
* ``seccomp``: the daemon opens /dev/fuse and mounts as it does natively, its calls caught
  (:mod:`.seccomp`); :class:`SeccompHandoff` starts the daemon under the filter and waits
  until its mount was served.

What a mount request does is the caller's: ``record`` mounts /dev/fuse for real and starts
forwarding; ``replay`` hands the daemon its socket and mounts nothing. Either way the
daemon is started, and served until it mounted, by the code here.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from fusetrace.proxy import daemon as daemons
from fusetrace.proxy import mount as mounts

if TYPE_CHECKING:  # each hand-off's module is imported when that hand-off is used
    from fusetrace.proxy import fusermount, seccomp

SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
#: how often the waits below look at their caller's reasons to give up (seconds)
REQUEST_POLL = 0.25
MOUNT_POLL = 0.05


def make_socketpair(frame: int) -> tuple[socket.socket, socket.socket]:
    """The proxy's end and the daemon's end, with buffers that hold the largest frame."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    size = max(4 << 20, 4 * frame)
    for s in (ours, theirs):
        for opt, plain in ((SO_SNDBUFFORCE, socket.SO_SNDBUF), (SO_RCVBUFFORCE, socket.SO_RCVBUF)):
            try:
                s.setsockopt(socket.SOL_SOCKET, opt, size)
            except OSError:
                s.setsockopt(socket.SOL_SOCKET, plain, size)
    return ours, theirs


def frame_socketpair() -> tuple[socket.socket, socket.socket]:
    """A socket pair for the largest frame this kernel's connections may carry."""
    from fusetrace.proxy.forward import max_frame_size

    return make_socketpair(max_frame_size())


def choose_handoff(asked: str, argv: list[str], mp_args: list[int], program: str) -> str:
    """The hand-off that needs no mount of the daemon's own (replay's choice): ``auto`` is
    the /dev/fd/N handoff when the daemon's arguments name the mountpoint and it links
    libfuse 3 (3.3 and later accept /dev/fd/N; read from the program's ELF file, not with a
    run of ldd), or when ``{}`` is used; else fusermount."""
    if asked != "auto":
        return asked
    if daemons.PLACEHOLDER in argv[1:]:
        return "fd"
    if mp_args and mounts.program_facts(program).libfuse3:
        return "fd"
    return "fusermount"


def record_handoff(asked: str, argv: list[str], mp_args: list[int], program: str) -> str:
    """``fusetrace record``'s choice. ``auto``: ``{}`` on the command line asks for the
    /dev/fd/N hand-off; any other daemon opens /dev/fuse and mounts as it does natively,
    served through the seccomp hand-off (whatever mounts for it: the daemon itself or a
    fusermount-style helper of any name), so the mount is exactly the daemon's. Where
    seccomp cannot be used, :func:`choose_handoff`."""
    if asked != "auto":
        return asked
    if daemons.PLACEHOLDER in argv[1:]:
        return "fd"
    from fusetrace.proxy import seccomp

    if seccomp.available() is None:
        return "seccomp"
    return choose_handoff(asked, argv, mp_args, program)


def spawn_on_socket(
    argv: list[str],
    program: str,
    theirs: socket.socket,
    *,
    env: dict[str, str] | None = None,
    stdout_to_stderr: bool,
) -> daemons.DaemonProcess:
    """The ``fd`` hand-off: start the daemon (``argv`` already names ``/dev/fd/N``, N being
    ``theirs``) with the socket inherited; our copy of its end is closed. The daemon reads
    fusetrace's standard input (a piped password reaches it)."""
    try:
        return daemons.spawn(
            argv,
            program,
            pass_fds=[theirs.fileno()],
            env=env,
            stdout_to_stderr=stdout_to_stderr,
            stdin=None,
        )
    finally:
        theirs.close()


class FusermountHandoff:
    """The ``fusermount`` hand-off, from the daemon's start until it mounted.

    :meth:`spawn` starts the daemon with the stand-in in place of fusermount;
    :meth:`next_mount` waits for its request to mount; the caller answers it with
    :meth:`hand_over` (the socket end the daemon gets) or :meth:`refuse`; then
    :meth:`serve_later` answers the requests that follow (``fusermount -u``) in a thread.
    """

    def __init__(self) -> None:
        from fusetrace.proxy import fusermount

        self.shim = fusermount.Shim()

    def spawn(
        self,
        argv: list[str],
        program: str,
        *,
        env: dict[str, str] | None = None,
        stdout_to_stderr: bool,
    ) -> daemons.DaemonProcess:
        shim = self.shim
        try:
            return daemons.spawn(
                argv,
                program,
                pass_fds=[shim.theirs.fileno()],
                env=shim.env(env),
                preexec=shim.preexec(),
                stdout_to_stderr=stdout_to_stderr,
                stdin=None,  # fusetrace's own: a piped password reaches it
            )
        finally:
            shim.theirs.close()

    def next_mount(
        self, give_up: Callable[[], bool], *, skip_malformed: bool = False
    ) -> fusermount.Request | None:
        """The daemon's request to mount. Requests to unmount before it are answered "ok";
        a malformed one gets the error as its answer, and is skipped (``skip_malformed``)
        or raised (ValueError). None when ``give_up()`` says so (asked every quarter
        second) or every process that could ask has closed the control socket."""
        from fusetrace.proxy import fusermount

        ctl = self.shim.ours
        ctl.settimeout(REQUEST_POLL)
        while True:
            if give_up():
                return None
            try:
                payload = ctl.recv(65536)
            except TimeoutError:
                continue
            if not payload:
                return None
            try:
                req = fusermount.parse_request(payload)
            except ValueError as e:
                self.refuse(f"fusetrace: {e}")
                if skip_malformed:
                    continue
                raise
            if req.unmount:
                fusermount.reply(ctl, "ok")
                continue
            return req

    def hand_over(self, theirs: socket.socket) -> None:
        """Answer the mount request with the daemon's end of the socket (then closed)."""
        from fusetrace.proxy import fusermount

        try:
            fusermount.reply(self.shim.ours, "ok", theirs.fileno())
        finally:
            theirs.close()

    def refuse(self, message: str) -> None:
        """Answer the request with an error, which the daemon's fusermount prints."""
        from fusetrace.proxy import fusermount

        fusermount.reply(self.shim.ours, message)

    def serve_later(self, answer: Callable[[bytes], str]) -> None:
        """Answer every later request, in a thread of its own, with ``answer(request)``
        (the request as the stand-in sent it), until the daemon closes its end."""
        from fusetrace.proxy import fusermount

        ctl = self.shim.ours
        ctl.settimeout(None)

        def serve() -> None:
            while True:
                try:
                    payload = ctl.recv(65536)
                except OSError:
                    return
                if not payload:
                    return
                fusermount.reply(ctl, answer(payload))

        threading.Thread(target=serve, name="fusermount", daemon=True).start()

    def close(self) -> None:
        self.shim.close()


class SeccompHandoff:
    """The ``seccomp`` hand-off, from the daemon's start until its mount was served.

    ``on_mount`` serves the daemon's mount(2) of a socket it was handed in place of
    /dev/fuse (our end of the pair given): 0 or the errno the daemon gets; ``on_umount``
    its umount(2). ``sync_fd`` and ``on_write``: see :class:`.seccomp.Supervisor`.
    """

    def __init__(
        self,
        mountpoint: str,
        on_mount: Callable[[seccomp.MountCall, socket.socket], int],
        on_umount: Callable[[], int],
        *,
        sync_fd: int | None = None,
        on_write: Callable[[bytes], int] | None = None,
    ) -> None:
        from fusetrace.proxy import seccomp

        self.supervisor = seccomp.Supervisor(
            mountpoint,
            frame_socketpair,
            on_mount,
            on_umount,
            sync_fd=sync_fd,
            on_write=on_write,
        )

    def spawn(
        self,
        argv: list[str],
        program: str,
        *,
        env: dict[str, str] | None = None,
        stdout_to_stderr: bool,
    ) -> daemons.DaemonProcess:
        """Start the supervisor, then the daemon under its filter."""
        sup = self.supervisor
        sup.start()  # before the daemon: its first caught call may come at once
        try:
            return daemons.spawn(
                argv,
                program,
                pass_fds=[],
                env=env,
                stdout_to_stderr=stdout_to_stderr,
                stdin=None,  # fusetrace's own: a piped password reaches it
                preexec=sup.preexec(),
            )
        finally:
            sup.spawned()

    def wait_for_mount(self, give_up: Callable[[], bool]) -> bool:
        """Wait until the daemon's mount was served (True), or ``give_up()`` says so."""
        mounted = self.supervisor.mounted
        while not mounted.wait(MOUNT_POLL):
            if give_up():
                break
        return mounted.is_set()

    def close(self) -> None:
        self.supervisor.close()
