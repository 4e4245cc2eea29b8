"""The conformance workload's step catalogue: pure data, no system calls.

Each step has a name, the opcodes it is meant to make the kernel send, whether it writes, and
a line of documentation. The system calls that carry a step out live in
:mod:`fusetrace.conform.workload`, the runner that calls them in
:mod:`fusetrace.conform.runner`; the report (:mod:`fusetrace.conform.report`) reads only this
module, so it stays pure.

Before each step the runner looks up a name that does not exist, ``.fusetrace-step-NN-NAME``;
in a capture, that LOOKUP marks where the step's frames begin.
"""

from __future__ import annotations

import enum
import errno
from dataclasses import dataclass

from fusetrace.protocol import abi
from fusetrace.protocol.abi import Opcode

#: the directory the workload creates (and removes again) under the directory it tests
WORKDIR = "fusetrace-conform"
#: prefix of the name looked up before each step (never exists)
MARKER_PREFIX = ".fusetrace-step-"
#: entries in the large directory
LARGE_DIR_ENTRIES = 1000
#: size of the data file, and its contents (a fixed pattern)
DATA_SIZE = 128 * 1024
#: per-step time limit, seconds
DEFAULT_TIMEOUT = 30.0
#: fixed timestamps for utimens (ns since the epoch)
FIXED_ATIME_NS = 1_700_000_000_123_456_789
FIXED_MTIME_NS = 1_600_000_000_987_654_321
#: the extended attribute the xattr steps set, read and remove
XATTR_NAME = "user.fusetrace"
XATTR_VALUE = b"conformance"

#: errors that say "this operation is not implemented here", not "it went wrong"
UNSUPPORTED_ERRNOS = frozenset({errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTTY})
#: errors that say the FUSE connection is gone (daemon died, connection aborted)
CONNECTION_GONE = frozenset({errno.ENOTCONN, errno.ECONNABORTED, errno.ENODEV})
#: errors from the first write step that mean the filesystem is read-only
READ_ONLY_ERRNOS = frozenset({errno.EROFS, errno.ENOSYS, errno.EOPNOTSUPP})


def data_pattern(size: int = DATA_SIZE) -> bytes:
    """The data file's contents: a fixed, non-repeating-per-page byte pattern."""
    block = bytes((i * 7 + i // 251) & 0xFF for i in range(4096 + 13))
    reps = size // len(block) + 1
    return (block * reps)[:size]


def errno_name(number: int) -> str:
    """``ENOENT`` for 2; Linux's own name EOPNOTSUPP for 95 (the one namer, protocol.abi)."""
    return abi.errno_name(number)


def marker_name(index: int, name: str) -> str:
    return f"{MARKER_PREFIX}{index:02d}-{name}"


class Status(enum.Enum):
    """The verdict on one step."""

    SUPPORTED = "supported"
    UNSUPPORTED = "not supported"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class StepSpec:
    """One workload step as data.

    ``ops`` are the opcodes the step is about (the report judges "not supported" from their
    replies: refused with ENOSYS/EOPNOTSUPP/ENOTTY and never answered with success); the
    step may make the kernel send others too (OPEN, FLUSH, RELEASE...). ``writes`` steps are
    skipped on a read-only filesystem.
    """

    name: str
    ops: tuple[Opcode, ...]
    writes: bool = False
    doc: str = ""
    #: errors that also mean "not supported" for this step (EINVAL for renameat2 flags)
    unsupported: frozenset[int] = frozenset()


@dataclass
class StepResult:
    """What happened in one step, judged from the system calls alone."""

    index: int
    name: str
    ops: tuple[Opcode, ...]
    status: Status
    #: errno of the failing call (None when it worked)
    errno: int | None = None
    detail: str = ""

    @property
    def error(self) -> str | None:
        return None if self.errno is None else errno_name(self.errno)

    @property
    def marker(self) -> str:
        return marker_name(self.index, self.name)

    def to_dict(self) -> dict[str, object]:
        return {
            "index": self.index,
            "name": self.name,
            "ops": [op.name for op in self.ops],
            "status": self.status.value,
            "errno": self.error,
            "detail": self.detail,
        }


_O = Opcode
_W = True
CATALOGUE: tuple[StepSpec, ...] = (
    StepSpec("statfs", (_O.STATFS,), doc="statvfs() of the mountpoint"),
    StepSpec("mkdir", (_O.MKDIR,), _W, "mkdir() the work directory"),
    StepSpec("create", (_O.CREATE, _O.MKNOD), _W, "open(O_CREAT|O_EXCL) a new file"),
    StepSpec("write", (_O.WRITE,), _W, "pwrite() 128 KiB of a fixed pattern"),
    StepSpec("fsync", (_O.FSYNC,), _W, "fsync() after a write"),
    StepSpec("fdatasync", (_O.FSYNC,), _W, "fdatasync() after a write"),
    StepSpec(
        "read",
        (_O.OPEN, _O.READ, _O.FLUSH, _O.RELEASE),
        doc="read() the file back (cache dropped)",
    ),
    StepSpec("lookup", (_O.LOOKUP,), doc="stat() a missing and an existing name"),
    StepSpec("getattr", (_O.GETATTR,), doc="statx(AT_STATX_FORCE_SYNC)"),
    StepSpec("truncate", (_O.SETATTR,), _W, "truncate() and ftruncate()"),
    StepSpec("chmod", (_O.SETATTR,), _W, "chmod() 0640 and back"),
    StepSpec("chown", (_O.SETATTR,), _W, "chown() to the caller's ids"),
    StepSpec("utimens", (_O.SETATTR,), _W, "utimensat() fixed times"),
    StepSpec("mknod-fifo", (_O.MKNOD,), _W, "mkfifo()"),
    StepSpec("symlink", (_O.SYMLINK,), _W, "symlink()"),
    StepSpec("readlink", (_O.READLINK,), doc="readlink()"),
    StepSpec("link", (_O.LINK,), _W, "link() a second name"),
    StepSpec("rename", (_O.RENAME,), _W, "rename()"),
    StepSpec(
        "rename-noreplace",
        (_O.RENAME2,),
        _W,
        "renameat2(RENAME_NOREPLACE), then onto an existing name (EEXIST)",
        unsupported=frozenset({errno.EINVAL}),
    ),
    StepSpec(
        "rename-exchange",
        (_O.RENAME2,),
        _W,
        "renameat2(RENAME_EXCHANGE)",
        unsupported=frozenset({errno.EINVAL}),
    ),
    StepSpec("unlink", (_O.UNLINK,), _W, "unlink() the files the steps before made"),
    StepSpec("rmdir", (_O.RMDIR,), _W, "rmdir() an empty directory"),
    StepSpec("setxattr", (_O.SETXATTR,), _W, "setxattr() create, then XATTR_REPLACE"),
    StepSpec("getxattr", (_O.GETXATTR,), doc="getxattr() size-0 probe, then the value"),
    StepSpec("listxattr", (_O.LISTXATTR,), doc="listxattr() size-0 probe, then the list"),
    StepSpec("removexattr", (_O.REMOVEXATTR,), _W, "removexattr()"),
    StepSpec(
        "readdir-small",
        (_O.OPENDIR, _O.READDIRPLUS, _O.READDIR, _O.RELEASEDIR),
        doc="list a small directory",
    ),
    StepSpec(
        "populate-large",
        (_O.MKDIR, _O.CREATE, _O.MKNOD),
        _W,
        f"create {LARGE_DIR_ENTRIES} empty files in one directory",
    ),
    StepSpec(
        "readdir-large",
        (_O.READDIRPLUS, _O.READDIR),
        doc=f"list a directory of {LARGE_DIR_ENTRIES}+ entries",
    ),
    StepSpec("fsyncdir", (_O.FSYNCDIR,), doc="fsync() on a directory"),
    StepSpec("syncfs", (_O.SYNCFS,), doc="syncfs() on a file of the filesystem"),
    StepSpec(
        "posix-locks",
        (_O.GETLK, _O.SETLK, _O.SETLKW),
        doc="fcntl() F_GETLK, F_SETLK, F_SETLKW",
    ),
    StepSpec(
        "ofd-locks",
        (_O.GETLK, _O.SETLK, _O.SETLKW),
        doc="fcntl() F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW",
    ),
    StepSpec("flock", (_O.SETLK, _O.SETLKW), doc="flock() shared and exclusive"),
    StepSpec("fallocate", (_O.FALLOCATE,), _W, "fallocate() mode 0, grow"),
    StepSpec("punch-hole", (_O.FALLOCATE,), _W, "fallocate(PUNCH_HOLE|KEEP_SIZE)"),
    StepSpec("lseek-data-hole", (_O.LSEEK,), doc="lseek() SEEK_DATA and SEEK_HOLE"),
    StepSpec(
        "copy-file-range",
        (_O.COPY_FILE_RANGE_64, _O.COPY_FILE_RANGE),
        _W,
        "copy_file_range() 64 KiB into a new file",
    ),
    StepSpec("statx-btime", (_O.STATX,), doc="statx() asking for the birth time"),
    StepSpec("tmpfile", (_O.TMPFILE,), _W, "open(O_TMPFILE)"),
    StepSpec("access", (_O.ACCESS,), doc="access() R_OK and X_OK"),
    StepSpec("poll", (_O.POLL,), doc="select() on an open file"),
    StepSpec("ioctl", (_O.IOCTL,), doc="ioctl(FS_IOC_GETFLAGS)"),
    StepSpec("mmap-read", (_O.READ,), doc="read through a shared mapping"),
    StepSpec("mmap-write", (_O.WRITE,), _W, "write through a shared mapping, msync()"),
    StepSpec(
        "interrupt",
        (_O.INTERRUPT,),
        doc="a signal to a thread while its statvfs() request waits for the daemon",
    ),
    StepSpec(
        "drop-caches",
        (_O.BATCH_FORGET, _O.FORGET),
        doc="stat() up to 200 names of the large directory, then drop the kernel's "
        "dentry and inode caches (/proc/sys/vm/drop_caches, system-wide)",
    ),
    StepSpec(
        "cleanup",
        (_O.UNLINK, _O.RMDIR),
        _W,
        "remove the work directory and everything in it",
    ),
)

#: step name -> spec
BY_NAME: dict[str, StepSpec] = {s.name: s for s in CATALOGUE}


def step_names() -> list[str]:
    return [s.name for s in CATALOGUE]


def steps_sending(opcode: Opcode) -> list[str]:
    """The steps meant to make the kernel send ``opcode``, in workload order."""
    return [s.name for s in CATALOGUE if opcode in s.ops]
