"""The built-in conformance workload: a fixed list of steps, each one a few system calls.

The workload runs against any directory: a FUSE mountpoint (through ``fusetrace record`` or
mounted directly) or a plain tmpfs/ext4 directory, which tells what a step does natively.
It is deterministic — fixed names, sizes and contents — so two captures of it can be
compared frame by frame, and bounded: a step that hangs is abandoned after a timeout.

Every step is data (:class:`Step`): a name, the opcodes it is meant to make the kernel send,
and a function that makes the system calls. Before each step the runner looks up a name that
does not exist, ``.fusetrace-step-NN-NAME``; in a capture, that LOOKUP marks where the step's
frames begin (see :mod:`fusetrace.conform.report`).

A read-only filesystem is detected (``ST_RDONLY`` from statvfs, or EROFS/ENOSYS/EOPNOTSUPP
from the first write step); the workload then skips every step that writes and runs the
others on the tree that is there, picking a regular file, the largest directory, a symlink.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import enum
import errno
import fcntl
import functools
import mmap
import os
import select
import shutil
import stat
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

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

#: errors that say "this operation is not implemented here", not "it went wrong"
UNSUPPORTED_ERRNOS = frozenset({errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTTY})
#: errors that say the FUSE connection is gone (daemon died, connection aborted)
CONNECTION_GONE = frozenset({errno.ENOTCONN, errno.ECONNABORTED, errno.ENODEV})
#: errors from the first write step that mean the filesystem is read-only
READ_ONLY_ERRNOS = frozenset({errno.EROFS, errno.ENOSYS, errno.EOPNOTSUPP})

# Linux constants Python does not export
AT_FDCWD = -100
AT_STATX_FORCE_SYNC = 0x2000
STATX_BASIC_STATS = 0x7FF
STATX_BTIME = 0x800
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
FALLOC_FL_KEEP_SIZE = 1
FALLOC_FL_PUNCH_HOLE = 2
FS_IOC_GETFLAGS = 0x80086601
#: struct flock on Linux 64-bit: l_type, l_whence, (pad), l_start, l_len, l_pid, (pad)
FLOCK_STRUCT = struct.Struct("hhxxxxqqixxxx")


def data_pattern(size: int = DATA_SIZE) -> bytes:
    """The data file's contents: a fixed, non-repeating-per-page byte pattern."""
    block = bytes((i * 7 + i // 251) & 0xFF for i in range(4096 + 13))
    reps = size // len(block) + 1
    return (block * reps)[:size]


class Status(enum.Enum):
    """The verdict on one step."""

    SUPPORTED = "supported"
    UNSUPPORTED = "not supported"
    FAILED = "failed"
    SKIPPED = "skipped"


class StepFailed(Exception):
    """A step saw something wrong that is not an errno (wrong data read back, ...)."""


class StepSkipped(Exception):
    """A step cannot run here (nothing to run it on)."""


class StepUnsupported(Exception):
    """A step found the operation not implemented, without an errno to show it."""


_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def _check(ret: int, what: str, path: str | None = None) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path)
    return ret


def statx(path: str, mask: int, flags: int = AT_STATX_FORCE_SYNC) -> tuple[int, int, int]:
    """statx(2); returns (stx_mask, stx_size, stx_btime seconds)."""
    buf = ctypes.create_string_buffer(256)
    _libc.statx.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint]
    _check(_libc.statx(AT_FDCWD, os.fsencode(path), flags, mask, buf), "statx", path)
    raw = buf.raw
    (stx_mask,) = struct.unpack_from("I", raw, 0)
    (size,) = struct.unpack_from("Q", raw, 40)
    (btime,) = struct.unpack_from("q", raw, 80)
    return stx_mask, size, btime


def renameat2(old: str, new: str, flags: int) -> None:
    fn = _libc.renameat2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    _check(fn(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new), flags), "renameat2", old)


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    fn = _libc.fallocate
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    _check(fn(fd, mode, offset, length), "fallocate")


def getxattr_size(path: str, name: str) -> int:
    """getxattr(2) with size 0: the size probe every xattr tool starts with."""
    fn = _libc.getxattr
    fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
    return _check(fn(os.fsencode(path), name.encode(), None, 0), "getxattr", path)


def listxattr_size(path: str) -> int:
    fn = _libc.listxattr
    fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
    return _check(fn(os.fsencode(path), None, 0), "listxattr", path)


@dataclass
class Context:
    """What the steps share: the directory under test and the files found or made in it."""

    root: Path
    read_only: bool = False
    #: why the run is read-only ("statvfs ST_RDONLY", "mkdir: EROFS", ...)
    read_only_reason: str = ""
    #: role -> path: "file", "small_dir", "large_dir", "symlink"
    targets: dict[str, Path] = field(default_factory=dict)
    #: what discovery found on a read-only filesystem
    found: str = ""
    #: entries the populate-large step makes
    large_entries: int = LARGE_DIR_ENTRIES

    @property
    def work(self) -> Path:
        return self.root / WORKDIR

    def target(self, role: str) -> Path:
        try:
            return self.targets[role]
        except KeyError:
            raise StepSkipped(f"no {role.replace('_', ' ')} to work on") from None


@dataclass(frozen=True)
class Step:
    """One workload step: ``run(ctx)`` makes the system calls, returns a note or None.

    ``ops`` are the opcodes the step is about (the report judges "not supported" from their
    replies: refused with ENOSYS/EOPNOTSUPP/ENOTTY and never answered with success); the
    step may make the kernel send others too (OPEN, FLUSH, RELEASE...). ``writes`` steps are
    skipped on a read-only filesystem.
    """

    name: str
    ops: tuple[str, ...]
    run: Callable[[Context], str | None]
    writes: bool = False
    doc: str = ""
    #: errors that also mean "not supported" for this step (EINVAL for renameat2 flags)
    unsupported: frozenset[int] = frozenset()


@dataclass
class StepResult:
    """What happened in one step, judged from the system calls alone."""

    index: int
    name: str
    ops: tuple[str, ...]
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
            "ops": list(self.ops),
            "status": self.status.value,
            "errno": self.error,
            "detail": self.detail,
        }


def errno_name(number: int) -> str:
    """``ENOENT`` for 2; Linux's own name EOPNOTSUPP for 95 (Python says ENOTSUP)."""
    if number == errno.EOPNOTSUPP:
        return "EOPNOTSUPP"
    return errno.errorcode.get(number, str(number))


def marker_name(index: int, name: str) -> str:
    return f"{MARKER_PREFIX}{index:02d}-{name}"


# ---- the steps ------------------------------------------------------------------------------


def _open(path: Path, flags: int, mode: int = 0o644) -> int:
    return os.open(path, flags | os.O_CLOEXEC, mode)


def _statfs(ctx: Context) -> str:
    st = os.statvfs(ctx.root)
    return f"bsize {st.f_bsize}, namemax {st.f_namemax}"


def _mkdir(ctx: Context) -> str | None:
    os.mkdir(ctx.work, 0o755)
    os.mkdir(ctx.work / "sub", 0o755)
    ctx.targets["small_dir"] = ctx.work
    return None


def _create(ctx: Context) -> None:
    fd = _open(ctx.work / "data.bin", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    os.close(fd)
    ctx.targets["file"] = ctx.work / "data.bin"


def _write(ctx: Context) -> str:
    data = data_pattern()
    fd = _open(ctx.target("file"), os.O_WRONLY)
    try:
        done = 0
        while done < len(data):
            done += os.pwrite(fd, data[done : done + 65536], done)
    finally:
        os.close(fd)
    return f"{done} bytes"


def _fsync(ctx: Context) -> None:
    fd = _open(ctx.target("file"), os.O_WRONLY)
    try:
        os.pwrite(fd, b"fsync", 0)
        os.fsync(fd)
        os.pwrite(fd, data_pattern(5), 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def _fdatasync(ctx: Context) -> None:
    fd = _open(ctx.target("file"), os.O_WRONLY)
    try:
        os.pwrite(fd, b"fdatasync", 0)
        os.fdatasync(fd)
        os.pwrite(fd, data_pattern(9), 0)
        os.fdatasync(fd)
    finally:
        os.close(fd)


def _drop_cache(fd: int) -> None:
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except OSError:
        pass


def _read(ctx: Context) -> str:
    path = ctx.target("file")
    fd = _open(path, os.O_RDONLY)
    try:
        _drop_cache(fd)
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if not ctx.read_only and data != data_pattern():
        raise StepFailed(f"read back {len(data)} bytes that differ from what was written")
    return f"{len(data)} bytes"


def _lookup(ctx: Context) -> None:
    base = ctx.work if not ctx.read_only else ctx.root
    try:
        os.stat(base / "no-such-entry")
    except FileNotFoundError:
        pass
    else:
        raise StepFailed("a name that does not exist was found")
    os.stat(ctx.target("file"))


def _getattr(ctx: Context) -> str:
    _, size, _ = statx(str(ctx.target("file")), STATX_BASIC_STATS)
    os.stat(ctx.root)
    return f"size {size}"


def _truncate(ctx: Context) -> None:
    path = ctx.target("file")
    os.truncate(path, DATA_SIZE + 4096)
    fd = _open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, DATA_SIZE)
    finally:
        os.close(fd)
    if os.stat(path).st_size != DATA_SIZE:
        raise StepFailed("size after truncate is wrong")


def _chmod(ctx: Context) -> None:
    path = ctx.target("file")
    os.chmod(path, 0o640)
    got = stat.S_IMODE(os.stat(path).st_mode)
    os.chmod(path, 0o644)
    if got != 0o640:
        raise StepFailed(f"mode after chmod 0640 is {got:04o}")


def _chown(ctx: Context) -> None:
    os.chown(ctx.target("file"), os.getuid(), os.getgid())


def _utimens(ctx: Context) -> None:
    path = ctx.target("file")
    os.utime(path, ns=(FIXED_ATIME_NS, FIXED_MTIME_NS))
    st = os.stat(path)
    if st.st_mtime_ns // 1_000_000_000 != FIXED_MTIME_NS // 1_000_000_000:
        raise StepFailed("mtime after utimens is wrong")


def _mknod_fifo(ctx: Context) -> None:
    os.mkfifo(ctx.work / "fifo", 0o600)


def _symlink(ctx: Context) -> None:
    os.symlink("data.bin", ctx.work / "link")
    ctx.targets["symlink"] = ctx.work / "link"


def _readlink(ctx: Context) -> str:
    target = os.readlink(ctx.target("symlink"))
    if not ctx.read_only and target != "data.bin":
        raise StepFailed(f"readlink gave {target!r}")
    return f"-> {target}"


def _link(ctx: Context) -> None:
    os.link(ctx.target("file"), ctx.work / "hardlink")
    if os.stat(ctx.work / "hardlink").st_nlink < 2:
        raise StepFailed("link count after link() is below 2")


def _rename(ctx: Context) -> None:
    fd = _open(ctx.work / "a", os.O_CREAT | os.O_WRONLY)
    os.write(fd, b"a")
    os.close(fd)
    os.rename(ctx.work / "a", ctx.work / "b")


def _rename_noreplace(ctx: Context) -> None:
    renameat2(str(ctx.work / "b"), str(ctx.work / "c"), RENAME_NOREPLACE)
    fd = _open(ctx.work / "d", os.O_CREAT | os.O_WRONLY)
    os.write(fd, b"d")
    os.close(fd)
    try:
        renameat2(str(ctx.work / "c"), str(ctx.work / "d"), RENAME_NOREPLACE)
    except FileExistsError:
        return
    raise StepFailed("RENAME_NOREPLACE replaced an existing file")


def _ensure(path: Path, content: bytes) -> None:
    if not os.path.lexists(path):
        fd = _open(path, os.O_CREAT | os.O_WRONLY)
        os.write(fd, content)
        os.close(fd)


def _rename_exchange(ctx: Context) -> None:
    # the steps before may have failed: start from the same two files in any case
    _ensure(ctx.work / "c", b"c")
    _ensure(ctx.work / "d", b"d")
    renameat2(str(ctx.work / "c"), str(ctx.work / "d"), RENAME_EXCHANGE)
    with open(ctx.work / "c", "rb") as f:
        if f.read() != b"d":
            raise StepFailed("RENAME_EXCHANGE did not swap the files")


def _unlink(ctx: Context) -> str:
    _ensure(ctx.work / "d", b"d")
    gone = []
    for name in ("b", "c", "d", "fifo", "hardlink"):
        if os.path.lexists(ctx.work / name):
            os.unlink(ctx.work / name)
            gone.append(name)
    return f"{len(gone)} names"


def _rmdir(ctx: Context) -> None:
    os.rmdir(ctx.work / "sub")


XATTR_NAME = "user.fusetrace"
XATTR_VALUE = b"conformance"


def _setxattr(ctx: Context) -> None:
    os.setxattr(ctx.target("file"), XATTR_NAME, XATTR_VALUE)
    os.setxattr(ctx.target("file"), XATTR_NAME, XATTR_VALUE + b"-2", os.XATTR_REPLACE)


def _getxattr(ctx: Context) -> str:
    path = str(ctx.target("file"))
    if ctx.read_only:
        names = os.listxattr(path)
        name = sorted(names)[0] if names else XATTR_NAME
    else:
        name = XATTR_NAME
    try:
        size = getxattr_size(path, name)
        value = os.getxattr(path, name)
    except OSError as e:
        if e.errno == errno.ENODATA and ctx.read_only:
            return f"{name}: no such attribute (ENODATA)"
        raise
    if len(value) != size:
        raise StepFailed(f"size probe said {size}, value has {len(value)} bytes")
    if not ctx.read_only and value != XATTR_VALUE + b"-2":
        raise StepFailed(f"getxattr gave {value!r}")
    return f"{name}: {size} bytes"


def _listxattr(ctx: Context) -> str:
    path = str(ctx.target("file"))
    size = listxattr_size(path)
    names = os.listxattr(path)
    if not ctx.read_only and XATTR_NAME not in names:
        raise StepFailed(f"listxattr does not list {XATTR_NAME}")
    return f"{len(names)} names, {size} bytes"


def _removexattr(ctx: Context) -> None:
    os.removexattr(ctx.target("file"), XATTR_NAME)
    try:
        os.getxattr(ctx.target("file"), XATTR_NAME)
    except OSError as e:
        if e.errno == errno.ENODATA:
            return
        raise
    raise StepFailed("the attribute is still there after removexattr")


def _readdir(path: Path, expect: int, must: str | None = None) -> str:
    with os.scandir(path) as it:
        names = [e.name for e in it]
    if len(names) < expect:
        raise StepFailed(f"listed {len(names)} entries, expected at least {expect}")
    if must is not None and must not in names:
        raise StepFailed(f"{must} is missing from the listing")
    return f"{len(names)} entries"


def _readdir_small(ctx: Context) -> str:
    if ctx.read_only:
        return _readdir(ctx.target("small_dir"), 0)
    return _readdir(ctx.target("small_dir"), 1, must=ctx.target("file").name)


def _populate_large(ctx: Context) -> str:
    large = ctx.work / "large"
    os.mkdir(large, 0o755)
    for i in range(ctx.large_entries):
        fd = _open(large / f"f{i:04d}", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.close(fd)
    ctx.targets["large_dir"] = large
    return f"{ctx.large_entries} files"


def _readdir_large(ctx: Context) -> str:
    return _readdir(ctx.target("large_dir"), 0 if ctx.read_only else ctx.large_entries)


def _posix_locks(ctx: Context) -> str | None:
    writable = not ctx.read_only
    fd = _open(ctx.target("file"), os.O_RDWR if writable else os.O_RDONLY)
    kind = fcntl.F_WRLCK if writable else fcntl.F_RDLCK
    try:
        query = FLOCK_STRUCT.pack(kind, os.SEEK_SET, 0, 4096, 0)
        got = FLOCK_STRUCT.unpack(fcntl.fcntl(fd, fcntl.F_GETLK, query))
        if got[0] != fcntl.F_UNLCK:
            raise StepFailed(f"F_GETLK reports a lock held by pid {got[4]}")
        fcntl.fcntl(fd, fcntl.F_SETLK, FLOCK_STRUCT.pack(kind, os.SEEK_SET, 0, 4096, 0))
        fcntl.fcntl(fd, fcntl.F_SETLKW, FLOCK_STRUCT.pack(kind, os.SEEK_SET, 8192, 4096, 0))
        fcntl.fcntl(fd, fcntl.F_SETLK, FLOCK_STRUCT.pack(fcntl.F_UNLCK, os.SEEK_SET, 0, 0, 0))
    finally:
        os.close(fd)
    return None if writable else "read locks"


def _flock(ctx: Context) -> None:
    fd = _open(ctx.target("file"), os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        fcntl.flock(fd, fcntl.LOCK_EX if not ctx.read_only else fcntl.LOCK_SH)
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _fallocate(ctx: Context) -> None:
    fd = _open(ctx.target("file"), os.O_RDWR)
    try:
        fallocate(fd, 0, DATA_SIZE, 65536)
    finally:
        os.close(fd)
    if os.stat(ctx.target("file")).st_size != DATA_SIZE + 65536:
        raise StepFailed("size after fallocate is wrong")


def _punch_hole(ctx: Context) -> None:
    fd = _open(ctx.target("file"), os.O_RDWR)
    try:
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 32768, 32768)
        _drop_cache(fd)
        if os.pread(fd, 4096, 32768) != bytes(4096):
            raise StepFailed("a punched hole does not read back as zeros")
    finally:
        os.close(fd)


def _lseek(ctx: Context) -> str:
    fd = _open(ctx.target("file"), os.O_RDONLY)
    try:
        data = os.lseek(fd, 0, os.SEEK_DATA)
        hole = os.lseek(fd, data, os.SEEK_HOLE)
    finally:
        os.close(fd)
    return f"data at {data}, hole at {hole}"


def _copy_file_range(ctx: Context) -> str:
    src = _open(ctx.target("file"), os.O_RDONLY)
    try:
        dst = _open(ctx.work / "copy.bin", os.O_CREAT | os.O_WRONLY | os.O_TRUNC)
        try:
            done = os.copy_file_range(src, dst, 65536, 0, 0)
        finally:
            os.close(dst)
    finally:
        os.close(src)
    with open(ctx.work / "copy.bin", "rb") as f, open(ctx.target("file"), "rb") as g:
        if f.read() != g.read(done):
            raise StepFailed("the copy differs from its source")
    return f"{done} bytes"


def _statx_btime(ctx: Context) -> str:
    mask, _, _ = statx(str(ctx.target("file")), STATX_BASIC_STATS | STATX_BTIME)
    if mask & STATX_BTIME:
        return "btime returned"
    return "no btime in the reply mask"


def _tmpfile(ctx: Context) -> None:
    fd = _open(ctx.work, os.O_TMPFILE | os.O_RDWR, 0o600)
    try:
        os.write(fd, b"tmpfile")
        if os.pread(fd, 7, 0) != b"tmpfile":
            raise StepFailed("an O_TMPFILE file does not read back")
    finally:
        os.close(fd)


def _access(ctx: Context) -> None:
    path = ctx.target("file")
    if not os.access(path, os.R_OK):
        raise StepFailed("access(R_OK) denied")
    os.access(path, os.X_OK)


def _poll(ctx: Context) -> str:
    fd = _open(ctx.target("file"), os.O_RDONLY)
    try:
        readable, _, _ = select.select([fd], [], [], 0)
    finally:
        os.close(fd)
    return "readable" if readable else "not readable"


def _ioctl(ctx: Context) -> str:
    fd = _open(ctx.target("file"), os.O_RDONLY)
    try:
        buf = fcntl.ioctl(fd, FS_IOC_GETFLAGS, bytes(8))
    finally:
        os.close(fd)
    return f"flags {struct.unpack_from('I', buf)[0]:#x}"


def _mmap_read(ctx: Context) -> str:
    fd = _open(ctx.target("file"), os.O_RDONLY)
    try:
        _drop_cache(fd)
        size = min(os.fstat(fd).st_size, DATA_SIZE)
        if size == 0:
            raise StepSkipped("the file is empty")
        with mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ) as m:
            head = m[:4096]
    finally:
        os.close(fd)
    if not ctx.read_only and head != data_pattern(4096):
        raise StepFailed("mapped data differ from the file")
    return f"{len(head)} bytes"


def _mmap_write(ctx: Context) -> None:
    fd = _open(ctx.target("file"), os.O_RDWR)
    try:
        with mmap.mmap(fd, 8192, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as m:
            m[4096:4100] = b"mmap"
            m.flush()
        _drop_cache(fd)
        if os.pread(fd, 4, 4096) != b"mmap":
            raise StepFailed("data written through mmap do not read back")
    finally:
        os.close(fd)


def _cleanup(ctx: Context) -> None:
    shutil.rmtree(ctx.work)


STEPS: tuple[Step, ...] = (
    Step("statfs", ("STATFS",), _statfs, doc="statvfs() of the mountpoint"),
    Step("mkdir", ("MKDIR",), _mkdir, writes=True, doc="mkdir() the work directory"),
    Step(
        "create", ("CREATE", "MKNOD"), _create, writes=True, doc="open(O_CREAT|O_EXCL) a new file"
    ),
    Step(
        "write",
        ("WRITE",),
        _write,
        writes=True,
        doc="pwrite() 128 KiB of a fixed pattern",
    ),
    Step("fsync", ("FSYNC",), _fsync, writes=True, doc="fsync() after a write"),
    Step("fdatasync", ("FSYNC",), _fdatasync, writes=True, doc="fdatasync() after a write"),
    Step("read", ("READ",), _read, doc="read() the file back (cache dropped)"),
    Step("lookup", ("LOOKUP",), _lookup, doc="stat() a missing and an existing name"),
    Step("getattr", ("GETATTR",), _getattr, doc="statx(AT_STATX_FORCE_SYNC)"),
    Step("truncate", ("SETATTR",), _truncate, writes=True, doc="truncate() and ftruncate()"),
    Step("chmod", ("SETATTR",), _chmod, writes=True, doc="chmod() 0640 and back"),
    Step("chown", ("SETATTR",), _chown, writes=True, doc="chown() to the caller's ids"),
    Step("utimens", ("SETATTR",), _utimens, writes=True, doc="utimensat() fixed times"),
    Step("mknod-fifo", ("MKNOD",), _mknod_fifo, writes=True, doc="mkfifo()"),
    Step("symlink", ("SYMLINK",), _symlink, writes=True, doc="symlink()"),
    Step("readlink", ("READLINK",), _readlink, doc="readlink()"),
    Step("link", ("LINK",), _link, writes=True, doc="link() a second name"),
    Step("rename", ("RENAME",), _rename, writes=True, doc="rename()"),
    Step(
        "rename-noreplace",
        ("RENAME2",),
        _rename_noreplace,
        writes=True,
        doc="renameat2(RENAME_NOREPLACE), then onto an existing name (EEXIST)",
        unsupported=frozenset({errno.EINVAL}),
    ),
    Step(
        "rename-exchange",
        ("RENAME2",),
        _rename_exchange,
        writes=True,
        doc="renameat2(RENAME_EXCHANGE)",
        unsupported=frozenset({errno.EINVAL}),
    ),
    Step(
        "unlink", ("UNLINK",), _unlink, writes=True, doc="unlink() the files the steps before made"
    ),
    Step("rmdir", ("RMDIR",), _rmdir, writes=True, doc="rmdir() an empty directory"),
    Step(
        "setxattr",
        ("SETXATTR",),
        _setxattr,
        writes=True,
        doc="setxattr() create, then XATTR_REPLACE",
    ),
    Step("getxattr", ("GETXATTR",), _getxattr, doc="getxattr() size-0 probe, then the value"),
    Step("listxattr", ("LISTXATTR",), _listxattr, doc="listxattr() size-0 probe, then the list"),
    Step("removexattr", ("REMOVEXATTR",), _removexattr, writes=True, doc="removexattr()"),
    Step(
        "readdir-small",
        ("READDIRPLUS", "READDIR"),
        _readdir_small,
        doc="list a small directory",
    ),
    Step(
        "populate-large",
        ("MKDIR", "CREATE", "MKNOD"),
        _populate_large,
        writes=True,
        doc=f"create {LARGE_DIR_ENTRIES} empty files in one directory",
    ),
    Step(
        "readdir-large",
        ("READDIRPLUS", "READDIR"),
        _readdir_large,
        doc=f"list a directory of {LARGE_DIR_ENTRIES}+ entries",
    ),
    Step(
        "posix-locks",
        ("GETLK", "SETLK", "SETLKW"),
        _posix_locks,
        doc="fcntl() F_GETLK, F_SETLK, F_SETLKW",
    ),
    Step("flock", ("SETLK", "SETLKW"), _flock, doc="flock() shared and exclusive"),
    Step("fallocate", ("FALLOCATE",), _fallocate, writes=True, doc="fallocate() mode 0, grow"),
    Step(
        "punch-hole",
        ("FALLOCATE",),
        _punch_hole,
        writes=True,
        doc="fallocate(PUNCH_HOLE|KEEP_SIZE)",
    ),
    Step("lseek-data-hole", ("LSEEK",), _lseek, doc="lseek() SEEK_DATA and SEEK_HOLE"),
    Step(
        "copy-file-range",
        ("COPY_FILE_RANGE_64", "COPY_FILE_RANGE"),
        _copy_file_range,
        writes=True,
        doc="copy_file_range() 64 KiB into a new file",
    ),
    Step("statx-btime", ("STATX",), _statx_btime, doc="statx() asking for the birth time"),
    Step("tmpfile", ("TMPFILE",), _tmpfile, writes=True, doc="open(O_TMPFILE)"),
    Step("access", ("ACCESS",), _access, doc="access() R_OK and X_OK"),
    Step("poll", ("POLL",), _poll, doc="select() on an open file"),
    Step("ioctl", ("IOCTL",), _ioctl, doc="ioctl(FS_IOC_GETFLAGS)"),
    Step("mmap-read", ("READ",), _mmap_read, doc="read through a shared mapping"),
    Step(
        "mmap-write",
        ("WRITE",),
        _mmap_write,
        writes=True,
        doc="write through a shared mapping, msync()",
    ),
    Step(
        "cleanup",
        ("UNLINK", "RMDIR"),
        _cleanup,
        writes=True,
        doc="remove the work directory and everything in it",
    ),
)


# ---- read-only discovery --------------------------------------------------------------------


def _walk(root: Path, limit: int = 20000, depth: int = 6) -> Iterator[tuple[Path, str]]:
    """(path, kind) under root, depth first in name order, bounded; kind from readdir alone
    ("dir", "file", "link", "other"), so the walk makes no request per entry."""
    seen = 0
    stack: list[tuple[Path, int]] = [(root, 0)]
    while stack and seen < limit:
        path, level = stack.pop()
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        subdirs = []
        for entry in entries:
            if path == root and entry.name.startswith(MARKER_PREFIX):
                continue
            try:
                if entry.is_symlink():
                    kind = "link"
                elif entry.is_dir(follow_symlinks=False):
                    kind = "dir"
                elif entry.is_file(follow_symlinks=False):
                    kind = "file"
                else:
                    kind = "other"
            except OSError:
                continue
            seen += 1
            child = path / entry.name
            yield child, kind
            if kind == "dir" and level + 1 < depth:
                subdirs.append((child, level + 1))
            if seen >= limit:
                return
        stack.extend(reversed(subdirs))


def discover(ctx: Context) -> str:
    """Find what read-only steps work on: a file with data, the largest directory, a link."""
    sizes: dict[Path, int] = {ctx.root: 0}
    for path, kind in _walk(ctx.root):
        sizes[path.parent] = sizes.get(path.parent, 0) + 1
        if kind == "file" and "file" not in ctx.targets:
            try:
                if os.lstat(path).st_size > 0:
                    ctx.targets["file"] = path
            except OSError:
                pass
        elif kind == "link" and "symlink" not in ctx.targets:
            ctx.targets["symlink"] = path
        elif kind == "dir":
            sizes.setdefault(path, 0)
    ranked = sorted(sizes.items(), key=lambda kv: (-kv[1], str(kv[0])))
    ctx.targets["large_dir"] = ranked[0][0]
    small = [p for p, n in sorted(sizes.items(), key=lambda kv: (kv[1], str(kv[0]))) if n > 0]
    ctx.targets["small_dir"] = small[0] if small else ctx.root
    found = ", ".join(
        f"{role} {os.path.relpath(path, ctx.root)}" for role, path in sorted(ctx.targets.items())
    )
    return found or "nothing"


# ---- running --------------------------------------------------------------------------------


def classify(
    exc: BaseException, unsupported: frozenset[int] = frozenset()
) -> tuple[Status, int | None, str]:
    """The verdict for a step that raised."""
    if isinstance(exc, StepSkipped):
        return Status.SKIPPED, None, str(exc)
    if isinstance(exc, StepUnsupported):
        return Status.UNSUPPORTED, None, str(exc)
    if isinstance(exc, StepFailed):
        return Status.FAILED, None, str(exc)
    if isinstance(exc, OSError) and exc.errno is not None:
        text = f"{errno_name(exc.errno)}: {exc.strerror}"
        if exc.errno in UNSUPPORTED_ERRNOS or exc.errno in unsupported:
            return Status.UNSUPPORTED, exc.errno, text
        return Status.FAILED, exc.errno, text
    return Status.FAILED, None, f"{type(exc).__name__}: {exc}"


def _call_with_timeout(
    fn: Callable[[], str | None], timeout: float
) -> tuple[bool, str | None, BaseException | None]:
    """Run fn in a thread; (finished, result, exception). A hung thread is left behind."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as e:  # reported as the step outcome
            box["error"] = e

    thread = threading.Thread(target=target, name="fusetrace-conform-step", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return False, None, None
    err = box.get("error")
    return True, box.get("result"), err if isinstance(err, BaseException) else None  # type: ignore[return-value]


def _mark(ctx: Context, name: str) -> None:
    """Look up a name that does not exist: in a capture, a LOOKUP that starts a section."""
    if not name.startswith(MARKER_PREFIX):
        name = MARKER_PREFIX + name
    try:
        os.lstat(ctx.root / name)
    except OSError:
        pass


def _prepare(ctx: Context) -> None:
    """Tell a read-only filesystem; remove what an earlier run left behind."""
    try:
        if os.statvfs(ctx.root).f_flag & os.ST_RDONLY:
            ctx.read_only, ctx.read_only_reason = True, "statvfs reports ST_RDONLY"
    except OSError:
        pass
    if not ctx.read_only and os.path.lexists(ctx.work):
        # left over from an earlier run: remove it, which also tells a read-only tree
        _mark(ctx, "setup")
        try:
            shutil.rmtree(ctx.work)
        except OSError as e:
            if e.errno in READ_ONLY_ERRNOS:
                ctx.read_only = True
                ctx.read_only_reason = f"removing {WORKDIR}: {errno_name(e.errno)}"


def run_workload(
    root: str | os.PathLike[str],
    *,
    steps: tuple[Step, ...] = STEPS,
    timeout: float = DEFAULT_TIMEOUT,
    on_hang: Callable[[], object] | None = None,
    progress: Callable[[StepResult], None] | None = None,
    large_entries: int = LARGE_DIR_ENTRIES,
) -> tuple[Context, list[StepResult]]:
    """Run every step against ``root``; returns the context and one result per step.

    ``on_hang`` is called when a step exceeds ``timeout`` (for a FUSE mount: abort the
    connection, which makes the stuck system call fail); the remaining steps are skipped.
    """
    ctx = Context(Path(root), large_entries=large_entries)
    results: list[StepResult] = []
    hung: str | None = None
    finished, _, _ = _call_with_timeout(functools.partial(_prepare, ctx), timeout)
    if not finished:
        hung = "the first access hung and the connection was aborted"
        if on_hang is not None:
            on_hang()
    first_write = True
    for index, step in enumerate(steps):
        result = StepResult(index, step.name, step.ops, Status.SKIPPED)
        if hung is not None and not results and not finished:
            # the first access (statvfs) hung before any step: the run fails with the first step
            result.status = Status.FAILED
            result.detail = f"the filesystem did not answer its first request in {timeout:g} s"
        elif hung is not None:
            result.detail = f"not run: {hung}"
        elif step.writes and ctx.read_only:
            result.detail = f"read-only filesystem ({ctx.read_only_reason})"
        else:
            if ctx.read_only and not ctx.targets:
                _mark(ctx, "discover")
                ctx.found = discover(ctx)
            _mark(ctx, marker_name(index, step.name))
            finished, note, exc = _call_with_timeout(functools.partial(step.run, ctx), timeout)
            if not finished:
                hung = f"step {step.name} hung and the connection was aborted"
                result.status, result.detail = Status.FAILED, f"timed out after {timeout:g} s"
                if on_hang is not None:
                    on_hang()
            elif exc is None:
                result.status, result.detail = Status.SUPPORTED, note or ""
            else:
                result.status, result.errno, result.detail = classify(exc, step.unsupported)
                if isinstance(exc, OSError) and exc.errno in CONNECTION_GONE:
                    hung = f"the connection ended in step {step.name} ({errno_name(exc.errno)})"
                if (
                    step.writes
                    and first_write
                    and isinstance(exc, OSError)
                    and exc.errno in READ_ONLY_ERRNOS
                ):
                    ctx.read_only = True
                    ctx.read_only_reason = f"{step.name}: {result.error}"
                    result.status = Status.SKIPPED
                    result.detail = f"read-only filesystem ({result.detail})"
            if step.writes:
                first_write = False
        results.append(result)
        if progress is not None:
            progress(result)
    return ctx, results
