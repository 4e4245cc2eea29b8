"""Opening capture files by path: the one place in capture/ that touches the filesystem."""

from __future__ import annotations

import os
import platform
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, BinaryIO

from fusetrace import __version__
from fusetrace.errors import CaptureError

if TYPE_CHECKING:  # imported where used: a recorder creates its file before it needs them
    from fusetrace.capture.pcapng import CaptureReader, CaptureWriter, Channel


@contextmanager
def open_capture(path: str) -> Iterator[CaptureReader]:
    """Open a capture for reading; ``-`` reads standard input."""
    from fusetrace.capture.pcapng import CaptureReader

    if path == "-":
        yield CaptureReader(sys.stdin.buffer)
        return
    try:
        f = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        raise CaptureError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CaptureError(f"{path}: is a directory, not a capture") from None
    except PermissionError:
        raise CaptureError(f"{path}: permission denied") from None
    except OSError as e:
        raise CaptureError(f"{path}: {e.strerror}") from None
    with f:
        try:
            yield CaptureReader(f)
        except CaptureError as e:
            e.message = f"{path}: {e.message}"
            raise


def open_output(path: str) -> BinaryIO:
    """Create a capture file, mode 0600 (captures hold file data); ``-`` is standard output.

    A regular file that exists already is truncated and made 0600 too. Anything else the
    path names (a FIFO, /dev/null, a terminal) is written as it is, its mode untouched.
    The file is unbuffered: every block reaches the kernel in one write(), so the file is
    valid up to the last whole frame even if the writer is killed.
    """
    if path == "-":
        return os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.fchmod(fd, 0o600)
    except OSError as e:
        raise CaptureError(f"cannot create {path}: {e.strerror}") from None
    return os.fdopen(fd, "wb", buffering=0)


def host_writer(
    fileobj: BinaryIO,
    meta: dict[str, Any],
    *,
    channels: list[Channel] | None = None,
    snaplen: int | None = None,
) -> CaptureWriter:
    """A writer whose section header describes this machine (kernel, architecture)."""
    from fusetrace.capture.pcapng import CaptureWriter

    uname = platform.uname()
    return CaptureWriter(
        fileobj,
        meta,
        channels=channels,
        snaplen=snaplen,
        userappl=f"fusetrace {__version__}",
        os_name=f"{uname.system} {uname.release}",
        hardware=uname.machine,
        byte_order=sys.byteorder,
    )
