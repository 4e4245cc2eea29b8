"""The conformance workload's system calls: one function per step of the catalogue.

The workload runs against any directory: a FUSE mountpoint (through ``fusetrace record`` or
mounted directly) or a plain tmpfs/ext4 directory, which tells what a step does natively.
It is deterministic — fixed names, sizes and contents — so two captures of it can be
compared frame by frame. The steps as data (name, opcodes, writes) are
:mod:`fusetrace.conform.steps`; :data:`STEPS` binds each to its function here, and
:mod:`fusetrace.conform.runner` runs them, each bounded by a timeout.

A read-only filesystem is detected by the runner; the steps that only read then work on the
tree that is there (a regular file, the largest directory, a symlink it found).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import mmap
import os
import select
import shutil
import signal
import stat
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fusetrace.conform.steps import (
    CATALOGUE,
    DATA_SIZE,
    DEFAULT_TIMEOUT,
    FIXED_ATIME_NS,
    FIXED_MTIME_NS,
    LARGE_DIR_ENTRIES,
    WORKDIR,
    XATTR_NAME,
    XATTR_VALUE,
    StepSpec,
    data_pattern,
)
from fusetrace.protocol.abi import Opcode

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

F_OFD_GETLK = 36
F_OFD_SETLK = 37
F_OFD_SETLKW = 38
#: the signal the interrupt step sends (the runner installs a handler that does nothing)
INTERRUPT_SIGNAL = signal.SIGUSR1
#: FUSE waits the interrupt step signals: several, since a signal that comes after the
#: daemon answered (before the waiting thread woke up) makes the kernel send nothing
INTERRUPT_HITS = 16
#: how long the interrupt step tries, seconds
INTERRUPT_WINDOW = 2.0
#: requests the interrupt step interrupts when it can pause the reader of /dev/fuse
INTERRUPT_PAUSED_TRIES = 3
#: names of the large directory the drop-caches step brings into the caches first
DROP_CACHES_NAMES = 200
#: times the drop-caches step does it when the directory has fewer than half as many names
DROP_CACHES_ROUNDS = 6
#: most STATFS requests the drop-caches step makes while the kernel drops its caches
DROP_CACHES_REQUESTS = 1000


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
    #: stops the reader of /dev/fuse (``fusetrace record``) for the time of a ``with`` block,
    #: when the caller can: forgets queued meanwhile reach the daemon as one BATCH_FORGET
    pause_reader: Callable[[], contextlib.AbstractContextManager[object]] | None = None

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
    """A catalogue entry and the function that makes its system calls (returns a note)."""

    spec: StepSpec
    run: Callable[[Context], str | None]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def ops(self) -> tuple[Opcode, ...]:
        return self.spec.ops

    @property
    def writes(self) -> bool:
        return self.spec.writes

    @property
    def unsupported(self) -> frozenset[int]:
        return self.spec.unsupported


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


def _fsyncdir(ctx: Context) -> None:
    fd = os.open(ctx.target("small_dir"), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _syncfs(ctx: Context) -> None:
    fd = os.open(ctx.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _libc.syncfs.argtypes = [ctypes.c_int]
        _check(_libc.syncfs(fd), "syncfs", str(ctx.root))
    finally:
        os.close(fd)


def _ofd_locks(ctx: Context) -> str | None:
    writable = not ctx.read_only
    fd = _open(ctx.target("file"), os.O_RDWR if writable else os.O_RDONLY)
    kind = fcntl.F_WRLCK if writable else fcntl.F_RDLCK
    try:
        query = FLOCK_STRUCT.pack(kind, os.SEEK_SET, 0, 4096, 0)
        got = FLOCK_STRUCT.unpack(fcntl.fcntl(fd, F_OFD_GETLK, query))
        if got[0] != fcntl.F_UNLCK:
            raise StepFailed(f"F_OFD_GETLK reports a lock held by pid {got[4]}")
        fcntl.fcntl(fd, F_OFD_SETLK, FLOCK_STRUCT.pack(kind, os.SEEK_SET, 0, 4096, 0))
        fcntl.fcntl(fd, F_OFD_SETLKW, FLOCK_STRUCT.pack(kind, os.SEEK_SET, 8192, 4096, 0))
        fcntl.fcntl(fd, F_OFD_SETLK, FLOCK_STRUCT.pack(fcntl.F_UNLCK, os.SEEK_SET, 0, 0, 0))
    finally:
        os.close(fd)
    return None if writable else "read locks"


def is_fuse(path: Path) -> bool:
    """Whether ``path`` is on a FUSE filesystem (by its device in /proc/self/mountinfo)."""
    st = os.stat(path)
    dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 2 and fields[2] == dev and " - " in line:
                    fstype = line.split(" - ", 1)[1].split()[0]
                    return fstype == "fuse" or fstype.startswith(("fuse.", "fuseblk"))
    except OSError:
        pass
    return False


def _waits_for_fuse(wchan: int) -> bool:
    """Whether the thread whose /proc wchan file is open on ``wchan`` sleeps in the kernel's
    wait for a FUSE answer."""
    try:
        where = os.pread(wchan, 64, 0).decode(errors="replace").strip()
    except OSError:
        return False
    return where == "request_wait_answer" or "fuse" in where


def _interrupt(ctx: Context) -> str:
    """Signal a thread while it waits for the daemon: the kernel then sends INTERRUPT.

    A thread makes requests one after the other: statvfs() (STATFS) and, where the filesystem
    is writable, first a page written to a scratch file and fsync() (FSYNC: the daemon's own
    fsync takes the backing disk's time, so a signal finds the request still with the
    daemon). This thread watches the other's wchan and signals it when it sleeps in the
    kernel's wait for an answer, once per request, up to INTERRUPT_HITS times. The handler
    does nothing, so the calls go on and succeed. An INTERRUPT the kernel queued is dropped
    when the answer comes first; hence several signals. Where wchan never names that wait (a
    kernel without symbols), the second half of the window sends blind signals, one a
    millisecond, at most 50.
    """
    handler = signal.getsignal(INTERRUPT_SIGNAL)
    if not callable(handler):
        raise StepSkipped(f"no handler for {INTERRUPT_SIGNAL.name} (run from the main thread)")
    if not is_fuse(ctx.root):
        return "not a FUSE mount: no request to interrupt"
    if ctx.pause_reader is not None:
        return _interrupt_paused(ctx)
    scratch = -1
    if not ctx.read_only and ctx.work.is_dir():
        scratch = _open(ctx.work / "interrupt.bin", os.O_CREAT | os.O_WRONLY)
    page = b"i" * 4096
    stop = threading.Event()
    started = threading.Event()
    calls = [0]
    tid = [0]
    failure: list[BaseException] = []

    def loop() -> None:
        tid[0] = threading.get_native_id()
        started.set()
        try:
            while not stop.is_set():
                if scratch >= 0:
                    os.pwrite(scratch, page, 0)
                    os.fsync(scratch)
                os.statvfs(ctx.root)
                calls[0] += 1
                time.sleep(0)  # let the watching thread run between the calls
        except BaseException as e:  # reported as the step's outcome
            failure.append(e)

    worker = threading.Thread(target=loop, name="fusetrace-conform-interrupt", daemon=True)
    worker.start()
    started.wait()
    ident = worker.ident
    assert ident is not None
    hits = blind = 0
    deadline = time.monotonic() + INTERRUPT_WINDOW
    try:
        wchan = os.open(f"/proc/self/task/{tid[0]}/wchan", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        wchan = -1
    try:
        while hits < INTERRUPT_HITS and worker.is_alive() and time.monotonic() < deadline:
            if not _waits_for_fuse(wchan):
                if blind < 50 and time.monotonic() > deadline - INTERRUPT_WINDOW / 2:
                    signal.pthread_kill(ident, INTERRUPT_SIGNAL)  # no wchan: signal blindly
                    blind += 1
                    time.sleep(0.001)
                continue
            before = calls[0]
            signal.pthread_kill(ident, INTERRUPT_SIGNAL)
            hits += 1
            while calls[0] == before and worker.is_alive() and time.monotonic() < deadline:
                time.sleep(0.0002)  # the next signal goes to the next request
    finally:
        stop.set()
        worker.join(INTERRUPT_WINDOW)
        if wchan >= 0:
            os.close(wchan)
        if scratch >= 0 and not worker.is_alive():
            os.close(scratch)
    if failure:
        raise failure[0]
    if hits:
        return f"{hits} signals while the thread waited for the daemon"
    return f"the thread was never seen waiting for the daemon; {blind} signals sent blindly"


def _interrupt_paused(ctx: Context) -> str:
    """The interrupt step when the reader of /dev/fuse can be paused: with the reader stopped,
    a thread's statvfs() request waits unread; the thread is signalled in that wait, which
    marks the request interrupted; when the reader reads the request, the kernel queues the
    INTERRUPT at once, ahead of anything else. Done INTERRUPT_PAUSED_TRIES times."""
    sent = sum(_interrupt_one_unread(ctx) for _ in range(INTERRUPT_PAUSED_TRIES))
    return f"{sent} signals while the request waited to be read"


def _interrupt_one_unread(ctx: Context) -> bool:
    assert ctx.pause_reader is not None
    failure: list[BaseException] = []
    tid = [0]
    started = threading.Event()

    def call() -> None:
        tid[0] = threading.get_native_id()
        started.set()
        try:
            os.statvfs(ctx.root)
        except BaseException as e:  # reported as the step's outcome
            failure.append(e)

    worker = threading.Thread(target=call, name="fusetrace-conform-interrupt", daemon=True)
    signalled = False
    with ctx.pause_reader():
        worker.start()
        started.wait()
        wchan = os.open(f"/proc/self/task/{tid[0]}/wchan", os.O_RDONLY | os.O_CLOEXEC)
        try:
            begin = time.monotonic()
            while worker.is_alive() and time.monotonic() < begin + INTERRUPT_WINDOW / 4:
                # with the reader stopped the request cannot be answered: after a while the
                # thread waits for it even where wchan names no function
                if _waits_for_fuse(wchan) or time.monotonic() > begin + INTERRUPT_WINDOW / 20:
                    assert worker.ident is not None
                    signal.pthread_kill(worker.ident, INTERRUPT_SIGNAL)
                    signalled = True
                    break
                time.sleep(0.0002)
        finally:
            os.close(wchan)
    worker.join(INTERRUPT_WINDOW)
    if failure:
        raise failure[0]
    return signalled


@contextlib.contextmanager
def _requests_meanwhile(root: Path, limit: int) -> Iterator[None]:
    """A thread that makes statvfs() calls (STATFS requests) one after the other meanwhile,
    at most ``limit`` of them."""
    stop = threading.Event()

    def loop() -> None:
        with contextlib.suppress(OSError):
            for _ in range(limit):
                if stop.is_set():
                    break
                os.statvfs(root)

    thread = threading.Thread(target=loop, name="fusetrace-conform-statfs", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(DEFAULT_TIMEOUT)


def _drop_caches(ctx: Context) -> str:
    """Bring names into the dentry cache, then have the kernel drop every unused one: their
    inodes are evicted at once and the kernel queues one forget each, which it delivers
    batched (BATCH_FORGET) when more than one is waiting as the daemon reads.

    When the caller can pause the reader of /dev/fuse (``fusetrace conform`` stops its
    recorder), the caches are dropped while it is stopped: every forget waits, and the first
    read after takes them together. Otherwise requests made meanwhile keep the reader busy,
    so forgets pile up, and with few names the whole is done DROP_CACHES_ROUNDS times: a
    reader fast enough can take each forget alone.
    """
    names = rounds = 0
    paused = ctx.pause_reader is not None
    while rounds < (1 if paused or names >= DROP_CACHES_NAMES // 2 else DROP_CACHES_ROUNDS):
        rounds += 1
        names = 0
        with os.scandir(ctx.target("large_dir")) as it:
            for entry in it:
                if names >= DROP_CACHES_NAMES:
                    break
                os.lstat(entry.path)
                names += 1
        meanwhile = (
            ctx.pause_reader()
            if ctx.pause_reader is not None
            else _requests_meanwhile(ctx.root, DROP_CACHES_REQUESTS)
        )
        try:
            with meanwhile, open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("2\n")
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise StepSkipped(f"cannot drop the caches: {e.strerror}") from None
            raise
        if paused:
            os.statvfs(ctx.root)  # a request after them: the forgets are read by then
    how = ", the reader paused" if paused else (f", {rounds} times" if rounds > 1 else "")
    return f"{names} names cached, then dropped{how}"


#: step name -> the function that makes its system calls
ACTIONS: dict[str, Callable[[Context], str | None]] = {
    "statfs": _statfs,
    "mkdir": _mkdir,
    "create": _create,
    "write": _write,
    "fsync": _fsync,
    "fdatasync": _fdatasync,
    "read": _read,
    "lookup": _lookup,
    "getattr": _getattr,
    "truncate": _truncate,
    "chmod": _chmod,
    "chown": _chown,
    "utimens": _utimens,
    "mknod-fifo": _mknod_fifo,
    "symlink": _symlink,
    "readlink": _readlink,
    "link": _link,
    "rename": _rename,
    "rename-noreplace": _rename_noreplace,
    "rename-exchange": _rename_exchange,
    "unlink": _unlink,
    "rmdir": _rmdir,
    "setxattr": _setxattr,
    "getxattr": _getxattr,
    "listxattr": _listxattr,
    "removexattr": _removexattr,
    "readdir-small": _readdir_small,
    "populate-large": _populate_large,
    "readdir-large": _readdir_large,
    "fsyncdir": _fsyncdir,
    "syncfs": _syncfs,
    "posix-locks": _posix_locks,
    "ofd-locks": _ofd_locks,
    "flock": _flock,
    "fallocate": _fallocate,
    "punch-hole": _punch_hole,
    "lseek-data-hole": _lseek,
    "copy-file-range": _copy_file_range,
    "statx-btime": _statx_btime,
    "tmpfile": _tmpfile,
    "access": _access,
    "poll": _poll,
    "ioctl": _ioctl,
    "mmap-read": _mmap_read,
    "mmap-write": _mmap_write,
    "interrupt": _interrupt,
    "drop-caches": _drop_caches,
    "cleanup": _cleanup,
}

#: the workload: every catalogue step with its function, in catalogue order
STEPS: tuple[Step, ...] = tuple(Step(spec, ACTIONS[spec.name]) for spec in CATALOGUE)
