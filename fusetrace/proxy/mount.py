"""Mounting /dev/fuse, finding the connection, unmounting and aborting it.

fusetrace mounts the filesystem itself (as root), the way fusermount3 does: it opens
/dev/fuse and calls mount(2) with ``fd=N,rootmode=...,user_id=...,group_id=...`` plus the
options the kernel understands. The daemon then talks to fusetrace, never to the device.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
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
#: security-module labels, passed on to the kernel as they are (libfuse does the same)
KERNEL_STRINGS = frozenset({"context", "fscontext", "defcontext", "rootcontext"})
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

    def source(self, default: str = "/dev/fuse") -> str:
        """The mount's source as libfuse and fusermount3 choose it: fsname, else the
        subtype, else the device."""
        return self.fsname or self.subtype or default

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


def lists_every_flag(options: list[str]) -> bool:
    """True when ``options`` (a daemon's fusermount request) come from libfuse, which
    writes its mount flags out in full: ``rw`` or ``ro`` first, then every flag that is set
    (lib/mount.c, get_mnt_flag_opts). A flag missing from them is then one the daemon
    cleared (fuse-overlayfs asks for suid), not one left to fusermount's default."""
    return bool(options) and options[0] in ("rw", "ro")


def parse_options(options: list[str], *, every_flag: bool = False) -> MountSpec:
    """Build a :class:`MountSpec` from split ``-o`` options; unknown ones raise. With
    ``every_flag`` the options name every mount flag that is set (see
    :func:`lists_every_flag`): the defaults (nosuid, nodev) are not added."""
    spec = MountSpec(given=list(options))
    if every_flag:
        spec.flags = 0
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
        elif name in KERNEL_STRINGS and eq:
            if not value:
                raise MountOptionError(f"mount option {name} needs a value: {opt!r}")
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


# ---- the daemon's own options (the /dev/fd/N hand-off) ------------------------------------
#: what libfuse 3.14 takes as mount options from the arguments it parses
#: (lib/mount.c, fuse_mount_opts): mount flags...
LIBFUSE_FLAGS = frozenset(
    {"ro", "rw", "suid", "nosuid", "dev", "nodev", "exec", "noexec", "async", "sync"}
    | {"dirsync", "atime", "noatime"}
)
#: ...options for the kernel (KEY_KERN_OPT)...
LIBFUSE_KERNEL = frozenset({"allow_other", "default_permissions"})
LIBFUSE_KERNEL_VALUES = frozenset(KERNEL_VALUES | KERNEL_STRINGS)
#: ...and options only fusermount3 acts on (KEY_FUSERMOUNT_OPT, KEY_MTAB_OPT)
LIBFUSE_MOUNTER_ONLY = frozenset({"auto_unmount", "blkdev"})
#: mount options whose loss weakens the mount
SECURITY_OPTIONS = ("default_permissions", "allow_other", "ro", "nosuid", "nodev")
#: symbols a program imports when libfuse parses its command line: libfuse then adds
#: ``subtype=<basename of argv[0]>`` unless fsname= or subtype= is given (lib/helper.c,
#: fuse_parse_cmdline; fuse_main_real calls it)
PARSES_CMDLINE = (b"fuse_parse_cmdline", b"fuse_main_real")
#: a string in a program that looks like a list of libfuse options it may add itself
_OPTION_LIST = re.compile(rb"\A(?:-o)?([a-z_]+(?:=[\w.%-]*)?(?:,[a-z_]+(?:=[\w.%-]*)?)*)\Z")
#: programs larger than this are not searched for option strings
_PROGRAM_MAX = 64 << 20


def is_libfuse_mount_option(opt: str) -> bool:
    """True when libfuse 3 takes ``opt`` (one option) as a mount option."""
    name, eq, _value = opt.partition("=")
    if not eq:
        return name in LIBFUSE_FLAGS or name in LIBFUSE_KERNEL or name in LIBFUSE_MOUNTER_ONLY
    return name in LIBFUSE_KERNEL_VALUES or name in NAME_OPTIONS or name == "user"


def command_line_options(argv: list[str]) -> list[str]:
    """Every ``-o`` option of a command line, split, as libfuse's fuse_opt_parse finds
    them (``-o A,B``, ``-oA,B``; nothing after ``--``)."""
    found: list[str] = []
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            break
        if arg == "-o" and i + 1 < len(argv):
            found += split_options([argv[i + 1]])
            i += 2
            continue
        if arg.startswith("-o") and len(arg) > 2:
            found += split_options([arg[2:]])
        i += 1
    return found


@dataclass
class ProgramFacts:
    """What the daemon's executable says about how libfuse mounts for it."""

    libfuse3: bool = False
    #: libfuse parses its command line (and so may add the default subtype)
    parses_cmdline: bool = False
    #: option lists written into the program (options it may add itself)
    option_strings: list[str] = field(default_factory=list)


def program_facts(program: str) -> ProgramFacts:
    """Read ``program`` (an ELF executable) for the libfuse it links, the symbols that
    mean libfuse parses its command line, and the option lists it holds as strings."""
    facts = ProgramFacts()
    try:
        with open(program, "rb") as f:
            if f.read(4) != b"\x7fELF":
                return facts
            f.seek(0)
            data = f.read(_PROGRAM_MAX)
    except OSError:
        return facts
    facts.libfuse3 = b"libfuse3.so" in data
    facts.parses_cmdline = any(sym in data for sym in PARSES_CMDLINE)
    seen: set[str] = set()
    for name in ("default_permissions", "allow_other", "fsname=", "subtype="):
        at = data.find(name.encode())
        while at >= 0:
            start = data.rfind(b"\0", 0, at) + 1
            end = data.find(b"\0", at)
            if end < 0:
                end = len(data)
            match = _OPTION_LIST.match(data[start:end])
            # a list, or "-o...": a lone name is as likely a daemon's own option table
            if match and (b"," in match.group(0) or match.group(0).startswith(b"-o")):
                text = match.group(1).decode()
                if any(is_libfuse_mount_option(o) for o in text.split(",")):
                    seen.add(text)
            at = data.find(name.encode(), end)
    facts.option_strings = sorted(seen)
    return facts


@dataclass
class DaemonOptions:
    """The mount options fusetrace finds for a daemon it hands /dev/fd/N to."""

    #: mount options, in the order they apply (parse_options takes them)
    options: list[str] = field(default_factory=list)
    #: what cannot be known or applied, one sentence each (printed as warnings)
    warnings: list[str] = field(default_factory=list)


def daemon_mount_options(argv: list[str], program: str) -> DaemonOptions:
    """The mount options a libfuse 3 daemon would have mounted with, from its command
    line, the way libfuse sorts them (lib/mount.c, lib/helper.c): mount flags, kernel
    options, fsname= and subtype= are kept; library and daemon options are not mount
    options. libfuse's default subtype (the program's name) is added where libfuse adds
    it. What cannot be known is said in ``warnings``: options a program adds by itself
    never show on its command line."""
    out = DaemonOptions()
    name = os.path.basename(argv[0]) or argv[0]
    facts = program_facts(program)
    given = command_line_options(argv)
    if not facts.libfuse3:
        if given:
            out.warnings.append(
                f"{name} is not a libfuse 3 program: fusetrace cannot tell which of its -o "
                f"options ({','.join(given)}) are mount options; the mount gets fusetrace's "
                "own -o only"
            )
        else:
            out.warnings.append(
                f"{name} is not a libfuse 3 program: the mount options it would ask for "
                "cannot be known; the mount gets fusetrace's own -o only"
            )
        return out
    for opt in given:
        key = opt.partition("=")[0]
        if not is_libfuse_mount_option(opt):
            continue  # a library or daemon option: not for the mount
        if key in LIBFUSE_MOUNTER_ONLY or key == "user":
            if key == "blkdev":
                out.warnings.append(
                    "the daemon asks for blkdev (a fuseblk mount): fusetrace mounts fuse"
                )
            continue  # auto_unmount: fusetrace unmounts at the end anyway; user=: mtab
        out.options.append(opt)
    named = any(o.startswith(("fsname=", "subtype=")) for o in given)
    if facts.parses_cmdline and not named:
        out.options.append(f"subtype={name}")
    missing = []
    for text in facts.option_strings:
        for opt in text.split(","):
            if is_libfuse_mount_option(opt) and opt not in given and opt not in missing:
                missing.append(opt)
    if missing:
        lost = [o for o in missing if o in SECURITY_OPTIONS]
        out.warnings.append(
            f"{name} holds the option list{'s' if len(facts.option_strings) > 1 else ''} "
            + ", ".join(repr(t) for t in facts.option_strings)
            + ": it may add mount options by itself, which the /dev/fd/N hand-off cannot see; "
            f"the traced mount lacks {','.join(missing)}"
            + (f" (security: {','.join(lost)})" if lost else "")
            + " unless given to fusetrace with -o (or use --handoff fusermount, which sees "
            "the daemon's own options)"
        )
    return out


_libc: ctypes.CDLL | None = None


def libc() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        try:
            # by name: find_library() would run ldconfig -p, a process per recording
            _libc = ctypes.CDLL("libc.so.6", use_errno=True)
        except OSError:  # not glibc
            from ctypes.util import find_library

            _libc = ctypes.CDLL(find_library("c"), use_errno=True)
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
    if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
        # the kernel mounts FUSE on a directory or a regular file (libfuse's null example
        # mounts on a file), with the root's type in rootmode
        raise EnvironmentProblem(f"mountpoint {path} is neither a directory nor a regular file")
    return os.path.realpath(path), stat.S_IFMT(st.st_mode)
