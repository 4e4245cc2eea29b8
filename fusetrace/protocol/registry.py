"""The one table of FUSE operations and notifications (protocol.md §2, §6, §7).

Everything in fusetrace that needs to know "what does opcode N carry, what must its reply look
like, what does it do to lookup counts and file handles" reads :data:`OPS` (and :data:`NOTIFY`
for notification codes). Nothing else lists opcodes.

A message body is a sequence of :class:`Arg` in wire order. Struct arguments name the kernel
struct (``fuse_read_in``); its fields appear *flattened* in the decoded body (``body["fh"]``),
nested structs stay nested (``body["attr"]["mode"]``). The schemas for the names live in
:mod:`fusetrace.protocol.schemas`, which also picks the compat size of a struct for old minors.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from fusetrace.protocol.abi import (
    S_IFDIR,
    S_IFLNK,
    S_IFREG,
    FattrFlag,
    GetattrFlag,
    InitFlag,
    NotifyCode,
    Opcode,
)


class ArgKind(enum.Enum):
    """How one argument of a message body is laid out."""

    #: a kernel struct (``Arg.struct``); its fields are flattened into the body
    STRUCT = "struct"
    #: a NUL-terminated string, decoded as text (surrogateescape) under ``Arg.name``
    CSTRING = "cstring"
    #: raw bytes whose length is the body field ``Arg.length_from``
    BYTES = "bytes"
    #: all remaining bytes, raw
    REST = "rest"
    #: all remaining bytes as text without NUL (READLINK target)
    TEXT = "text"
    #: ``body[length_from]`` records of struct ``Arg.struct``, as a list under ``Arg.name``
    ARRAY = "array"
    #: the extension block announced by ``in.total_extlen`` (protocol.md §3.3)
    EXT = "ext"
    #: READDIR records (fuse_dirent + name, 8-aligned) up to the end
    DIRENTS = "dirents"
    #: READDIRPLUS records (fuse_direntplus + name, 8-aligned) up to the end
    DIRENTPLUS = "direntplus"
    #: NUL-terminated names up to the end (LISTXATTR reply)
    NAMES = "names"
    #: NUL-separated KEY=VALUE strings up to the end (CUSE_INIT reply device info)
    DEVINFO = "devinfo"


@dataclass(frozen=True)
class Arg:
    kind: ArgKind
    name: str
    struct: str | None = None
    length_from: str | None = None


def S(struct: str) -> Arg:
    return Arg(ArgKind.STRUCT, struct, struct)


def CSTR(name: str) -> Arg:
    return Arg(ArgKind.CSTRING, name)


def BYTES(name: str, length_from: str) -> Arg:
    return Arg(ArgKind.BYTES, name, length_from=length_from)


def ARRAY(name: str, struct: str, count_from: str) -> Arg:
    return Arg(ArgKind.ARRAY, name, struct, count_from)


REST = Arg(ArgKind.REST, "data")
EXT = Arg(ArgKind.EXT, "ext")


class ReplyShape(enum.Enum):
    """What a successful reply looks like (protocol.md §2 "Reply" column, §5.3 W8)."""

    #: header only (len 16)
    EMPTY = "empty"
    #: exactly the reply structs (at the size the negotiated minor gives)
    FIXED = "fixed"
    #: the last argument may be shorter, bounded by the request (READ, READDIR, ...)
    VARIABLE = "variable"
    #: the daemon must not reply (FORGET, BATCH_FORGET, NOTIFY_REPLY)
    NONE = "none"


class LookupEffect(enum.Enum):
    """Effect of an operation on the kernel's lookup count of node ids (protocol.md §7.1)."""

    NONE = "none"
    #: +1 for the reply's nodeid when it is nonzero (LOOKUP, MKNOD, MKDIR, SYMLINK, LINK,
    #: CREATE, TMPFILE)
    ENTRY = "entry"
    #: +1 per reply entry except "." / ".." and nodeid 0
    READDIRPLUS = "readdirplus"
    #: -nlookup for the header's nodeid
    FORGET = "forget"
    #: -nlookup for every (nodeid, nlookup) in the body's ``forgets``
    BATCH_FORGET = "batch_forget"


class HandleEffect(enum.Enum):
    """Effect of an operation on file handles (protocol.md §7.2)."""

    NONE = "none"
    #: a successful reply's ``fh`` opens a file handle (OPEN, CREATE, TMPFILE)
    OPENS = "opens"
    #: a successful reply's ``fh`` opens a directory handle (OPENDIR)
    OPENS_DIR = "opens_dir"
    #: the request's ``fh_fields`` name handles in use
    USES_FH = "uses_fh"
    #: the request's ``fh`` ends a file handle (RELEASE)
    RELEASES = "releases"
    #: the request's ``fh`` ends a directory handle (RELEASEDIR)
    RELEASES_DIR = "releases_dir"


class HandleKind(enum.Enum):
    """Which kind of handle an operation's ``fh`` names (protocol.md §7.2).

    File handles (OPEN, CREATE, TMPFILE) and directory handles (OPENDIR) are separate: the
    kernel keeps each in a ``struct fuse_file`` opened on one node, and only the file
    operations of that kind send it.
    """

    #: a file handle (READ, WRITE, FLUSH, RELEASE, ...)
    FILE = "file"
    #: a directory handle (READDIR, READDIRPLUS, FSYNCDIR, RELEASEDIR)
    DIR = "dir"
    #: either (IOCTL: ``fuse_dir_ioctl`` sends the directory's handle)
    EITHER = "either"


@dataclass(frozen=True)
class OpSpec:
    """Everything fusetrace knows about one opcode."""

    opcode: Opcode
    #: minor of the protocol that introduced the opcode (0 = from the start; CUSE_INIT: 0)
    since: int
    #: request arguments after the 40-byte header, in wire order
    request: tuple[Arg, ...]
    reply: ReplyShape
    #: arguments of a successful reply after the 16-byte header
    reply_args: tuple[Arg, ...] = ()
    #: reply arguments when the request's ``size`` is 0 (GETXATTR / LISTXATTR size probe)
    reply_probe: tuple[Arg, ...] | None = None
    #: the reply may be left out (INTERRUPT)
    reply_optional: bool = False
    lookup: LookupEffect = LookupEffect.NONE
    handle: HandleEffect = HandleEffect.NONE
    #: request body fields that carry a file handle
    fh_fields: tuple[str, ...] = ()
    #: (field, mask): the fh fields mean something only when ``body[field] & mask``
    fh_when: tuple[str, int] | None = None
    #: the kind of handle the fh fields name
    fh_kind: HandleKind = HandleKind.FILE
    #: per fh field, the body field naming the node it was opened on ("" = the header's
    #: nodeid; COPY_FILE_RANGE's fh_out belongs to nodeid_out)
    fh_nodes: tuple[str, ...] = ()
    #: the op creates a directory entry (MKNOD, MKDIR, SYMLINK, LINK, CREATE, TMPFILE):
    #: the kernel rejects a reply with nodeid 0 or 1
    creates: bool = False
    #: file type (S_IFxxx) the created node must have; None = taken from the request's
    #: ``mode`` (MKNOD) or from the linked node (LINK)
    file_type: int | None = None
    #: an ENOSYS reply makes the kernel stop sending this op on the connection
    enosys_remembered: bool = False
    #: the request may end with an extension block (total_extlen)
    extensions: bool = False
    #: request body fields that name a node besides the header's nodeid (LINK's old node,
    #: RENAME's new parent, COPY_FILE_RANGE's destination)
    node_fields: tuple[str, ...] = ()
    #: the header's nodeid names a node; False where it is 0 by definition (INIT, DESTROY,
    #: INTERRUPT, BATCH_FORGET, CUSE_INIT)
    header_nodeid: bool = True

    @property
    def name(self) -> str:
        return self.opcode.name

    @property
    def has_reply(self) -> bool:
        return self.reply is not ReplyShape.NONE


_E, _F, _V, _N = ReplyShape.EMPTY, ReplyShape.FIXED, ReplyShape.VARIABLE, ReplyShape.NONE
_FH = ("fh",)
_ENTRY = (S("fuse_entry_out"),)
_ATTR = (S("fuse_attr_out"),)
_OPEN = (S("fuse_open_out"),)


def _op(
    opcode: Opcode,
    since: int,
    request: tuple[Arg, ...],
    reply: ReplyShape,
    reply_args: tuple[Arg, ...] = (),
    **kw: object,
) -> OpSpec:
    return OpSpec(opcode, since, request, reply, reply_args, **kw)  # type: ignore[arg-type]


_O = Opcode
_SPECS: list[OpSpec] = [
    _op(_O.LOOKUP, 0, (CSTR("name"),), _F, _ENTRY, lookup=LookupEffect.ENTRY),
    _op(_O.FORGET, 0, (S("fuse_forget_in"),), _N, lookup=LookupEffect.FORGET),
    _op(
        _O.GETATTR,
        0,
        (S("fuse_getattr_in"),),
        _F,
        _ATTR,
        handle=HandleEffect.USES_FH,
        fh_fields=_FH,
        fh_when=("getattr_flags", int(GetattrFlag.FH)),
    ),
    _op(
        _O.SETATTR,
        1,
        (S("fuse_setattr_in"),),
        _F,
        _ATTR,
        handle=HandleEffect.USES_FH,
        fh_fields=_FH,
        fh_when=("valid", int(FattrFlag.FH)),
    ),
    _op(_O.READLINK, 0, (), _V, (Arg(ArgKind.TEXT, "target"),)),
    _op(
        _O.SYMLINK,
        1,
        (CSTR("name"), CSTR("target"), EXT),
        _F,
        _ENTRY,
        lookup=LookupEffect.ENTRY,
        creates=True,
        file_type=S_IFLNK,
        extensions=True,
    ),
    _op(
        _O.MKNOD,
        1,
        (S("fuse_mknod_in"), CSTR("name"), EXT),
        _F,
        _ENTRY,
        lookup=LookupEffect.ENTRY,
        creates=True,
        extensions=True,
    ),
    _op(
        _O.MKDIR,
        1,
        (S("fuse_mkdir_in"), CSTR("name"), EXT),
        _F,
        _ENTRY,
        lookup=LookupEffect.ENTRY,
        creates=True,
        file_type=S_IFDIR,
        extensions=True,
    ),
    _op(_O.UNLINK, 1, (CSTR("name"),), _E),
    _op(_O.RMDIR, 1, (CSTR("name"),), _E),
    _op(
        _O.RENAME,
        1,
        (S("fuse_rename_in"), CSTR("oldname"), CSTR("newname")),
        _E,
        node_fields=("newdir",),
    ),
    _op(
        _O.LINK,
        1,
        (S("fuse_link_in"), CSTR("newname")),
        _F,
        _ENTRY,
        lookup=LookupEffect.ENTRY,
        creates=True,
        enosys_remembered=True,
        node_fields=("oldnodeid",),
    ),
    _op(
        _O.OPEN,
        1,
        (S("fuse_open_in"),),
        _F,
        _OPEN,
        handle=HandleEffect.OPENS,
        enosys_remembered=True,
    ),
    _op(_O.READ, 1, (S("fuse_read_in"),), _V, (REST,), handle=HandleEffect.USES_FH, fh_fields=_FH),
    _op(
        _O.WRITE,
        1,
        (S("fuse_write_in"), BYTES("data", "size")),
        _F,
        (S("fuse_write_out"),),
        handle=HandleEffect.USES_FH,
        fh_fields=_FH,
    ),
    _op(_O.STATFS, 0, (), _F, (S("fuse_statfs_out"),)),
    _op(_O.RELEASE, 1, (S("fuse_release_in"),), _E, handle=HandleEffect.RELEASES, fh_fields=_FH),
    _op(
        _O.FSYNC,
        1,
        (S("fuse_fsync_in"),),
        _E,
        handle=HandleEffect.USES_FH,
        fh_fields=_FH,
        enosys_remembered=True,
    ),
    _op(
        _O.SETXATTR,
        1,
        (S("fuse_setxattr_in"), CSTR("name"), BYTES("value", "size")),
        _E,
        enosys_remembered=True,
    ),
    _op(
        _O.GETXATTR,
        1,
        (S("fuse_getxattr_in"), CSTR("name")),
        _V,
        (Arg(ArgKind.REST, "value"),),
        reply_probe=(S("fuse_getxattr_out"),),
        enosys_remembered=True,
    ),
    _op(
        _O.LISTXATTR,
        1,
        (S("fuse_getxattr_in"),),
        _V,
        (Arg(ArgKind.NAMES, "names"),),
        reply_probe=(S("fuse_getxattr_out"),),
        enosys_remembered=True,
    ),
    _op(_O.REMOVEXATTR, 1, (CSTR("name"),), _E, enosys_remembered=True),
    _op(
        _O.FLUSH,
        1,
        (S("fuse_flush_in"),),
        _E,
        handle=HandleEffect.USES_FH,
        fh_fields=_FH,
        enosys_remembered=True,
    ),
    _op(_O.INIT, 0, (S("fuse_init_in"),), _V, (S("fuse_init_out"),), header_nodeid=False),
    _op(
        _O.OPENDIR,
        1,
        (S("fuse_open_in"),),
        _F,
        _OPEN,
        handle=HandleEffect.OPENS_DIR,
        enosys_remembered=True,
    ),
    _op(
        _O.READDIR,
        1,
        (S("fuse_read_in"),),
        _V,
        (Arg(ArgKind.DIRENTS, "entries"),),
        handle=HandleEffect.USES_FH,
        fh_fields=_FH,
        fh_kind=HandleKind.DIR,
    ),
    _op(
        _O.RELEASEDIR,
        1,
        (S("fuse_release_in"),),
        _E,
        handle=HandleEffect.RELEASES_DIR,
        fh_fields=_FH,
        fh_kind=HandleKind.DIR,
    ),
    _op(
        _O.FSYNCDIR,
        2,
        (S("fuse_fsync_in"),),
        _E,
        handle=HandleEffect.USES_FH,
        fh_fields=_FH,
        fh_kind=HandleKind.DIR,
        enosys_remembered=True,
    ),
    _op(
        _O.GETLK,
        7,
        (S("fuse_lk_in"),),
        _F,
        (S("fuse_lk_out"),),
        handle=HandleEffect.USES_FH,
        fh_fields=_FH,
    ),
    _op(_O.SETLK, 7, (S("fuse_lk_in"),), _E, handle=HandleEffect.USES_FH, fh_fields=_FH),
    _op(_O.SETLKW, 7, (S("fuse_lk_in"),), _E, handle=HandleEffect.USES_FH, fh_fields=_FH),
    _op(_O.ACCESS, 3, (S("fuse_access_in"),), _E, enosys_remembered=True),
    _op(
        _O.CREATE,
        3,
        (S("fuse_create_in"), CSTR("name"), EXT),
        _F,
        (S("fuse_entry_out"), S("fuse_open_out")),
        lookup=LookupEffect.ENTRY,
        handle=HandleEffect.OPENS,
        creates=True,
        file_type=S_IFREG,
        enosys_remembered=True,
        extensions=True,
    ),
    _op(
        _O.INTERRUPT,
        7,
        (S("fuse_interrupt_in"),),
        _E,
        reply_optional=True,
        enosys_remembered=True,
        header_nodeid=False,
    ),
    _op(_O.BMAP, 8, (S("fuse_bmap_in"),), _F, (S("fuse_bmap_out"),), enosys_remembered=True),
    _op(_O.DESTROY, 8, (), _E, header_nodeid=False),
    _op(
        _O.IOCTL,
        11,
        (S("fuse_ioctl_in"), BYTES("data", "in_size")),
        _V,
        (S("fuse_ioctl_out"), REST),
        handle=HandleEffect.USES_FH,
        fh_fields=_FH,
        fh_kind=HandleKind.EITHER,
    ),
    _op(
        _O.POLL,
        11,
        (S("fuse_poll_in"),),
        _F,
        (S("fuse_poll_out"),),
        handle=HandleEffect.USES_FH,
        fh_fields=_FH,
        enosys_remembered=True,
    ),
    _op(_O.NOTIFY_REPLY, 15, (S("fuse_notify_retrieve_in"), BYTES("data", "size")), _N),
    _op(
        _O.BATCH_FORGET,
        16,
        (S("fuse_batch_forget_in"), ARRAY("forgets", "fuse_forget_one", "count")),
        _N,
        lookup=LookupEffect.BATCH_FORGET,
        header_nodeid=False,
    ),
    _op(
        _O.FALLOCATE,
        19,
        (S("fuse_fallocate_in"),),
        _E,
        handle=HandleEffect.USES_FH,
        fh_fields=_FH,
        enosys_remembered=True,
    ),
    _op(
        _O.READDIRPLUS,
        21,
        (S("fuse_read_in"),),
        _V,
        (Arg(ArgKind.DIRENTPLUS, "entries"),),
        lookup=LookupEffect.READDIRPLUS,
        handle=HandleEffect.USES_FH,
        fh_fields=_FH,
        fh_kind=HandleKind.DIR,
    ),
    _op(
        _O.RENAME2,
        23,
        (S("fuse_rename2_in"), CSTR("oldname"), CSTR("newname")),
        _E,
        enosys_remembered=True,
        node_fields=("newdir",),
    ),
    _op(
        _O.LSEEK,
        24,
        (S("fuse_lseek_in"),),
        _F,
        (S("fuse_lseek_out"),),
        handle=HandleEffect.USES_FH,
        fh_fields=_FH,
        enosys_remembered=True,
    ),
    _op(
        _O.COPY_FILE_RANGE,
        28,
        (S("fuse_copy_file_range_in"),),
        _F,
        (S("fuse_write_out"),),
        handle=HandleEffect.USES_FH,
        fh_fields=("fh_in", "fh_out"),
        fh_nodes=("", "nodeid_out"),
        enosys_remembered=True,
        node_fields=("nodeid_out",),
    ),
    _op(
        _O.SETUPMAPPING,
        31,
        (S("fuse_setupmapping_in"),),
        _E,
        handle=HandleEffect.USES_FH,
        fh_fields=_FH,
    ),
    _op(
        _O.REMOVEMAPPING,
        31,
        (S("fuse_removemapping_in"), ARRAY("mappings", "fuse_removemapping_one", "count")),
        _E,
    ),
    _op(_O.SYNCFS, 34, (S("fuse_syncfs_in"),), _E, enosys_remembered=True),
    _op(
        _O.TMPFILE,
        37,
        (S("fuse_create_in"), CSTR("name"), EXT),
        _F,
        (S("fuse_entry_out"), S("fuse_open_out")),
        lookup=LookupEffect.ENTRY,
        handle=HandleEffect.OPENS,
        creates=True,
        file_type=S_IFREG,
        enosys_remembered=True,
        extensions=True,
    ),
    _op(
        _O.STATX,
        39,
        (S("fuse_statx_in"),),
        _F,
        (S("fuse_statx_out"),),
        handle=HandleEffect.USES_FH,
        fh_fields=_FH,
        fh_when=("getattr_flags", int(GetattrFlag.FH)),
        enosys_remembered=True,
    ),
    _op(
        _O.COPY_FILE_RANGE_64,
        45,
        (S("fuse_copy_file_range_in"),),
        _F,
        (S("fuse_copy_file_range_out"),),
        handle=HandleEffect.USES_FH,
        fh_fields=("fh_in", "fh_out"),
        fh_nodes=("", "nodeid_out"),
        enosys_remembered=True,
        node_fields=("nodeid_out",),
    ),
    _op(
        _O.CUSE_INIT,
        0,
        (S("cuse_init_in"),),
        _V,
        (S("cuse_init_out"), Arg(ArgKind.DEVINFO, "dev_info")),
        header_nodeid=False,
    ),
]

#: opcode -> OpSpec, for every opcode of protocol.md §2.
OPS: dict[int, OpSpec] = {spec.opcode: spec for spec in _SPECS}

#: ops whose request has no reply at all (never paired, never kept outstanding): FORGET,
#: BATCH_FORGET, NOTIFY_REPLY. INTERRUPT is not one of them: it may be answered (EAGAIN to
#: have it re-sent, ENOSYS to stop interrupts), only the answer is optional.
NO_REPLY_OPS = frozenset(op for op, spec in OPS.items() if not spec.has_reply)
#: ops the kernel does not wait on: no reply at all, or an optional one (INTERRUPT: the
#: target's own reply ends it). What a proxy must not count as outstanding.
NOT_AWAITED_OPS = frozenset(
    op for op, spec in OPS.items() if not spec.has_reply or spec.reply_optional
)


class NotifySize(enum.Enum):
    """How the kernel checks a notification's payload length (protocol.md §6)."""

    #: exactly the struct
    EXACT = "exact"
    #: struct + name + NUL, namelen from the struct (INVAL_ENTRY, DELETE)
    NAME = "name"
    #: struct + ``size`` bytes of data (STORE)
    DATA = "data"
    #: struct + ``count`` x u64 (PRUNE)
    ARRAY = "array"
    #: anything, ignored (RESEND, INC_EPOCH)
    ANY = "any"


@dataclass(frozen=True)
class NotifySpec:
    code: NotifyCode
    since: int
    args: tuple[Arg, ...]
    size: NotifySize
    #: the payload field naming the node the kernel must hold for the notification to act
    node_field: str | None = None

    @property
    def name(self) -> str:
        return self.code.name


_C = NotifyCode
NOTIFY: dict[int, NotifySpec] = {
    spec.code: spec
    for spec in (
        NotifySpec(_C.POLL, 11, (S("fuse_notify_poll_wakeup_out"),), NotifySize.EXACT),
        NotifySpec(
            _C.INVAL_INODE, 12, (S("fuse_notify_inval_inode_out"),), NotifySize.EXACT, "ino"
        ),
        NotifySpec(
            _C.INVAL_ENTRY,
            12,
            (S("fuse_notify_inval_entry_out"), CSTR("name")),
            NotifySize.NAME,
            "parent",
        ),
        NotifySpec(
            _C.STORE,
            15,
            (S("fuse_notify_store_out"), BYTES("data", "size")),
            NotifySize.DATA,
            "nodeid",
        ),
        NotifySpec(_C.RETRIEVE, 15, (S("fuse_notify_retrieve_out"),), NotifySize.EXACT, "nodeid"),
        NotifySpec(
            _C.DELETE, 18, (S("fuse_notify_delete_out"), CSTR("name")), NotifySize.NAME, "parent"
        ),
        NotifySpec(_C.RESEND, 40, (), NotifySize.ANY),
        NotifySpec(_C.INC_EPOCH, 44, (), NotifySize.ANY),
        NotifySpec(
            _C.PRUNE,
            45,
            (S("fuse_notify_prune_out"), ARRAY("nodeids", "u64", "count")),
            NotifySize.ARRAY,
        ),
    )
}


class MountKind(enum.Enum):
    """The kinds of FUSE connection. The kernel sends a different set of opcodes on each."""

    #: /dev/fuse mounted as ``fuse`` or ``fuse.SUBTYPE``
    FUSE = "fuse"
    #: /dev/fuse mounted over a block device (``fuseblk``: ntfs-3g, fuse2fs -o fuseblk)
    FUSEBLK = "fuseblk"
    #: virtio-fs: the requests travel over a virtqueue, not /dev/fuse
    VIRTIOFS = "virtiofs"
    #: /dev/cuse: a character device served by a daemon
    CUSE = "cuse"


_FS = frozenset({MountKind.FUSE, MountKind.FUSEBLK, MountKind.VIRTIOFS})
_FS_AND_CUSE = _FS | {MountKind.CUSE}
_NO_FLAGS = InitFlag(0)


@dataclass(frozen=True)
class Reach:
    """When the kernel can send an opcode at all, besides a system call that asks for it
    (protocol.md §2, §4.2, §7.3). An opcode newer than the kernel's INIT minor is never sent
    (``OpSpec.since``)."""

    #: the kinds of connection on which the kernel sends it
    kinds: frozenset[MountKind] = _FS
    #: the INIT reply must grant at least one of these flags
    needs_flags: InitFlag = _NO_FLAGS
    #: the INIT reply granting one of these stops it...
    stopped_by_flags: InitFlag = _NO_FLAGS
    #: ...unless it also grants one of these
    unless_flags: InitFlag = _NO_FLAGS
    #: a mount option that stops it
    stopped_by_option: str | None = None
    #: the INIT reply's minor must be at least this
    daemon_minor: int = 0
    #: sent only after the daemon answered this opcode with ENOSYS (kernels that have it)
    fallback_for: Opcode | None = None
    #: sent only in answer to this notification from the daemon
    answers: NotifyCode | None = None
    #: how a workload makes the kernel send it, or why it is limited (for reports)
    note: str = ""


_R = Reach
_K = MountKind
_I = InitFlag
#: opcode -> when the kernel sends it; an opcode missing here is sent on every filesystem
#: connection when a system call asks for it. Kernel sources: fs/fuse/inode.c
#: (fuse_init_fs_context: destroy only for fuseblk; process_init_reply: no_lock, no_flock,
#: readdirplus, POSIX_ACL forcing default_permissions; fuse_sync_fs: only with fc->sync_fs,
#: which virtio_fs.c alone sets), fs/fuse/file.c (fuse_bmap needs s_bdev; fuse_file_lock
#: and fuse_file_flock; __fuse_copy_file_range tries COPY_FILE_RANGE_64 first), fs/fuse/dir.c
#: (fuse_permission: ACCESS only without default_permissions; fuse_use_readdirplus;
#: fuse_rename2: minor >= 23), fs/fuse/dev.c (fuse_read_forget: a batch from minor 16 when
#: more than one forget waits; request_wait_answer: INTERRUPT once a request was read),
#: fs/fuse/dax.c (SETUPMAPPING, REMOVEMAPPING), fs/fuse/cuse.c (CUSE_INIT and the file
#: operations of a CUSE device). Checked against Linux 6.18.
REACH: dict[Opcode, Reach] = {
    _O.OPEN: _R(_FS_AND_CUSE),
    _O.READ: _R(_FS_AND_CUSE),
    _O.WRITE: _R(_FS_AND_CUSE),
    _O.RELEASE: _R(_FS_AND_CUSE),
    _O.IOCTL: _R(_FS_AND_CUSE),
    _O.POLL: _R(_FS_AND_CUSE),
    _O.INTERRUPT: _R(
        _FS_AND_CUSE, note="a signal to a task whose request the daemon has read but not answered"
    ),
    _O.FORGET: _R(note="the kernel evicts an inode it had looked up"),
    _O.BATCH_FORGET: _R(
        daemon_minor=16,
        note="several forgets waiting when the daemon reads: many inodes evicted at once",
    ),
    _O.GETLK: _R(needs_flags=_I.POSIX_LOCKS, note="F_GETLK, F_OFD_GETLK"),
    _O.SETLK: _R(needs_flags=_I.POSIX_LOCKS | _I.FLOCK_LOCKS, note="fcntl locks, flock()"),
    _O.SETLKW: _R(needs_flags=_I.POSIX_LOCKS | _I.FLOCK_LOCKS, note="F_SETLKW, flock()"),
    _O.ACCESS: _R(
        stopped_by_flags=_I.POSIX_ACL,
        stopped_by_option="default_permissions",
        note="access(), chdir() without default_permissions",
    ),
    _O.READDIRPLUS: _R(needs_flags=_I.DO_READDIRPLUS, daemon_minor=21),
    _O.READDIR: _R(stopped_by_flags=_I.DO_READDIRPLUS, unless_flags=_I.READDIRPLUS_AUTO),
    _O.RENAME2: _R(daemon_minor=23, note="renameat2() with flags"),
    _O.COPY_FILE_RANGE: _R(fallback_for=_O.COPY_FILE_RANGE_64),
    _O.NOTIFY_REPLY: _R(
        answers=NotifyCode.RETRIEVE, note="the kernel's answer to the daemon's RETRIEVE"
    ),
    _O.BMAP: _R(frozenset({_K.FUSEBLK}), note="FIBMAP on a block-device mount"),
    _O.DESTROY: _R(frozenset({_K.FUSEBLK, _K.VIRTIOFS}), note="sent at unmount"),
    _O.SYNCFS: _R(frozenset({_K.VIRTIOFS}), note="syncfs(), sync()"),
    _O.SETUPMAPPING: _R(frozenset({_K.VIRTIOFS}), note="DAX mappings only"),
    _O.REMOVEMAPPING: _R(frozenset({_K.VIRTIOFS}), note="DAX mappings only"),
    _O.CUSE_INIT: _R(frozenset({_K.CUSE}), note="the first request on /dev/cuse"),
    _O.INIT: _R(note="the first request of every filesystem connection"),
}


def reach(opcode: Opcode) -> Reach:
    """When the kernel can send ``opcode`` (the default: any filesystem connection)."""
    return REACH.get(opcode, _DEFAULT_REACH)


_DEFAULT_REACH = Reach()
