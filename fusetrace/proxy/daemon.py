"""Starting the unmodified daemon, relaying its stderr, and judging how it ended."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fusetrace.errors import DaemonError

#: a daemon argument that stands for the mountpoint, whatever the mountpoint is
PLACEHOLDER = "{}"


def resolve_program(argv0: str) -> str:
    """The daemon's executable, found like the shell finds it; raises if it cannot run."""
    if "/" in argv0:
        path = argv0
        if not os.path.exists(path):
            raise DaemonError(f"daemon {argv0} not found")
    else:
        found = which(argv0)
        if found is None:
            raise DaemonError(f"daemon {argv0} not found in PATH")
        path = found
    if os.path.isdir(path) or not os.access(path, os.X_OK):
        raise DaemonError(f"daemon {path} is not executable")
    return path


def which(name: str) -> str | None:
    """The first executable ``name`` on PATH, as ``shutil.which`` finds it on Linux (without
    importing shutil, and the archive modules it loads, into every recording)."""
    for directory in os.get_exec_path():
        path = os.path.join(directory, name)
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            return path
    return None


def mountpoint_arguments(argv: Sequence[str], mountpoint: str) -> list[int]:
    """Indexes of the daemon arguments that name the mountpoint (or are ``{}``).

    Call it before mounting: resolving a path on a FUSE mount that has not answered INIT
    yet would block.
    """
    real = os.path.realpath(mountpoint)
    found = []
    for i, arg in enumerate(argv[1:], start=1):
        names_it = arg in (PLACEHOLDER, mountpoint) or (
            arg.startswith(("/", ".")) and os.path.realpath(arg) == real
        )
        if names_it:
            found.append(i)
    return found


def substitute(argv: Sequence[str], indexes: list[int], replacement: str) -> list[str]:
    out = list(argv)
    for i in indexes:
        out[i] = replacement
    return out


#: what libfuse (2 and 3) prints when its read of the device returns less than a header:
#: behind a socket, the end of file the daemon reads after the unmount
LIBFUSE_EOF_LINE = b"short read on fuse device"
#: the exit statuses libfuse daemons end with after that line: the session loop fails with
#: -EIO; low-level daemons return 1 (or the errno, 5), fuse_main returns 8
LIBFUSE_EOF_STATUSES = frozenset({1, 5, 8})


class StderrRelay:
    """Copies the daemon's stderr to ours as it comes, remembering the last line."""

    def __init__(self, rfd: int) -> None:
        self._fd = rfd
        self.last_line = ""
        #: libfuse said it read end of file (see :data:`LIBFUSE_EOF_LINE`)
        self.saw_eof = False
        self._tail = b""
        self._thread = threading.Thread(target=self._run, name="daemon-stderr", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        out = sys.stderr.buffer if hasattr(sys.stderr, "buffer") else None
        try:
            while True:
                chunk = os.read(self._fd, 65536)
                if not chunk:
                    break
                if out is not None:
                    try:
                        out.write(chunk)
                        out.flush()
                    except (OSError, ValueError):
                        out = None
                text = self._tail + chunk
                if LIBFUSE_EOF_LINE in text:
                    self.saw_eof = True
                lines = [ln for ln in text.split(b"\n") if ln.strip()]
                if lines:
                    if text.endswith(b"\n"):
                        self.last_line = lines[-1].decode("utf-8", "replace").strip()
                        self._tail = b""
                    else:
                        self._tail = text[text.rfind(b"\n") + 1 :][-4096:]
                        if len(lines) > 1:
                            self.last_line = lines[-2].decode("utf-8", "replace").strip()
        except OSError:
            pass
        finally:
            if self._tail.strip():
                self.last_line = self._tail.decode("utf-8", "replace").strip()
            os.close(self._fd)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


@dataclass
class DaemonProcess:
    """The daemon fusetrace started."""

    proc: subprocess.Popen[bytes]
    relay: StderrRelay

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    def wait_exit(self, timeout: float) -> int | None:
        """The daemon's exit status once it has ended, waiting up to ``timeout`` seconds;
        None if it is still running. Woken by the exit itself (a pidfd), where
        Popen.wait(timeout) polls at intervals growing to 50 ms."""
        status = self.proc.poll()
        if status is not None or timeout <= 0:
            return status
        try:
            pidfd = os.pidfd_open(self.proc.pid)
        except (AttributeError, OSError):  # no pidfd: Popen's polling it is
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return None
        try:
            select.select([pidfd], [], [], timeout)
        finally:
            os.close(pidfd)
        return self.proc.poll()

    def stop(self, grace: float) -> int:
        """Wait ``grace`` seconds for the daemon to end, then SIGTERM, then SIGKILL."""
        status = self.wait_exit(grace)
        if status is not None:
            return status
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is None:
                try:
                    self.proc.send_signal(sig)
                    self.proc.send_signal(signal.SIGCONT)  # a stopped daemon must see it
                except ProcessLookupError:
                    pass
            try:
                return self.proc.wait(5.0)
            except subprocess.TimeoutExpired:
                continue
        return self.proc.wait()


def spawn(
    argv: list[str],
    program: str,
    *,
    pass_fds: Sequence[int],
    env: dict[str, str] | None = None,
    stdout_to_stderr: bool = False,
    preexec: Callable[[], None] | None = None,
    stdin: int | None = subprocess.DEVNULL,
) -> DaemonProcess:
    """Start the daemon in its own process group (a Ctrl-C is fusetrace's to handle: it
    unmounts, and the daemon ends on its own when its socket closes).

    ``stdin`` is /dev/null unless given (None: fusetrace's own, as ``record`` does, so
    that a password piped to fusetrace reaches the daemon); its stdout is fusetrace's, or
    fusetrace's stderr when stdout carries the capture (``stdout_to_stderr``); its stderr
    goes through fusetrace, which remembers the last line for error messages."""
    rfd, wfd = os.pipe2(os.O_CLOEXEC)
    try:
        proc = subprocess.Popen(
            argv,
            executable=program,
            stdin=stdin,
            stdout=wfd if stdout_to_stderr else None,
            stderr=wfd,
            pass_fds=tuple(pass_fds),
            env=env,
            process_group=0,
            preexec_fn=preexec,
        )
    except OSError as e:
        os.close(rfd)
        raise DaemonError(f"cannot start daemon {argv[0]}: {e.strerror}") from None
    finally:
        os.close(wfd)
    return DaemonProcess(proc, StderrRelay(rfd))


def describe_status(status: int) -> str:
    """``exit status 1`` / ``killed by SIGKILL`` for a Popen returncode."""
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"killed by {name}"
    return f"exit status {status}"


def exit_code_for(status: int) -> int:
    """The shell's convention: a daemon killed by signal N gives 128 + N."""
    return 128 - status if status < 0 else status
