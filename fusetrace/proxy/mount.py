"""Mounting /dev/fuse, finding the connection, unmounting and aborting it.

fusetrace mounts the filesystem itself (as root), the way fusermount3 does: it opens
/dev/fuse and calls mount(2) with ``fd=N,rootmode=...,user_id=...,group_id=...`` plus the
options the kernel understands. The daemon then talks to fusetrace, never to the device.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from fusetrace.errors import EnvironmentProblem

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_DIRSYNC = 128
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20

MNT_FORCE = 1
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8

#: mount(8)-style options that are mount flags: name -> (flag, set it?)
FLAG_OPTIONS: dict[str, tuple[int, bool]] = {
    "ro": (MS_RDONLY, True),
    "rw": (MS_RDONLY, False),
    "nosuid": (MS_NOSUID, True),
    "suid": (MS_NOSUID, False),
    "nodev": (MS_NODEV, True),
    "dev": (MS_NODEV, False),
    "noexec": (MS_NOEXEC, True),
    "exec": (MS_NOEXEC, False),
    "sync": (MS_SYNCHRONOUS, True),
    "async": (MS_SYNCHRONOUS, False),
    "dirsync": (MS_DIRSYNC, True),
    "noatime": (MS_NOATIME, True),
    "atime": (MS_NOATIME, False),
    "nodiratime": (MS_NODIRATIME, True),
    "diratime": (MS_NODIRATIME, False),
    "relatime": (MS_RELATIME, True),
    "norelatime": (MS_RELATIME, False),
    "strictatime": (MS_STRICTATIME, True),
    "lazytime": (MS_LAZYTIME, True),
    "nolazytime": (MS_LAZYTIME, False),
}
#: options the fuse filesystem itself parses (fs/fuse/inode.c), without a value
KERNEL_FLAGS = frozenset({"default_permissions", "allow_other"})
#: options the fuse filesystem parses, with a numeric value
KERNEL_VALUES = frozenset({"max_read", "blksize"})
#: options that name the mount rather than configure it
NAME_OPTIONS = frozenset({"fsname", "subtype"})

#: libfuse's and fusermount's defaults for a FUSE mount
DEFAULT_FLAGS = MS_NOSUID | MS_NODEV


class MountOptionError(ValueError):
    """An ``-o`` option fusetrace cannot pass to the kernel."""


@dataclass
class MountSpec:
    """What mount(2) gets, built from the ``-o`` options."""

    flags: int = DEFAULT_FLAGS
    #: kernel options in order: ``default_permissions``, ``max_read=N``...
    data: list[str] = field(default_factory=list)
    fsname: str | None = None
    subtype: str | None = None
    #: the options as given, for the capture's metadata
    given: list[str] = field(default_factory=list)

    def source(self, default: str) -> str:
        return self.fsname or default

    @property
    def fstype(self) -> str:
        return f"fuse.{self.subtype}" if self.subtype else "fuse"

    def data_string(self, fd: int, rootmode: int, uid: int, gid: int) -> str:
        base = [f"fd={fd}", f"rootmode={rootmode:o}", f"user_id={uid}", f"group_id={gid}"]
        return ",".join(base + self.data)


def split_options(values: list[str] | tuple[str, ...]) -> list[str]:
    """``-o a,b -o c`` → ``["a", "b", "c"]`` (a backslash escapes a comma, as in libfuse)."""
    out: list[str] = []
    for value in values:
        cur = ""
        escaped = False
        for ch in value:
            if escaped:
                cur += ch
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == ",":
                if cur:
                    out.append(cur)
                cur = ""
            else:
                cur += ch
        if cur:
            out.append(cur)
    return out


def parse_options(options: list[str]) -> MountSpec:
    """Build a :class:`MountSpec` from split ``-o`` options; unknown ones raise."""
    spec = MountSpec(given=list(options))
    for opt in options:
        name, eq, value = opt.partition("=")
        if name in FLAG_OPTIONS and not eq:
            bit, on = FLAG_OPTIONS[name]
            spec.flags = (spec.flags | bit) if on else (spec.flags & ~bit)
        elif name in KERNEL_FLAGS and not eq:
            if name not in spec.data:
                spec.data.append(name)
        elif name in KERNEL_VALUES:
            if not value.isdigit():
                raise MountOptionError(f"mount option {name} needs a number: {opt!r}")
            spec.data.append(f"{name}={value}")
        elif name in NAME_OPTIONS:
            if not value or "," in value:
                raise MountOptionError(f"mount option {name} needs a value: {opt!r}")
            setattr(spec, name, value)
        else:
            raise MountOptionError(
                f"{opt!r} is not a mount option fusetrace passes to the kernel "
                "(options for the daemon go on its own command line after --)"
            )
    return spec


_libc: ctypes.CDLL | None = None


def libc() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _libc.mount.argtypes = [
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_ulong,
            ctypes.c_char_p,
        ]
        _libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    return _libc


def sys_mount(source: str | None, target: str, fstype: str, flags: int, data: str) -> None:
    rc = libc().mount(
        None if source is None else os.fsencode(source),
        os.fsencode(target),
        fstype.encode(),
        flags,
        data.encode(),
    )
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), target)


def sys_umount(target: str, flags: int = 0) -> None:
    rc = libc().umount2(os.fsencode(target), flags | UMOUNT_NOFOLLOW)
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), target)


def _unescape(field_: str) -> str:
    # /proc/self/mountinfo escapes space, tab, newline and backslash as \ooo
    out = []
    i = 0
    while i < len(field_):
        if field_[i] == "\\" and i + 3 < len(field_) + 0 and field_[i + 1 : i + 4].isdigit():
            out.append(chr(int(field_[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field_[i])
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class MountEntry:
    mount_id: int
    mountpoint: str
    fstype: str
    source: str
    #: the mount's device number as the kernel encodes it (major << 20 | minor; for a fuse
    #: mount, the anonymous minor): the directory under /sys/fs/fuse/connections
    conn: int


def _mountinfo() -> Iterator[tuple[list[str], int]]:
    """Each line of /proc/self/mountinfo as (fields, index of the "-" separator), oldest
    mount first. Reading the table never touches the mounts themselves."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            if "-" in parts:
                yield parts, parts.index("-")


def _is_fuse(fstype: str) -> bool:
    return fstype == "fuse" or fstype.startswith(("fuse.", "fuseblk"))


def fuse_mounts() -> list[MountEntry]:
    """Every FUSE mount in this mount namespace, oldest first (read from mountinfo)."""
    out = []
    for parts, sep in _mountinfo():
        fstype = parts[sep + 1]
        if not _is_fuse(fstype):
            continue
        major, _, minor = parts[2].partition(":")
        # the connection's name is the kernel's dev_t: the anonymous minor of a fuse mount,
        # the block device's number of a fuseblk one
        conn = (int(major) << 20) | int(minor)
        out.append(
            MountEntry(int(parts[0]), _unescape(parts[4]), fstype, _unescape(parts[sep + 2]), conn)
        )
    return out


def shared_at(path: str) -> bool:
    """True if the mount ``path`` (absolute, resolved) lies on propagates new mounts to its
    peers and slaves (mountinfo's ``shared:N`` field)."""
    best: tuple[int, bool] | None = None
    for parts, sep in _mountinfo():
        where = _unescape(parts[4])
        inside = where == "/" or path == where or path.startswith(where.rstrip("/") + "/")
        if inside and (best is None or len(where) >= best[0]):
            # later lines are mounted on top of earlier ones: >= keeps the top one
            best = (len(where), any(o.startswith("shared:") for o in parts[6:sep]))
    return bool(best and best[1])


def top_is_fuse(mountpoint: str) -> bool:
    """True if the topmost mount on ``mountpoint`` (absolute, resolved) is a FUSE one."""
    top = None
    for parts, sep in _mountinfo():
        if _unescape(parts[4]) == mountpoint:
            top = parts[sep + 1]
    return top is not None and _is_fuse(top)


def find_mount(mountpoint: str) -> MountEntry | None:
    """The FUSE mount on top of ``mountpoint`` (an absolute, resolved path), if any."""
    found = None
    for entry in fuse_mounts():
        if entry.mountpoint == mountpoint:
            found = entry  # later lines are mounted on top of earlier ones
    return found


CONNECTIONS = "/sys/fs/fuse/connections"


def abort_connection(conn: int) -> bool:
    """Abort FUSE connection ``conn`` through fusectl; True if it was there to abort.

    Mounts fusectl on /sys/fs/fuse/connections first if nothing is mounted there yet.
    """
    path = f"{CONNECTIONS}/{conn}/abort"
    if not os.path.exists(path) and os.path.isdir(CONNECTIONS) and not os.listdir(CONNECTIONS):
        try:
            sys_mount("fusectl", CONNECTIONS, "fusectl", 0, "")
        except OSError:
            return False
    try:
        with open(path, "w") as f:
            f.write("1")
    except OSError:
        return False
    return True


def release(mountpoint: str, conn: int | None, *, lazy_wait: float = 0.0) -> str:
    """Unmount ``mountpoint``; if busy, detach it and abort the connection.

    Returns how it went: ``"unmounted"``, ``"detached"`` (busy: lazily detached and the
    connection aborted) or ``"not mounted"``.
    """
    try:
        sys_umount(mountpoint)
        return "unmounted"
    except OSError as e:
        if e.errno == errno.EINVAL or e.errno == errno.ENOENT:
            return "not mounted"
        if e.errno != errno.EBUSY:
            raise
    if lazy_wait:
        time.sleep(lazy_wait)
    try:
        sys_umount(mountpoint, MNT_DETACH)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOENT):
            raise
    if conn is not None:
        abort_connection(conn)
    return "detached"


def check_mountpoint(path: str) -> tuple[str, int]:
    """Resolve ``path``; return it with its file type bits (the kernel's ``rootmode``)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise EnvironmentProblem(
            f"mountpoint {path} does not exist", hint=f"create it: mkdir -p {path}"
        ) from None
    except OSError as e:
        raise EnvironmentProblem(f"mountpoint {path}: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise EnvironmentProblem(f"mountpoint {path} is not a directory")
    return os.path.realpath(path), stat.S_IFMT(st.st_mode)
