"""FUSE ABI constants: opcodes, notification codes, flag sets (protocol.md §2, §3.4, §4.2, §6).

Names are those of ``include/uapi/linux/fuse.h`` without the ``FUSE_`` prefix. Anything newer
than ABI 7.8 carries its minor in a comment (``# 7.N``). Pure: no I/O.
"""

from __future__ import annotations

import enum
import errno as _errno
import functools

#: The protocol major every Linux kernel speaks.
FUSE_KERNEL_VERSION = 7
#: The newest minor this package knows (Linux 6.18).
FUSE_KERNEL_MINOR_VERSION = 45

#: Node id of the root directory; never forgotten.
FUSE_ROOT_ID = 1
#: Bit 0 of a unique: set in an INTERRUPT and in the reply to it (Linux 4.20+).
FUSE_INT_REQ_BIT = 1 << 0
#: Ordinary request ids advance by 2 (even, non-zero).
FUSE_REQ_ID_STEP = 1 << 1
#: Bit 63 of a unique: the request was re-sent after NOTIFY_RESEND (7.40).
FUSE_UNIQUE_RESEND = 1 << 63
#: uid/gid sent for non-creation requests on an idmapped mount (7.41).
FUSE_INVALID_UIDGID = 0xFFFFFFFF
#: A reply error must satisfy ERRNO_LIMIT < error <= 0 (-512 is ERESTARTSYS; -1000 before 5.14).
ERRNO_LIMIT = -512

#: Minimum read buffer the kernel accepts on /dev/fuse.
FUSE_MIN_READ_BUFFER = 8192
#: Longest name the kernel accepts in a dirent or notification (4095 since 6.15 with max_pages>1).
FUSE_NAME_MAX = 1024
FUSE_NAME_MAX_LARGE = 4095
#: Offset of the name inside a fuse_dirent / fuse_direntplus record.
FUSE_NAME_OFFSET = 24
FUSE_NAME_OFFSET_DIRENTPLUS = 152
#: Most iovecs a FUSE_IOCTL_RETRY reply may carry.
FUSE_IOCTL_MAX_IOV = 256
#: Lock types in fuse_file_lock.type: the host's fcntl values, which the kernel compares
#: them with (asm-generic: x86, arm, riscv; alpha, sparc and parisc differ).
F_RDLCK = 0
F_WRLCK = 1
F_UNLCK = 2
#: Extension type of the supplementary-group block (types 0..31 are nr_secctx values).
FUSE_EXT_GROUPS = 32
#: max_write is floored at this many bytes by the kernel.
FUSE_MIN_MAX_WRITE = 4096

#: How INIT / CUSE_INIT look when read in the wrong byte order (reserved opcodes).
FUSE_INIT_BSWAP_RESERVED = 436207616  # 26 << 24
CUSE_INIT_BSWAP_RESERVED = 1048576  # 4096 << 8

# Compat sizes (protocol.md §3.2): the kernel picks them from the negotiated minor.
FUSE_COMPAT_ENTRY_OUT_SIZE = 120  # minor < 9
FUSE_COMPAT_ATTR_OUT_SIZE = 96  # minor < 9
FUSE_COMPAT_MKNOD_IN_SIZE = 8  # minor < 12
FUSE_COMPAT_CREATE_IN_SIZE = 8  # minor < 12 (sizeof fuse_open_in)
FUSE_COMPAT_WRITE_IN_SIZE = 24  # minor < 9
FUSE_COMPAT_STATFS_SIZE = 48  # minor < 4
FUSE_COMPAT_INIT_OUT_SIZE = 8  # reply minor < 5
FUSE_COMPAT_22_INIT_OUT_SIZE = 24  # reply minor < 23
FUSE_COMPAT_SETXATTR_IN_SIZE = 8  # SETXATTR_EXT not accepted
FUSE_COMPAT_INIT_IN_SIZE = 16  # kernel minor < 36


class Opcode(enum.IntEnum):
    """``enum fuse_opcode``. 7 (GETDIR) and 19 (INVALIDATE) were removed and are never sent."""

    LOOKUP = 1
    FORGET = 2  # no reply
    GETATTR = 3
    SETATTR = 4
    READLINK = 5
    SYMLINK = 6
    MKNOD = 8
    MKDIR = 9
    UNLINK = 10
    RMDIR = 11
    RENAME = 12
    LINK = 13
    OPEN = 14
    READ = 15
    WRITE = 16
    STATFS = 17
    RELEASE = 18
    FSYNC = 20
    SETXATTR = 21
    GETXATTR = 22
    LISTXATTR = 23
    REMOVEXATTR = 24
    FLUSH = 25
    INIT = 26
    OPENDIR = 27
    READDIR = 28
    RELEASEDIR = 29
    FSYNCDIR = 30
    GETLK = 31
    SETLK = 32
    SETLKW = 33
    ACCESS = 34
    CREATE = 35
    INTERRUPT = 36
    BMAP = 37
    DESTROY = 38
    IOCTL = 39  # 7.11
    POLL = 40  # 7.11
    NOTIFY_REPLY = 41  # 7.15, no reply
    BATCH_FORGET = 42  # 7.16, no reply
    FALLOCATE = 43  # 7.19
    READDIRPLUS = 44  # 7.21
    RENAME2 = 45  # 7.23
    LSEEK = 46  # 7.24
    COPY_FILE_RANGE = 47  # 7.28
    SETUPMAPPING = 48  # 7.31, virtiofs only
    REMOVEMAPPING = 49  # 7.31, virtiofs only
    SYNCFS = 50  # 7.34
    TMPFILE = 51  # 7.37
    STATX = 52  # 7.39
    COPY_FILE_RANGE_64 = 53  # 7.45
    CUSE_INIT = 4096  # /dev/cuse only


class NotifyCode(enum.IntEnum):
    """``enum fuse_notify_code``: the ``error`` field of a notification (``unique`` 0)."""

    POLL = 1  # 7.11
    INVAL_INODE = 2  # 7.12
    INVAL_ENTRY = 3  # 7.12
    STORE = 4  # 7.15
    RETRIEVE = 5  # 7.15
    DELETE = 6  # 7.18
    RESEND = 7  # 7.40
    INC_EPOCH = 8  # 7.44
    PRUNE = 9  # 7.45


class InitFlag(enum.IntFlag):
    """INIT flags as one 64-bit set: bit n of ``flags2`` is bit 32+n here (protocol.md §4.2)."""

    ASYNC_READ = 1 << 0
    POSIX_LOCKS = 1 << 1  # 7.7
    FILE_OPS = 1 << 2
    ATOMIC_O_TRUNC = 1 << 3
    EXPORT_SUPPORT = 1 << 4
    BIG_WRITES = 1 << 5
    DONT_MASK = 1 << 6  # 7.12
    SPLICE_WRITE = 1 << 7  # 7.14
    SPLICE_MOVE = 1 << 8  # 7.14
    SPLICE_READ = 1 << 9  # 7.14
    FLOCK_LOCKS = 1 << 10  # 7.17
    HAS_IOCTL_DIR = 1 << 11  # 7.18
    AUTO_INVAL_DATA = 1 << 12  # 7.20
    DO_READDIRPLUS = 1 << 13  # 7.21
    READDIRPLUS_AUTO = 1 << 14  # 7.21
    ASYNC_DIO = 1 << 15  # 7.22
    WRITEBACK_CACHE = 1 << 16  # 7.23
    NO_OPEN_SUPPORT = 1 << 17  # 7.23
    PARALLEL_DIROPS = 1 << 18  # 7.25
    HANDLE_KILLPRIV = 1 << 19  # 7.26
    POSIX_ACL = 1 << 20  # 7.26
    ABORT_ERROR = 1 << 21  # 7.27
    MAX_PAGES = 1 << 22  # 7.28
    CACHE_SYMLINKS = 1 << 23  # 7.28
    NO_OPENDIR_SUPPORT = 1 << 24  # 7.29
    EXPLICIT_INVAL_DATA = 1 << 25  # 7.30
    MAP_ALIGNMENT = 1 << 26  # 7.31
    SUBMOUNTS = 1 << 27  # 7.32
    HANDLE_KILLPRIV_V2 = 1 << 28  # 7.33
    SETXATTR_EXT = 1 << 29  # 7.33
    INIT_EXT = 1 << 30  # 7.36
    INIT_RESERVED = 1 << 31
    SECURITY_CTX = 1 << 32  # 7.36
    HAS_INODE_DAX = 1 << 33  # 7.36
    CREATE_SUPP_GROUP = 1 << 34  # 7.38
    HAS_EXPIRE_ONLY = 1 << 35  # 7.38
    DIRECT_IO_ALLOW_MMAP = 1 << 36  # 7.39 (alias DIRECT_IO_RELAX)
    PASSTHROUGH = 1 << 37  # 7.40
    NO_EXPORT_SUPPORT = 1 << 38  # 7.40
    HAS_RESEND = 1 << 39  # 7.40
    ALLOW_IDMAP = 1 << 40  # 7.41
    OVER_IO_URING = 1 << 41  # 7.42
    REQUEST_TIMEOUT = 1 << 42  # 7.43

    @classmethod
    def from_words(cls, flags: int, flags2: int = 0) -> InitFlag:
        """Join the two 32-bit words of init_in/init_out into one set."""
        return cls((flags & 0xFFFFFFFF) | ((flags2 & 0xFFFFFFFF) << 32))

    def words(self) -> tuple[int, int]:
        """Split into (flags, flags2) as they go on the wire."""
        v = int(self)
        return v & 0xFFFFFFFF, (v >> 32) & 0xFFFFFFFF


class CuseInitFlag(enum.IntFlag):
    UNRESTRICTED_IOCTL = 1 << 0


class FattrFlag(enum.IntFlag):
    """``fuse_setattr_in.valid``: which fields of the SETATTR request mean something."""

    MODE = 1 << 0
    UID = 1 << 1
    GID = 1 << 2
    SIZE = 1 << 3
    ATIME = 1 << 4
    MTIME = 1 << 5
    FH = 1 << 6
    ATIME_NOW = 1 << 7
    MTIME_NOW = 1 << 8
    LOCKOWNER = 1 << 9
    CTIME = 1 << 10  # 7.23
    KILL_SUIDGID = 1 << 11  # 7.33


class FopenFlag(enum.IntFlag):
    """``fuse_open_out.open_flags`` (FOPEN_*)."""

    DIRECT_IO = 1 << 0
    KEEP_CACHE = 1 << 1
    NONSEEKABLE = 1 << 2
    CACHE_DIR = 1 << 3  # 7.28
    STREAM = 1 << 4  # 7.31
    NOFLUSH = 1 << 5  # 7.35
    PARALLEL_DIRECT_WRITES = 1 << 6  # 7.38
    PASSTHROUGH = 1 << 7  # 7.40


class OpenInFlag(enum.IntFlag):
    """``fuse_open_in.open_flags`` / ``fuse_create_in.open_flags`` (7.33)."""

    KILL_SUIDGID = 1 << 0


class AttrFlag(enum.IntFlag):
    """``fuse_attr.flags`` (7.32; padding before)."""

    SUBMOUNT = 1 << 0
    DAX = 1 << 1


class GetattrFlag(enum.IntFlag):
    """``fuse_getattr_in.getattr_flags`` and ``fuse_statx_in.getattr_flags``."""

    FH = 1 << 0


class ReleaseFlag(enum.IntFlag):
    """``fuse_release_in.release_flags``."""

    FLUSH = 1 << 0
    FLOCK_UNLOCK = 1 << 1  # 7.17


class WriteFlag(enum.IntFlag):
    """``fuse_write_in.write_flags``."""

    CACHE = 1 << 0
    LOCKOWNER = 1 << 1
    KILL_SUIDGID = 1 << 2  # 7.33 (alias KILL_PRIV)


class ReadFlag(enum.IntFlag):
    """``fuse_read_in.read_flags``."""

    LOCKOWNER = 1 << 1


class LkFlag(enum.IntFlag):
    """``fuse_lk_in.lk_flags``."""

    FLOCK = 1 << 0


class FsyncFlag(enum.IntFlag):
    """``fuse_fsync_in.fsync_flags``."""

    FDATASYNC = 1 << 0


class IoctlFlag(enum.IntFlag):
    """``fuse_ioctl_in.flags`` / ``fuse_ioctl_out.flags``."""

    COMPAT = 1 << 0
    UNRESTRICTED = 1 << 1
    RETRY = 1 << 2
    BIT32 = 1 << 3  # FUSE_IOCTL_32BIT
    DIR = 1 << 4  # 7.18
    COMPAT_X32 = 1 << 5  # 7.30


class PollFlag(enum.IntFlag):
    """``fuse_poll_in.flags``."""

    SCHEDULE_NOTIFY = 1 << 0


class SetxattrFlag(enum.IntFlag):
    """``fuse_setxattr_in.setxattr_flags`` (7.33)."""

    ACL_KILL_SGID = 1 << 0


class InvalEntryFlag(enum.IntFlag):
    """``fuse_notify_inval_entry_out.flags`` (7.38)."""

    EXPIRE_ONLY = 1 << 0


# File types as they appear in fuse_attr.mode (S_IFMT bits) and in dirent.type (mode >> 12).
S_IFMT = 0o170000
S_IFSOCK = 0o140000
S_IFLNK = 0o120000
S_IFREG = 0o100000
S_IFBLK = 0o060000
S_IFDIR = 0o040000
S_IFCHR = 0o020000
S_IFIFO = 0o010000
#: File types the kernel accepts in an entry or attr reply.
VALID_FILE_TYPES = frozenset({S_IFSOCK, S_IFLNK, S_IFREG, S_IFBLK, S_IFDIR, S_IFCHR, S_IFIFO})
FILE_TYPE_NAMES = {
    S_IFSOCK: "sock",
    S_IFLNK: "lnk",
    S_IFREG: "reg",
    S_IFBLK: "blk",
    S_IFDIR: "dir",
    S_IFCHR: "chr",
    S_IFIFO: "fifo",
}


@functools.cache
def _members(flags: type[enum.IntFlag]) -> tuple[tuple[int, str], ...]:
    return tuple((int(m), m.name) for m in flags if int(m) and m.name is not None)


def flag_names(value: int, flags: type[enum.IntFlag]) -> list[str]:
    """Names of the bits set in ``value``; unknown bits appear as ``bitN``."""
    names: list[str] = []
    rest = value
    for m, name in _members(flags):
        if value & m == m:
            names.append(name)
            rest &= ~m
    bit = 0
    while rest:
        if rest & 1:
            names.append(f"bit{bit}")
        rest >>= 1
        bit += 1
    return names


#: opcodes of the first protocol versions that no kernel sends any more (GETDIR went in 2.6.x,
#: INVALIDATE was never used); named only so old or odd captures read well
RETIRED_OPCODES: dict[int, str] = {7: "GETDIR", 19: "INVALIDATE"}

#: opcode number -> name, for the hot paths (an enum lookup per frame is slow)
_OPCODE_NAMES: dict[int, str] = {int(op): op.name for op in Opcode}


def opcode_name(opcode: int) -> str:
    """The opcode's name, or ``OPCODE_<n>`` for one this package does not know."""
    return _OPCODE_NAMES.get(opcode) or f"OPCODE_{opcode}"


#: Linux's own names where Python's errno table picks an alias (ENOTSUP and EOPNOTSUPP are
#: both 95 on Linux; the kernel, strerror's man page, conform and Wireshark say EOPNOTSUPP;
#: 35 is EDEADLK, EDEADLOCK being its alias) or lacks one (133, EHWPOISON)
_LINUX_ERRNO_NAMES = {_errno.EOPNOTSUPP: "EOPNOTSUPP", _errno.EDEADLK: "EDEADLK", 133: "EHWPOISON"}


def errno_name(number: int) -> str:
    """The Linux name of a positive errno (``ENOENT`` for 2, ``EOPNOTSUPP`` for 95); unknown
    numbers stay numeric. The one errno namer: decode, check, conform and the Wireshark
    dissector's table all use these names."""
    name = _LINUX_ERRNO_NAMES.get(number) or _errno.errorcode.get(number)
    return name if name else str(number)


def notify_name(code: int) -> str:
    try:
        return NotifyCode(code).name
    except ValueError:
        return f"NOTIFY_{code}"
