-- fuse.lua: Wireshark dissector for Linux FUSE frames in fusetrace captures.
--
-- fusetrace writes pcapng files with link type 147 (LINKTYPE_USER0): every packet is one
-- raw FUSE frame exactly as it crossed /dev/fuse, header included, and the pcapng
-- epb_flags direction says which way it went (inbound = kernel -> daemon: a request,
-- FORGET, INTERRUPT or NOTIFY_REPLY; outbound = daemon -> kernel: a reply or a
-- notification).  When a capture carries no direction (classic pcap, other tools) the
-- dissector tells requests from replies by their headers, as fusetrace itself does.
--
-- Usage:
--   tshark -X lua_script:fuse.lua -r capture.pcapng
--   wireshark -X lua_script:fuse.lua capture.pcapng
-- or install it once with `fusetrace wireshark-plugin --install`.
--
-- Byte order: FUSE frames are in the byte order of the machine that recorded them.  The
-- dissector finds it per frame from the header's len field (which must equal the frame
-- length); the "Byte order" preference can force it.  Both orders are decoded.
--
-- Pairing: a reply carries no opcode, only the request's unique id.  The dissector keeps
-- a table keyed by unique, filled as frames are first seen; requests come before their
-- replies, so a single pass (plain tshark) already gives every reply its request's
-- opcode, frame number (fuse.request_in) and response time (fuse.time).  The request's
-- link to its reply (fuse.response_in) needs a second pass: Wireshark makes one, tshark
-- does with -2.  For a reply, fuse.opcode is the paired request's opcode (a generated
-- field), so `fuse.opcode == 15` shows READ requests and their replies.
--
-- Display-filter fields (the main ones; `tshark -G fields -X lua_script:fuse.lua` lists all):
--   fuse.type          1 request, 2 reply, 3 notification
--   fuse.len fuse.opcode fuse.unique fuse.nodeid (requests) fuse.uid fuse.gid fuse.pid
--   fuse.error         negative errno of a reply, shown by name (0 = success)
--   fuse.notify_code   notification code (the error field of a notification)
--   fuse.request_in fuse.response_in fuse.time
--   fuse.name fuse.newname fuse.fh fuse.offset fuse.size
--   fuse.entry.nodeid  node id returned in an entry (LOOKUP, MKDIR, READDIRPLUS, ...)
--   fuse.attr.*  fuse.init.*  fuse.setattr.*  fuse.open.*  fuse.dirent.*  fuse.notify.*
--
-- Protocol reference: Linux include/uapi/linux/fuse.h (ABI 7.45).
-- SPDX-License-Identifier: MIT

local PLUGIN_VERSION = "0.1.0"

-- Loaded twice (installed in the plugin folder and named with -X lua_script): the first
-- copy, the installed one, stays; the second would fail to register the same protocol.
-- (package.loaded is shared by all scripts; their globals may not be.)
if package.loaded["fusetrace.fuse"] then return end
package.loaded["fusetrace.fuse"] = PLUGIN_VERSION

if set_plugin_info then
    set_plugin_info({
        version = PLUGIN_VERSION,
        description = "Linux FUSE protocol (fusetrace captures, link type 147 / USER0)",
        repository = "fusetrace",
    })
end

local fuse = Proto("fuse", "Linux FUSE Protocol")

---------------------------------------------------------------------------------------
-- Value tables
---------------------------------------------------------------------------------------

-- BEGIN generated tables (fusetrace.protocol.lua; regenerate with scripts/regen-lua)

-- opcode -> name (abi; GETDIR and INVALIDATE are retired)
local OPCODES = {
    [1] = "LOOKUP", [2] = "FORGET", [3] = "GETATTR", [4] = "SETATTR", [5] = "READLINK",
    [6] = "SYMLINK", [7] = "GETDIR", [8] = "MKNOD", [9] = "MKDIR", [10] = "UNLINK",
    [11] = "RMDIR", [12] = "RENAME", [13] = "LINK", [14] = "OPEN", [15] = "READ",
    [16] = "WRITE", [17] = "STATFS", [18] = "RELEASE", [19] = "INVALIDATE", [20] = "FSYNC",
    [21] = "SETXATTR", [22] = "GETXATTR", [23] = "LISTXATTR", [24] = "REMOVEXATTR",
    [25] = "FLUSH", [26] = "INIT", [27] = "OPENDIR", [28] = "READDIR", [29] = "RELEASEDIR",
    [30] = "FSYNCDIR", [31] = "GETLK", [32] = "SETLK", [33] = "SETLKW", [34] = "ACCESS",
    [35] = "CREATE", [36] = "INTERRUPT", [37] = "BMAP", [38] = "DESTROY", [39] = "IOCTL",
    [40] = "POLL", [41] = "NOTIFY_REPLY", [42] = "BATCH_FORGET", [43] = "FALLOCATE",
    [44] = "READDIRPLUS", [45] = "RENAME2", [46] = "LSEEK", [47] = "COPY_FILE_RANGE",
    [48] = "SETUPMAPPING", [49] = "REMOVEMAPPING", [50] = "SYNCFS", [51] = "TMPFILE",
    [52] = "STATX", [53] = "COPY_FILE_RANGE_64", [4096] = "CUSE_INIT",
}

-- requests the daemon must not answer: they never enter the pairing table
local NO_REPLY = { [2] = true, [41] = true, [42] = true }

-- notification codes
local NOTIFY_CODES = {
    [1] = "POLL", [2] = "INVAL_INODE", [3] = "INVAL_ENTRY", [4] = "STORE", [5] = "RETRIEVE",
    [6] = "DELETE", [7] = "RESEND", [8] = "INC_EPOCH", [9] = "PRUNE",
}

-- Linux errno names (protocol.abi.errno_name)
local ERRNO = {
    [1] = "EPERM", [2] = "ENOENT", [3] = "ESRCH", [4] = "EINTR", [5] = "EIO", [6] = "ENXIO",
    [7] = "E2BIG", [8] = "ENOEXEC", [9] = "EBADF", [10] = "ECHILD", [11] = "EAGAIN",
    [12] = "ENOMEM", [13] = "EACCES", [14] = "EFAULT", [15] = "ENOTBLK", [16] = "EBUSY",
    [17] = "EEXIST", [18] = "EXDEV", [19] = "ENODEV", [20] = "ENOTDIR", [21] = "EISDIR",
    [22] = "EINVAL", [23] = "ENFILE", [24] = "EMFILE", [25] = "ENOTTY", [26] = "ETXTBSY",
    [27] = "EFBIG", [28] = "ENOSPC", [29] = "ESPIPE", [30] = "EROFS", [31] = "EMLINK",
    [32] = "EPIPE", [33] = "EDOM", [34] = "ERANGE", [35] = "EDEADLK", [36] = "ENAMETOOLONG",
    [37] = "ENOLCK", [38] = "ENOSYS", [39] = "ENOTEMPTY", [40] = "ELOOP", [42] = "ENOMSG",
    [43] = "EIDRM", [44] = "ECHRNG", [45] = "EL2NSYNC", [46] = "EL3HLT", [47] = "EL3RST",
    [48] = "ELNRNG", [49] = "EUNATCH", [50] = "ENOCSI", [51] = "EL2HLT", [52] = "EBADE",
    [53] = "EBADR", [54] = "EXFULL", [55] = "ENOANO", [56] = "EBADRQC", [57] = "EBADSLT",
    [59] = "EBFONT", [60] = "ENOSTR", [61] = "ENODATA", [62] = "ETIME", [63] = "ENOSR",
    [64] = "ENONET", [65] = "ENOPKG", [66] = "EREMOTE", [67] = "ENOLINK", [68] = "EADV",
    [69] = "ESRMNT", [70] = "ECOMM", [71] = "EPROTO", [72] = "EMULTIHOP", [73] = "EDOTDOT",
    [74] = "EBADMSG", [75] = "EOVERFLOW", [76] = "ENOTUNIQ", [77] = "EBADFD", [78] = "EREMCHG",
    [79] = "ELIBACC", [80] = "ELIBBAD", [81] = "ELIBSCN", [82] = "ELIBMAX", [83] = "ELIBEXEC",
    [84] = "EILSEQ", [85] = "ERESTART", [86] = "ESTRPIPE", [87] = "EUSERS", [88] = "ENOTSOCK",
    [89] = "EDESTADDRREQ", [90] = "EMSGSIZE", [91] = "EPROTOTYPE", [92] = "ENOPROTOOPT",
    [93] = "EPROTONOSUPPORT", [94] = "ESOCKTNOSUPPORT", [95] = "EOPNOTSUPP",
    [96] = "EPFNOSUPPORT", [97] = "EAFNOSUPPORT", [98] = "EADDRINUSE", [99] = "EADDRNOTAVAIL",
    [100] = "ENETDOWN", [101] = "ENETUNREACH", [102] = "ENETRESET", [103] = "ECONNABORTED",
    [104] = "ECONNRESET", [105] = "ENOBUFS", [106] = "EISCONN", [107] = "ENOTCONN",
    [108] = "ESHUTDOWN", [109] = "ETOOMANYREFS", [110] = "ETIMEDOUT", [111] = "ECONNREFUSED",
    [112] = "EHOSTDOWN", [113] = "EHOSTUNREACH", [114] = "EALREADY", [115] = "EINPROGRESS",
    [116] = "ESTALE", [117] = "EUCLEAN", [118] = "ENOTNAM", [119] = "ENAVAIL", [120] = "EISNAM",
    [121] = "EREMOTEIO", [122] = "EDQUOT", [123] = "ENOMEDIUM", [124] = "EMEDIUMTYPE",
    [125] = "ECANCELED", [126] = "ENOKEY", [127] = "EKEYEXPIRED", [128] = "EKEYREVOKED",
    [129] = "EKEYREJECTED", [130] = "EOWNERDEAD", [131] = "ENOTRECOVERABLE", [132] = "ERFKILL",
    [133] = "EHWPOISON",
}

-- INIT flag bits: bit n of `flags` is n, bit n of `flags2` is 32 + n
local INIT_FLAGS = {
    [0] = "ASYNC_READ", "POSIX_LOCKS", "FILE_OPS", "ATOMIC_O_TRUNC", "EXPORT_SUPPORT",
    "BIG_WRITES", "DONT_MASK", "SPLICE_WRITE", "SPLICE_MOVE", "SPLICE_READ", "FLOCK_LOCKS",
    "HAS_IOCTL_DIR", "AUTO_INVAL_DATA", "DO_READDIRPLUS", "READDIRPLUS_AUTO", "ASYNC_DIO",
    "WRITEBACK_CACHE", "NO_OPEN_SUPPORT", "PARALLEL_DIROPS", "HANDLE_KILLPRIV", "POSIX_ACL",
    "ABORT_ERROR", "MAX_PAGES", "CACHE_SYMLINKS", "NO_OPENDIR_SUPPORT", "EXPLICIT_INVAL_DATA",
    "MAP_ALIGNMENT", "SUBMOUNTS", "HANDLE_KILLPRIV_V2", "SETXATTR_EXT", "INIT_EXT",
    "INIT_RESERVED", "SECURITY_CTX", "HAS_INODE_DAX", "CREATE_SUPP_GROUP", "HAS_EXPIRE_ONLY",
    "DIRECT_IO_ALLOW_MMAP", "PASSTHROUGH", "NO_EXPORT_SUPPORT", "HAS_RESEND", "ALLOW_IDMAP",
    "OVER_IO_URING", "REQUEST_TIMEOUT",
}

-- setattr valid bits
local FATTR = {
    [0] = "MODE", "UID", "GID", "SIZE", "ATIME", "MTIME", "FH", "ATIME_NOW", "MTIME_NOW",
    "LOCKOWNER", "CTIME", "KILL_SUIDGID",
}

-- open reply flags
local FOPEN = {
    [0] = "DIRECT_IO", "KEEP_CACHE", "NONSEEKABLE", "CACHE_DIR", "STREAM", "NOFLUSH",
    "PARALLEL_DIRECT_WRITES", "PASSTHROUGH",
}

-- struct sizes on the wire (schemas; *_compat: the size for old minors)
local SIZES = {
    cuse_init_in = 16, cuse_init_out = 72, fuse_access_in = 8, fuse_attr = 88,
    fuse_attr_compat = 80, fuse_attr_out = 104, fuse_attr_out_compat = 96,
    fuse_backing_map = 16, fuse_batch_forget_in = 8, fuse_bmap_in = 16, fuse_bmap_out = 8,
    fuse_copy_file_range_in = 56, fuse_copy_file_range_out = 8, fuse_create_in = 16,
    fuse_create_in_compat = 8, fuse_dirent = 24, fuse_direntplus = 152, fuse_entry_out = 128,
    fuse_entry_out_compat = 120, fuse_ext_header = 8, fuse_fallocate_in = 32,
    fuse_file_lock = 24, fuse_flush_in = 24, fuse_forget_in = 8, fuse_forget_one = 16,
    fuse_fsync_in = 16, fuse_getattr_in = 16, fuse_getxattr_in = 8, fuse_getxattr_out = 8,
    fuse_in_header = 40, fuse_init_in = 64, fuse_init_in_compat = 16, fuse_init_out = 64,
    fuse_init_out_compat = 8, fuse_init_out_compat22 = 24, fuse_interrupt_in = 8,
    fuse_ioctl_in = 32, fuse_ioctl_iovec = 16, fuse_ioctl_out = 16, fuse_kstatfs = 80,
    fuse_kstatfs_compat = 48, fuse_link_in = 8, fuse_lk_in = 48, fuse_lk_out = 24,
    fuse_lseek_in = 24, fuse_lseek_out = 8, fuse_mkdir_in = 8, fuse_mknod_in = 16,
    fuse_mknod_in_compat = 8, fuse_notify_delete_out = 24, fuse_notify_inval_entry_out = 16,
    fuse_notify_inval_inode_out = 24, fuse_notify_poll_wakeup_out = 8,
    fuse_notify_prune_out = 16, fuse_notify_retrieve_in = 40, fuse_notify_retrieve_out = 32,
    fuse_notify_store_out = 24, fuse_open_in = 8, fuse_open_out = 16, fuse_out_header = 16,
    fuse_poll_in = 24, fuse_poll_out = 8, fuse_read_in = 40, fuse_release_in = 24,
    fuse_removemapping_in = 4, fuse_removemapping_one = 16, fuse_rename2_in = 16,
    fuse_rename_in = 8, fuse_secctx = 8, fuse_secctx_header = 8, fuse_setattr_in = 88,
    fuse_setupmapping_in = 40, fuse_setxattr_in = 16, fuse_setxattr_in_compat = 8,
    fuse_statfs_out = 80, fuse_statfs_out_compat = 48, fuse_statx = 256, fuse_statx_in = 24,
    fuse_statx_out = 288, fuse_sx_time = 16, fuse_syncfs_in = 8, fuse_uring_cmd_req = 24,
    fuse_uring_ent_in_out = 32, fuse_uring_req_header = 288, fuse_write_in = 40,
    fuse_write_in_compat = 24, fuse_write_out = 8, u64 = 8,
}

-- offsets of each struct's top-level fields
local OFFSETS = {
    cuse_init_in = {
        major = 0, minor = 4, unused = 8, flags = 12,
    },
    cuse_init_out = {
        major = 0, minor = 4, unused = 8, flags = 12, max_read = 16, max_write = 20,
        dev_major = 24, dev_minor = 28, spare = 32,
    },
    fuse_access_in = {
        mask = 0, padding = 4,
    },
    fuse_attr = {
        ino = 0, size = 8, blocks = 16, atime = 24, mtime = 32, ctime = 40, atimensec = 48,
        mtimensec = 52, ctimensec = 56, mode = 60, nlink = 64, uid = 68, gid = 72, rdev = 76,
        blksize = 80, flags = 84,
    },
    fuse_attr_compat = {
        ino = 0, size = 8, blocks = 16, atime = 24, mtime = 32, ctime = 40, atimensec = 48,
        mtimensec = 52, ctimensec = 56, mode = 60, nlink = 64, uid = 68, gid = 72, rdev = 76,
    },
    fuse_attr_out = {
        attr_valid = 0, attr_valid_nsec = 8, dummy = 12, attr = 16,
    },
    fuse_attr_out_compat = {
        attr_valid = 0, attr_valid_nsec = 8, dummy = 12, attr = 16,
    },
    fuse_backing_map = {
        fd = 0, flags = 4, padding = 8,
    },
    fuse_batch_forget_in = {
        count = 0, dummy = 4,
    },
    fuse_bmap_in = {
        block = 0, blocksize = 8, padding = 12,
    },
    fuse_bmap_out = {
        block = 0,
    },
    fuse_copy_file_range_in = {
        fh_in = 0, off_in = 8, nodeid_out = 16, fh_out = 24, off_out = 32, len = 40, flags = 48,
    },
    fuse_copy_file_range_out = {
        bytes_copied = 0,
    },
    fuse_create_in = {
        flags = 0, mode = 4, umask = 8, open_flags = 12,
    },
    fuse_create_in_compat = {
        flags = 0, mode = 4,
    },
    fuse_dirent = {
        ino = 0, off = 8, namelen = 16, type = 20,
    },
    fuse_direntplus = {
        entry_out = 0, dirent = 128,
    },
    fuse_entry_out = {
        nodeid = 0, generation = 8, entry_valid = 16, attr_valid = 24, entry_valid_nsec = 32,
        attr_valid_nsec = 36, attr = 40,
    },
    fuse_entry_out_compat = {
        nodeid = 0, generation = 8, entry_valid = 16, attr_valid = 24, entry_valid_nsec = 32,
        attr_valid_nsec = 36, attr = 40,
    },
    fuse_ext_header = {
        size = 0, type = 4,
    },
    fuse_fallocate_in = {
        fh = 0, offset = 8, length = 16, mode = 24, padding = 28,
    },
    fuse_file_lock = {
        start = 0, ["end"] = 8, type = 16, pid = 20,
    },
    fuse_flush_in = {
        fh = 0, unused = 8, padding = 12, lock_owner = 16,
    },
    fuse_forget_in = {
        nlookup = 0,
    },
    fuse_forget_one = {
        nodeid = 0, nlookup = 8,
    },
    fuse_fsync_in = {
        fh = 0, fsync_flags = 8, padding = 12,
    },
    fuse_getattr_in = {
        getattr_flags = 0, dummy = 4, fh = 8,
    },
    fuse_getxattr_in = {
        size = 0, padding = 4,
    },
    fuse_getxattr_out = {
        size = 0, padding = 4,
    },
    fuse_in_header = {
        len = 0, opcode = 4, unique = 8, nodeid = 16, uid = 24, gid = 28, pid = 32,
        total_extlen = 36, padding = 38,
    },
    fuse_init_in = {
        major = 0, minor = 4, max_readahead = 8, flags = 12, flags2 = 16, unused = 20,
    },
    fuse_init_in_compat = {
        major = 0, minor = 4, max_readahead = 8, flags = 12,
    },
    fuse_init_out = {
        major = 0, minor = 4, max_readahead = 8, flags = 12, max_background = 16,
        congestion_threshold = 18, max_write = 20, time_gran = 24, max_pages = 28,
        map_alignment = 30, flags2 = 32, max_stack_depth = 36, request_timeout = 40,
        unused = 42,
    },
    fuse_init_out_compat = {
        major = 0, minor = 4,
    },
    fuse_init_out_compat22 = {
        major = 0, minor = 4, max_readahead = 8, flags = 12, max_background = 16,
        congestion_threshold = 18, max_write = 20,
    },
    fuse_interrupt_in = {
        unique = 0,
    },
    fuse_ioctl_in = {
        fh = 0, flags = 8, cmd = 12, arg = 16, in_size = 24, out_size = 28,
    },
    fuse_ioctl_iovec = {
        base = 0, len = 8,
    },
    fuse_ioctl_out = {
        result = 0, flags = 4, in_iovs = 8, out_iovs = 12,
    },
    fuse_kstatfs = {
        blocks = 0, bfree = 8, bavail = 16, files = 24, ffree = 32, bsize = 40, namelen = 44,
        frsize = 48, padding = 52, spare = 56,
    },
    fuse_kstatfs_compat = {
        blocks = 0, bfree = 8, bavail = 16, files = 24, ffree = 32, bsize = 40, namelen = 44,
    },
    fuse_link_in = {
        oldnodeid = 0,
    },
    fuse_lk_in = {
        fh = 0, owner = 8, lk = 16, lk_flags = 40, padding = 44,
    },
    fuse_lk_out = {
        lk = 0,
    },
    fuse_lseek_in = {
        fh = 0, offset = 8, whence = 16, padding = 20,
    },
    fuse_lseek_out = {
        offset = 0,
    },
    fuse_mkdir_in = {
        mode = 0, umask = 4,
    },
    fuse_mknod_in = {
        mode = 0, rdev = 4, umask = 8, padding = 12,
    },
    fuse_mknod_in_compat = {
        mode = 0, rdev = 4,
    },
    fuse_notify_delete_out = {
        parent = 0, child = 8, namelen = 16, padding = 20,
    },
    fuse_notify_inval_entry_out = {
        parent = 0, namelen = 8, flags = 12,
    },
    fuse_notify_inval_inode_out = {
        ino = 0, off = 8, len = 16,
    },
    fuse_notify_poll_wakeup_out = {
        kh = 0,
    },
    fuse_notify_prune_out = {
        count = 0, padding = 4, spare = 8,
    },
    fuse_notify_retrieve_in = {
        dummy1 = 0, offset = 8, size = 16, dummy2 = 20, dummy3 = 24, dummy4 = 32,
    },
    fuse_notify_retrieve_out = {
        notify_unique = 0, nodeid = 8, offset = 16, size = 24, padding = 28,
    },
    fuse_notify_store_out = {
        nodeid = 0, offset = 8, size = 16, padding = 20,
    },
    fuse_open_in = {
        flags = 0, open_flags = 4,
    },
    fuse_open_out = {
        fh = 0, open_flags = 8, backing_id = 12,
    },
    fuse_out_header = {
        len = 0, error = 4, unique = 8,
    },
    fuse_poll_in = {
        fh = 0, kh = 8, flags = 16, events = 20,
    },
    fuse_poll_out = {
        revents = 0, padding = 4,
    },
    fuse_read_in = {
        fh = 0, offset = 8, size = 16, read_flags = 20, lock_owner = 24, flags = 32,
        padding = 36,
    },
    fuse_release_in = {
        fh = 0, flags = 8, release_flags = 12, lock_owner = 16,
    },
    fuse_removemapping_in = {
        count = 0,
    },
    fuse_removemapping_one = {
        moffset = 0, len = 8,
    },
    fuse_rename2_in = {
        newdir = 0, flags = 8, padding = 12,
    },
    fuse_rename_in = {
        newdir = 0,
    },
    fuse_secctx = {
        size = 0, padding = 4,
    },
    fuse_secctx_header = {
        size = 0, nr_secctx = 4,
    },
    fuse_setattr_in = {
        valid = 0, padding = 4, fh = 8, size = 16, lock_owner = 24, atime = 32, mtime = 40,
        ctime = 48, atimensec = 56, mtimensec = 60, ctimensec = 64, mode = 68, unused4 = 72,
        uid = 76, gid = 80, unused5 = 84,
    },
    fuse_setupmapping_in = {
        fh = 0, foffset = 8, len = 16, flags = 24, moffset = 32,
    },
    fuse_setxattr_in = {
        size = 0, flags = 4, setxattr_flags = 8, padding = 12,
    },
    fuse_setxattr_in_compat = {
        size = 0, flags = 4,
    },
    fuse_statfs_out = {
        st = 0,
    },
    fuse_statfs_out_compat = {
        st = 0,
    },
    fuse_statx = {
        mask = 0, blksize = 4, attributes = 8, nlink = 16, uid = 20, gid = 24, mode = 28,
        spare0 = 30, ino = 32, size = 40, blocks = 48, attributes_mask = 56, atime = 64,
        btime = 80, ctime = 96, mtime = 112, rdev_major = 128, rdev_minor = 132,
        dev_major = 136, dev_minor = 140, spare2 = 144,
    },
    fuse_statx_in = {
        getattr_flags = 0, reserved = 4, fh = 8, sx_flags = 16, sx_mask = 20,
    },
    fuse_statx_out = {
        attr_valid = 0, attr_valid_nsec = 8, flags = 12, spare = 16, stat = 32,
    },
    fuse_sx_time = {
        tv_sec = 0, tv_nsec = 8, reserved = 12,
    },
    fuse_syncfs_in = {
        padding = 0,
    },
    fuse_uring_cmd_req = {
        flags = 0, commit_id = 8, qid = 16, padding = 18,
    },
    fuse_uring_ent_in_out = {
        flags = 0, commit_id = 8, payload_sz = 16, padding = 20, reserved = 24,
    },
    fuse_uring_req_header = {
        in_out = 0, op_in = 128, ring_ent_in_out = 256,
    },
    fuse_write_in = {
        fh = 0, offset = 8, size = 16, write_flags = 20, lock_owner = 24, flags = 32,
        padding = 36,
    },
    fuse_write_in_compat = {
        fh = 0, offset = 8, size = 16, write_flags = 20,
    },
    fuse_write_out = {
        size = 0, padding = 4,
    },
    u64 = {
    },
}

-- END generated tables

local ENTRY_OUT, ENTRY_OUT_COMPAT = SIZES.fuse_entry_out, SIZES.fuse_entry_out_compat

local TYPES = { [1] = "Request", [2] = "Reply", [3] = "Notification" }

local ERRORS = { [0] = "OK" }
for n, name in pairs(ERRNO) do ERRORS[-n] = name end

local function errname(e)
    if e == 0 then return "OK" end
    return ERRNO[-e] or tostring(e)
end

-- open(2) flags, Linux generic values (x86, arm, riscv)
local OPEN_FLAGS = {
    { 0x40, "O_CREAT" }, { 0x80, "O_EXCL" }, { 0x100, "O_NOCTTY" }, { 0x200, "O_TRUNC" },
    { 0x400, "O_APPEND" }, { 0x800, "O_NONBLOCK" }, { 0x1000, "O_DSYNC" },
    { 0x2000, "O_ASYNC" }, { 0x4000, "O_DIRECT" }, { 0x8000, "O_LARGEFILE" },
    { 0x10000, "O_DIRECTORY" }, { 0x20000, "O_NOFOLLOW" }, { 0x40000, "O_NOATIME" },
    { 0x80000, "O_CLOEXEC" }, { 0x100000, "__O_SYNC" }, { 0x200000, "O_PATH" },
    { 0x400000, "__O_TMPFILE" },
}

local DT_TYPES = {
    [0] = "UNKNOWN", [1] = "FIFO", [2] = "CHR", [4] = "DIR", [6] = "BLK", [8] = "REG",
    [10] = "LNK", [12] = "SOCK", [14] = "WHT",
}

local S_IFMT_NAMES = {
    [0x1000] = "fifo", [0x2000] = "character device", [0x4000] = "directory",
    [0x6000] = "block device", [0x8000] = "regular file", [0xA000] = "symbolic link",
    [0xC000] = "socket",
}

local LK_TYPES = { [0] = "F_RDLCK", [1] = "F_WRLCK", [2] = "F_UNLCK" }
local WHENCE = { [0] = "SEEK_SET", [1] = "SEEK_CUR", [2] = "SEEK_END", [3] = "SEEK_DATA",
    [4] = "SEEK_HOLE" }

local function flag_list(value, names, first)
    local out = {}
    for bit = first or 0, 31 do
        if names[bit] and bit32.btest(value, bit32.lshift(1, bit)) then
            out[#out + 1] = names[bit]
        end
    end
    return table.concat(out, "|")
end

local function open_flags_text(v)
    local acc = bit32.band(v, 3)
    local out = { ({ [0] = "O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE" })[acc] }
    for _, fl in ipairs(OPEN_FLAGS) do
        if bit32.btest(v, fl[1]) then out[#out + 1] = fl[2] end
    end
    return table.concat(out, "|")
end

local function mode_text(mode)
    local t = S_IFMT_NAMES[bit32.band(mode, 0xF000)]
    local perm = string.format("%04o", bit32.band(mode, 0xFFF))
    if t then return t .. ", " .. perm end
    return perm
end

-- "(regular file, 0644)" after a mode item, when the mode carries a file type
local function add_mode_text(item, mode)
    if item and mode and bit32.band(mode, 0xF000) ~= 0 then
        item:append_text(" (" .. mode_text(mode) .. ")")
    end
end

---------------------------------------------------------------------------------------
-- Fields
---------------------------------------------------------------------------------------

local F = {}
local SET = { "Set", "Not set" }
local function field(key, pf) F[key] = pf end

-- header
field("type", ProtoField.uint8("fuse.type", "Message type", base.DEC, TYPES))
field("len", ProtoField.uint32("fuse.len", "Length", base.DEC))
field("opcode", ProtoField.uint32("fuse.opcode", "Opcode", base.DEC, OPCODES))
field("unique", ProtoField.uint64("fuse.unique", "Unique", base.DEC))
field("nodeid", ProtoField.uint64("fuse.nodeid", "Node id", base.DEC))
field("uid", ProtoField.uint32("fuse.uid", "UID", base.DEC))
field("gid", ProtoField.uint32("fuse.gid", "GID", base.DEC))
field("pid", ProtoField.uint32("fuse.pid", "PID", base.DEC))
field("total_extlen", ProtoField.uint16("fuse.total_extlen", "Extension length (8-byte units)",
    base.DEC))
field("hpadding", ProtoField.uint16("fuse.padding", "Padding", base.HEX))
field("error", ProtoField.int32("fuse.error", "Error", base.DEC, ERRORS))
field("notify_code", ProtoField.uint32("fuse.notify_code", "Notify code", base.DEC,
    NOTIFY_CODES))
field("interrupt_reply", ProtoField.bool("fuse.interrupt_reply", "Reply to an INTERRUPT"))
field("resend", ProtoField.bool("fuse.resend", "Resent request (unique bit 63)"))

-- pairing
field("request_in", ProtoField.framenum("fuse.request_in", "Request in", base.NONE,
    frametype.REQUEST))
field("response_in", ProtoField.framenum("fuse.response_in", "Response in", base.NONE,
    frametype.RESPONSE))
field("time", ProtoField.relative_time("fuse.time", "Response time"))
field("duplicate_of", ProtoField.framenum("fuse.duplicate_of", "Duplicate reply; first reply in",
    base.NONE, frametype.RESPONSE))

-- common body fields
field("name", ProtoField.string("fuse.name", "Name"))
field("newname", ProtoField.string("fuse.newname", "New name"))
field("target", ProtoField.string("fuse.symlink.target", "Symlink target"))
field("fh", ProtoField.uint64("fuse.fh", "File handle", base.HEX))
field("offset", ProtoField.uint64("fuse.offset", "Offset", base.DEC))
field("size", ProtoField.uint32("fuse.size", "Size", base.DEC))
field("lock_owner", ProtoField.uint64("fuse.lock_owner", "Lock owner", base.HEX))
field("data", ProtoField.bytes("fuse.data", "Data"))
field("data_len", ProtoField.uint32("fuse.data_len", "Data length", base.DEC))
field("ext", ProtoField.bytes("fuse.ext", "Extension block"))
field("payload", ProtoField.bytes("fuse.payload", "Undecoded payload"))
field("mode", ProtoField.uint32("fuse.mode", "Mode", base.OCT))
field("umask", ProtoField.uint32("fuse.umask", "Umask", base.OCT))
field("rdev", ProtoField.uint32("fuse.rdev", "Device", base.HEX))

-- fuse_attr / entry_out / attr_out
field("attr_ino", ProtoField.uint64("fuse.attr.ino", "Inode number", base.DEC))
field("attr_size", ProtoField.uint64("fuse.attr.size", "Size", base.DEC))
field("attr_blocks", ProtoField.uint64("fuse.attr.blocks", "Blocks", base.DEC))
field("attr_atime", ProtoField.absolute_time("fuse.attr.atime", "Access time", base.UTC))
field("attr_mtime", ProtoField.absolute_time("fuse.attr.mtime", "Modification time", base.UTC))
field("attr_ctime", ProtoField.absolute_time("fuse.attr.ctime", "Change time", base.UTC))
field("attr_mode", ProtoField.uint32("fuse.attr.mode", "Mode", base.OCT))
field("attr_nlink", ProtoField.uint32("fuse.attr.nlink", "Links", base.DEC))
field("attr_uid", ProtoField.uint32("fuse.attr.uid", "UID", base.DEC))
field("attr_gid", ProtoField.uint32("fuse.attr.gid", "GID", base.DEC))
field("attr_rdev", ProtoField.uint32("fuse.attr.rdev", "Device", base.HEX))
field("attr_blksize", ProtoField.uint32("fuse.attr.blksize", "Block size", base.DEC))
field("attr_flags", ProtoField.uint32("fuse.attr.flags", "Attribute flags", base.HEX))
field("entry_nodeid", ProtoField.uint64("fuse.entry.nodeid", "Entry node id", base.DEC))
field("entry_generation", ProtoField.uint64("fuse.entry.generation", "Generation", base.DEC))
field("entry_valid", ProtoField.relative_time("fuse.entry.entry_valid", "Entry valid for"))
field("attr_valid", ProtoField.relative_time("fuse.attr_valid", "Attributes valid for"))
field("getattr_flags", ProtoField.uint32("fuse.getattr.flags", "Getattr flags", base.HEX,
    { [0] = "none", [1] = "GETATTR_FH" }))

-- forget
field("forget_nlookup", ProtoField.uint64("fuse.forget.nlookup", "Lookups to forget", base.DEC))
field("forget_nodeid", ProtoField.uint64("fuse.forget.nodeid", "Node id", base.DEC))
field("forget_count", ProtoField.uint32("fuse.forget.count", "Count", base.DEC))

-- setattr
field("setattr_valid", ProtoField.uint32("fuse.setattr.valid", "Valid", base.HEX))
for bit = 0, #FATTR do
    field("fattr_" .. bit, ProtoField.bool("fuse.setattr.valid." .. FATTR[bit]:lower(),
        FATTR[bit], 32, SET, bit32.lshift(1, bit)))
end
field("setattr_size", ProtoField.uint64("fuse.setattr.size", "Size", base.DEC))
field("setattr_atime", ProtoField.absolute_time("fuse.setattr.atime", "Access time", base.UTC))
field("setattr_mtime", ProtoField.absolute_time("fuse.setattr.mtime", "Modification time",
    base.UTC))
field("setattr_ctime", ProtoField.absolute_time("fuse.setattr.ctime", "Change time", base.UTC))
field("setattr_mode", ProtoField.uint32("fuse.setattr.mode", "Mode", base.OCT))
field("setattr_uid", ProtoField.uint32("fuse.setattr.uid", "UID", base.DEC))
field("setattr_gid", ProtoField.uint32("fuse.setattr.gid", "GID", base.DEC))

-- open / create / release / flush / fsync / read / write
field("open_flags", ProtoField.uint32("fuse.open.flags", "Open flags", base.HEX))
field("open_open_flags", ProtoField.uint32("fuse.open.open_flags", "FUSE open flags", base.HEX,
    { [0] = "none", [1] = "OPEN_KILL_SUIDGID" }))
field("fopen", ProtoField.uint32("fuse.open_out.flags", "Reply open flags", base.HEX))
for bit = 0, #FOPEN do
    field("fopen_" .. bit, ProtoField.bool("fuse.open_out.flags." .. FOPEN[bit]:lower(),
        FOPEN[bit], 32, SET, bit32.lshift(1, bit)))
end
field("backing_id", ProtoField.int32("fuse.open_out.backing_id", "Backing id", base.DEC))
field("release_flags", ProtoField.uint32("fuse.release.flags", "Release flags", base.HEX))
field("fsync_flags", ProtoField.uint32("fuse.fsync.flags", "Fsync flags", base.HEX,
    { [0] = "none", [1] = "FSYNC_FDATASYNC" }))
field("read_flags", ProtoField.uint32("fuse.read.flags", "Read flags", base.HEX))
field("write_flags", ProtoField.uint32("fuse.write.flags", "Write flags", base.HEX))

-- xattr
field("xattr_name", ProtoField.string("fuse.xattr.name", "Attribute name"))
field("xattr_value", ProtoField.bytes("fuse.xattr.value", "Attribute value"))
field("xattr_flags", ProtoField.uint32("fuse.xattr.flags", "Setxattr flags", base.HEX))
field("xattr_setxattr_flags", ProtoField.uint32("fuse.xattr.setxattr_flags",
    "FUSE setxattr flags", base.HEX))

-- init
field("init_major", ProtoField.uint32("fuse.init.major", "Major", base.DEC))
field("init_minor", ProtoField.uint32("fuse.init.minor", "Minor", base.DEC))
field("init_max_readahead", ProtoField.uint32("fuse.init.max_readahead", "Max readahead",
    base.DEC))
field("init_flags", ProtoField.uint32("fuse.init.flags", "Flags", base.HEX))
field("init_flags2", ProtoField.uint32("fuse.init.flags2", "Flags2", base.HEX))
for bit = 0, #INIT_FLAGS do
    local mask = bit32.lshift(1, bit % 32)
    field("initf_" .. bit, ProtoField.bool("fuse.init.flags." .. INIT_FLAGS[bit]:lower(),
        INIT_FLAGS[bit], 32, SET, mask))
end
field("init_max_background", ProtoField.uint16("fuse.init.max_background", "Max background",
    base.DEC))
field("init_congestion", ProtoField.uint16("fuse.init.congestion_threshold",
    "Congestion threshold", base.DEC))
field("init_max_write", ProtoField.uint32("fuse.init.max_write", "Max write", base.DEC))
field("init_time_gran", ProtoField.uint32("fuse.init.time_gran", "Time granularity", base.DEC))
field("init_max_pages", ProtoField.uint16("fuse.init.max_pages", "Max pages", base.DEC))
field("init_map_alignment", ProtoField.uint16("fuse.init.map_alignment", "Map alignment",
    base.DEC))
field("init_max_stack_depth", ProtoField.uint32("fuse.init.max_stack_depth", "Max stack depth",
    base.DEC))
field("init_request_timeout", ProtoField.uint16("fuse.init.request_timeout",
    "Request timeout (s)", base.DEC))
field("cuse_flags", ProtoField.uint32("fuse.cuse.flags", "CUSE flags", base.HEX))
field("cuse_max_read", ProtoField.uint32("fuse.cuse.max_read", "Max read", base.DEC))
field("cuse_dev_major", ProtoField.uint32("fuse.cuse.dev_major", "Device major", base.DEC))
field("cuse_dev_minor", ProtoField.uint32("fuse.cuse.dev_minor", "Device minor", base.DEC))
field("cuse_info", ProtoField.string("fuse.cuse.info", "Device info"))

-- directory entries
field("dirent", ProtoField.none("fuse.dirent", "Directory entry"))
field("dirent_ino", ProtoField.uint64("fuse.dirent.ino", "Inode number", base.DEC))
field("dirent_off", ProtoField.uint64("fuse.dirent.off", "Next offset", base.DEC))
field("dirent_namelen", ProtoField.uint32("fuse.dirent.namelen", "Name length", base.DEC))
field("dirent_type", ProtoField.uint32("fuse.dirent.type", "Type", base.DEC, DT_TYPES))
field("dirent_name", ProtoField.string("fuse.dirent.name", "Name"))
field("dirent_count", ProtoField.uint32("fuse.dirent.count", "Entries", base.DEC))

-- names and links
field("rename_newdir", ProtoField.uint64("fuse.rename.newdir", "New parent node id", base.DEC))
field("rename_flags", ProtoField.uint32("fuse.rename.flags", "Rename flags", base.HEX))
field("link_oldnodeid", ProtoField.uint64("fuse.link.oldnodeid", "Existing node id", base.DEC))

-- statfs
field("statfs_blocks", ProtoField.uint64("fuse.statfs.blocks", "Blocks", base.DEC))
field("statfs_bfree", ProtoField.uint64("fuse.statfs.bfree", "Free blocks", base.DEC))
field("statfs_bavail", ProtoField.uint64("fuse.statfs.bavail", "Available blocks", base.DEC))
field("statfs_files", ProtoField.uint64("fuse.statfs.files", "Files", base.DEC))
field("statfs_ffree", ProtoField.uint64("fuse.statfs.ffree", "Free files", base.DEC))
field("statfs_bsize", ProtoField.uint32("fuse.statfs.bsize", "Block size", base.DEC))
field("statfs_namelen", ProtoField.uint32("fuse.statfs.namelen", "Max name length", base.DEC))
field("statfs_frsize", ProtoField.uint32("fuse.statfs.frsize", "Fragment size", base.DEC))

-- statx
field("statx_flags", ProtoField.uint32("fuse.statx.sx_flags", "Statx flags", base.HEX))
field("statx_mask", ProtoField.uint32("fuse.statx.mask", "Statx mask", base.HEX))
field("statx_blksize", ProtoField.uint32("fuse.statx.blksize", "Block size", base.DEC))
field("statx_nlink", ProtoField.uint32("fuse.statx.nlink", "Links", base.DEC))
field("statx_uid", ProtoField.uint32("fuse.statx.uid", "UID", base.DEC))
field("statx_gid", ProtoField.uint32("fuse.statx.gid", "GID", base.DEC))
field("statx_mode", ProtoField.uint16("fuse.statx.mode", "Mode", base.OCT))
field("statx_ino", ProtoField.uint64("fuse.statx.ino", "Inode number", base.DEC))
field("statx_size", ProtoField.uint64("fuse.statx.size", "Size", base.DEC))
field("statx_blocks", ProtoField.uint64("fuse.statx.blocks", "Blocks", base.DEC))

-- locks, access, misc requests
field("lk_start", ProtoField.uint64("fuse.lk.start", "Start", base.DEC))
field("lk_end", ProtoField.uint64("fuse.lk.end", "End", base.DEC))
field("lk_type", ProtoField.uint32("fuse.lk.type", "Lock type", base.DEC, LK_TYPES))
field("lk_pid", ProtoField.uint32("fuse.lk.pid", "Lock PID", base.DEC))
field("lk_flags", ProtoField.uint32("fuse.lk.flags", "Lock flags", base.HEX,
    { [0] = "none", [1] = "LK_FLOCK" }))
field("access_mask", ProtoField.uint32("fuse.access.mask", "Access mask", base.HEX))
field("interrupt_unique", ProtoField.uint64("fuse.interrupt.unique", "Interrupted unique",
    base.DEC))
field("bmap_block", ProtoField.uint64("fuse.bmap.block", "Block", base.DEC))
field("bmap_blocksize", ProtoField.uint32("fuse.bmap.blocksize", "Block size", base.DEC))
field("ioctl_flags", ProtoField.uint32("fuse.ioctl.flags", "Ioctl flags", base.HEX))
field("ioctl_cmd", ProtoField.uint32("fuse.ioctl.cmd", "Command", base.HEX))
field("ioctl_arg", ProtoField.uint64("fuse.ioctl.arg", "Argument", base.HEX))
field("ioctl_in_size", ProtoField.uint32("fuse.ioctl.in_size", "In size", base.DEC))
field("ioctl_out_size", ProtoField.uint32("fuse.ioctl.out_size", "Out size", base.DEC))
field("ioctl_result", ProtoField.int32("fuse.ioctl.result", "Result", base.DEC))
field("ioctl_in_iovs", ProtoField.uint32("fuse.ioctl.in_iovs", "In iovecs", base.DEC))
field("ioctl_out_iovs", ProtoField.uint32("fuse.ioctl.out_iovs", "Out iovecs", base.DEC))
field("poll_kh", ProtoField.uint64("fuse.poll.kh", "Kernel poll handle", base.HEX))
field("poll_flags", ProtoField.uint32("fuse.poll.flags", "Poll flags", base.HEX))
field("poll_events", ProtoField.uint32("fuse.poll.events", "Events", base.HEX))
field("poll_revents", ProtoField.uint32("fuse.poll.revents", "Returned events", base.HEX))
field("fallocate_length", ProtoField.uint64("fuse.fallocate.length", "Length", base.DEC))
field("fallocate_mode", ProtoField.uint32("fuse.fallocate.mode", "Mode", base.HEX))
field("lseek_whence", ProtoField.uint32("fuse.lseek.whence", "Whence", base.DEC, WHENCE))
field("cfr_nodeid_out", ProtoField.uint64("fuse.copy.nodeid_out", "Destination node id",
    base.DEC))
field("cfr_fh_out", ProtoField.uint64("fuse.copy.fh_out", "Destination file handle", base.HEX))
field("cfr_off_out", ProtoField.uint64("fuse.copy.off_out", "Destination offset", base.DEC))
field("cfr_len", ProtoField.uint64("fuse.copy.len", "Length", base.DEC))
field("cfr_flags", ProtoField.uint64("fuse.copy.flags", "Copy flags", base.HEX))
field("cfr_copied", ProtoField.uint64("fuse.copy.bytes_copied", "Bytes copied", base.DEC))
field("map_moffset", ProtoField.uint64("fuse.mapping.moffset", "Mapping offset", base.HEX))
field("map_len", ProtoField.uint64("fuse.mapping.len", "Mapping length", base.DEC))
field("map_flags", ProtoField.uint64("fuse.mapping.flags", "Mapping flags", base.HEX))
field("map_count", ProtoField.uint32("fuse.mapping.count", "Count", base.DEC))

-- notifications
field("notify_nodeid", ProtoField.uint64("fuse.notify.nodeid", "Node id", base.DEC))
field("notify_parent", ProtoField.uint64("fuse.notify.parent", "Parent node id", base.DEC))
field("notify_child", ProtoField.uint64("fuse.notify.child", "Child node id", base.DEC))
field("notify_namelen", ProtoField.uint32("fuse.notify.namelen", "Name length", base.DEC))
field("notify_flags", ProtoField.uint32("fuse.notify.flags", "Flags", base.HEX,
    { [0] = "none", [1] = "EXPIRE_ONLY" }))
field("notify_off", ProtoField.int64("fuse.notify.off", "Offset", base.DEC))
field("notify_len", ProtoField.int64("fuse.notify.len", "Length", base.DEC))
field("notify_unique", ProtoField.uint64("fuse.notify.unique", "Notify unique", base.DEC))
field("notify_count", ProtoField.uint32("fuse.notify.count", "Count", base.DEC))

local flist = {}
for _, pf in pairs(F) do flist[#flist + 1] = pf end
fuse.fields = flist

local E = {
    error = ProtoExpert.new("fuse.expert.error", "Error reply", expert.group.RESPONSE_CODE,
        expert.severity.NOTE),
    unpaired = ProtoExpert.new("fuse.expert.unpaired", "Reply to a request not in the capture",
        expert.group.SEQUENCE, expert.severity.WARN),
    duplicate = ProtoExpert.new("fuse.expert.duplicate", "Second reply to the same request",
        expert.group.SEQUENCE, expert.severity.WARN),
    malformed = ProtoExpert.new("fuse.expert.malformed", "Malformed FUSE frame",
        expert.group.MALFORMED, expert.severity.ERROR),
    snapped = ProtoExpert.new("fuse.expert.snapped", "Frame cut short by the capture's snap length",
        expert.group.UNDECODED, expert.severity.NOTE),
}
fuse.experts = { E.error, E.unpaired, E.duplicate, E.malformed, E.snapped }

local BO_AUTO, BO_LITTLE, BO_BIG = 0, 1, 2
fuse.prefs.byte_order = Pref.enum("Byte order",
    BO_AUTO, "Byte order of the FUSE frames (auto: from each frame's length field)",
    { { 1, "auto", BO_AUTO }, { 2, "little endian", BO_LITTLE }, { 3, "big endian", BO_BIG } },
    true)
local byte_order_pref = BO_AUTO  -- a copy: reading fuse.prefs costs a lookup per frame
function fuse.prefs_changed()
    byte_order_pref = fuse.prefs.byte_order
end

---------------------------------------------------------------------------------------
-- Per-capture state: pairing of requests and replies
---------------------------------------------------------------------------------------

-- by_unique: tostring(unique) -> transaction, for requests waiting for their reply
--   (first pass only); by_frame: frame number -> transaction, for every later look.
-- A transaction: { op, req (frame), t (NSTime), xsize (GETXATTR/LISTXATTR size),
--   rep (frame), delta (NSTime, response time) }; t is seconds since the first frame.
local by_unique, by_frame, conn

local function reset()
    by_unique = {}
    by_frame = {}
    conn = { minor = nil }
end
reset()
fuse.init = reset

---------------------------------------------------------------------------------------
-- Reading helpers (state of the frame being dissected)
---------------------------------------------------------------------------------------

local T       -- the Tvb
local LE      -- true when the frame is little endian
local CAP     -- captured bytes
local PINFO

local ZERO64 = UInt64(0)

local function has(off, n) return off >= 0 and off + n <= CAP end

local function u16(off)
    if not has(off, 2) then return nil end
    if LE then return T(off, 2):le_uint() end
    return T(off, 2):uint()
end

local function u32(off)
    if not has(off, 4) then return nil end
    if LE then return T(off, 4):le_uint() end
    return T(off, 4):uint()
end

local function i32(off)
    if not has(off, 4) then return nil end
    if LE then return T(off, 4):le_int() end
    return T(off, 4):int()
end

local function u64(off)
    if not has(off, 8) then return nil end
    if LE then return T(off, 8):le_uint64() end
    return T(off, 8):uint64()
end

local function i64(off)
    if not has(off, 8) then return nil end
    if LE then return T(off, 8):le_int64() end
    return T(off, 8):int64()
end

-- add a field over [off, off+n); nothing when those bytes were not captured
local function add(tree, f, off, n, value)
    if not has(off, n) then return nil end
    if value ~= nil then return tree:add(f, T(off, n), value) end
    if LE then return tree:add_le(f, T(off, n)) end
    return tree:add(f, T(off, n))
end

-- s as valid UTF-8 for display: control characters and bytes that are not part of a
-- well-formed UTF-8 sequence become \xNN (file names are bytes, not text)
local function printable(s)
    if not s:find("[%z\1-\31\127-\255]") then return s end
    local out = {}
    local i, n = 1, #s
    while i <= n do
        local c = s:byte(i)
        local len, lo, hi = 0, 0x80, 0xBF
        if c >= 0x20 and c < 0x7F then
            len = 1
        elseif c >= 0xC2 and c <= 0xDF then
            len = 2
        elseif c >= 0xE0 and c <= 0xEF then
            len = 3
            if c == 0xE0 then lo = 0xA0 elseif c == 0xED then hi = 0x9F end
        elseif c >= 0xF0 and c <= 0xF4 then
            len = 4
            if c == 0xF0 then lo = 0x90 elseif c == 0xF4 then hi = 0x8F end
        end
        local ok = len > 0 and i + len - 1 <= n
        for k = i + 1, i + len - 1 do
            if not ok then break end
            local b = s:byte(k)
            if k == i + 1 then
                ok = b >= lo and b <= hi
            else
                ok = b >= 0x80 and b <= 0xBF
            end
        end
        if ok then
            out[#out + 1] = s:sub(i, i + len - 1)
            i = i + len
        else
            out[#out + 1] = string.format("\\x%02x", c)
            i = i + 1
        end
    end
    return table.concat(out)
end

-- a NUL-terminated string at off, not beyond stop; returns the string and the next offset
local function cstring(tree, f, off, stop)
    local last = math.min(stop, CAP)
    if off >= last then return nil, off end
    local raw = T(off, last - off):raw()
    local nul = raw:find("\0", 1, true)
    local s, used
    if nul then
        s, used = raw:sub(1, nul - 1), nul
    else
        s, used = raw, #raw
    end
    s = printable(s)
    tree:add(f, T(off, used), s)
    return s, off + used
end

-- a string of exactly n bytes (no NUL)
local function nstring(tree, f, off, n)
    local m = math.min(n, CAP - off)
    if m <= 0 then return nil end
    local s = printable(T(off, m):raw())
    tree:add(f, T(off, m), s)
    return s
end

-- a subtree over [off, off+n), or the parent itself when none of those bytes were captured
local function subtree(tree, off, n, label)
    local m = math.min(n, CAP - off)
    if m <= 0 or off < 0 then return tree end
    return tree:add(fuse, T(off, m), label)
end

local function add_time(tree, f, off_sec, off_nsec)
    local s, ns = i64(off_sec), u32(off_nsec)
    if not s or not ns then return end
    if ns >= 1000000000 then ns = 0 end
    tree:add(f, T(off_sec, 8), NSTime.new(s:tonumber(), ns))
end

local function add_valid(tree, f, off_sec, off_nsec)
    local s, ns = u64(off_sec), u32(off_nsec)
    if not s or not ns then return end
    if ns >= 1000000000 then ns = 0 end
    tree:add(f, T(off_sec, 8), NSTime.new(s:tonumber(), ns))
end

local function add_data(tree, off, stop, f)
    local n = stop - off
    if n <= 0 then return 0 end
    local item = tree:add(F.data_len, n)
    item:set_generated()
    local m = math.min(n, CAP - off)
    if m > 0 then tree:add(f or F.data, T(off, m)) end
    return n
end

local function q(s)
    if s == nil then return "?" end
    return '"' .. s .. '"'
end

---------------------------------------------------------------------------------------
-- Struct decoders (tree, offset [, limit]) -> next offset, summary
---------------------------------------------------------------------------------------

local function attr(tree, off, stop)
    -- fuse_attr: 88 bytes, 80 before 7.9 (no blksize, flags)
    local st = subtree(tree, off, stop - off, "Attributes")
    add(st, F.attr_ino, off, 8)
    add(st, F.attr_size, off + 8, 8)
    add(st, F.attr_blocks, off + 16, 8)
    add_time(st, F.attr_atime, off + 24, off + 48)
    add_time(st, F.attr_mtime, off + 32, off + 52)
    add_time(st, F.attr_ctime, off + 40, off + 56)
    local mode = u32(off + 60)
    local mi = add(st, F.attr_mode, off + 60, 4)
    add_mode_text(mi, mode)
    add(st, F.attr_nlink, off + 64, 4)
    add(st, F.attr_uid, off + 68, 4)
    add(st, F.attr_gid, off + 72, 4)
    add(st, F.attr_rdev, off + 76, 4)
    if stop - off >= 88 then
        add(st, F.attr_blksize, off + 80, 4)
        add(st, F.attr_flags, off + 84, 4)
    end
    local size = u64(off + 8)
    if mode then
        st:append_text(string.format(": %s, size %s", mode_text(mode), tostring(size)))
    end
    return off + math.min(88, stop - off)
end

local function entry_out(tree, off, stop)
    -- fuse_entry_out: 128 bytes (120 before 7.9)
    local st = subtree(tree, off, math.min(stop - off, ENTRY_OUT), "Entry")
    local nodeid = u64(off)
    add(st, F.entry_nodeid, off, 8)
    add(st, F.entry_generation, off + 8, 8)
    add_valid(st, F.entry_valid, off + 16, off + 32)
    add_valid(st, F.attr_valid, off + 24, off + 36)
    local entry_size = (stop - off >= ENTRY_OUT) and ENTRY_OUT or ENTRY_OUT_COMPAT
    attr(st, off + 40, off + entry_size)
    if nodeid then st:append_text(": nodeid " .. tostring(nodeid)) end
    return off + entry_size, nodeid and ("nodeid " .. tostring(nodeid)) or nil
end

local function attr_out(tree, off, stop)
    add_valid(tree, F.attr_valid, off, off + 8)
    attr(tree, off + 16, stop)
    local mode, size = u32(off + 16 + 60), u64(off + 16 + 8)
    if mode then return stop, mode_text(mode) .. ", size " .. tostring(size) end
    return stop
end

local function open_out(tree, off)
    local fh = u64(off)
    add(tree, F.fh, off, 8)
    local fl = u32(off + 8)
    local item = add(tree, F.fopen, off + 8, 4)
    if item and fl then
        for bit = 0, #FOPEN do add(item, F["fopen_" .. bit], off + 8, 4) end
        local names = flag_list(fl, FOPEN)
        if names ~= "" then item:append_text(" (" .. names .. ")") end
    end
    add(tree, F.backing_id, off + 12, 4)
    return off + 16, fh and ("fh 0x" .. fh:tohex():gsub("^0+(.)", "%1")) or nil
end

local function fhtext(off)
    local fh = u64(off)
    if not fh then return "fh ?" end
    return "fh 0x" .. fh:tohex():gsub("^0+(.)", "%1")
end

local function open_flags(tree, off)
    local fl = u32(off)
    local item = add(tree, F.open_flags, off, 4)
    if item and fl then item:append_text(" (" .. open_flags_text(fl) .. ")") end
    return fl
end

local function init_flags(tree, off, off2)
    local fl = u32(off)
    local item = add(tree, F.init_flags, off, 4)
    if item and fl then
        for bit = 0, 31 do add(item, F["initf_" .. bit], off, 4) end
    end
    if off2 then
        local item2 = add(tree, F.init_flags2, off2, 4)
        if item2 then
            for bit = 32, #INIT_FLAGS do add(item2, F["initf_" .. bit], off2, 4) end
        end
    end
    return fl
end

local function dirents(tree, off, stop, plus)
    -- READDIR: fuse_dirent {ino, off, namelen, type} + name, padded to 8
    -- READDIRPLUS: fuse_entry_out + fuse_dirent + name, padded to 8
    local count = 0
    local names = {}
    local head = plus and SIZES.fuse_direntplus or SIZES.fuse_dirent
    while off + head <= stop do
        local doff = plus and off + OFFSETS.fuse_direntplus.dirent or off
        local namelen = u32(doff + 16)
        if not namelen then break end
        local reclen = head + namelen
        reclen = reclen + (8 - reclen % 8) % 8
        if off + head + namelen > stop then break end
        local st = tree:add(F.dirent, T(off, math.max(1, math.min(reclen, CAP - off))))
        if plus then entry_out(st, off, off + ENTRY_OUT) end
        add(st, F.dirent_ino, doff, 8)
        add(st, F.dirent_off, doff + 8, 8)
        add(st, F.dirent_namelen, doff + 16, 4)
        add(st, F.dirent_type, doff + 20, 4)
        local name = nstring(st, F.dirent_name, doff + 24, namelen)
        if name then
            st:append_text(": " .. name)
            names[#names + 1] = name
        end
        count = count + 1
        off = off + reclen
        if off > CAP then break end
    end
    tree:add(F.dirent_count, count):set_generated()
    return count, names
end

---------------------------------------------------------------------------------------
-- Requests: REQUEST[opcode](tree, off, stop, tr) -> summary text
---------------------------------------------------------------------------------------

local function name_only(tree, off, stop)
    local name = cstring(tree, F.name, off, stop)
    return q(name)
end

local function read_in(tree, off)
    -- fuse_read_in (40): fh offset size read_flags lock_owner flags padding
    add(tree, F.fh, off, 8)
    add(tree, F.offset, off + 8, 8)
    add(tree, F.size, off + 16, 4)
    add(tree, F.read_flags, off + 20, 4)
    add(tree, F.lock_owner, off + 24, 8)
    open_flags(tree, off + 32)
    return string.format("%s, offset %s, size %s", fhtext(off), tostring(u64(off + 8)),
        tostring(u32(off + 16)))
end

local function release_in(tree, off)
    add(tree, F.fh, off, 8)
    open_flags(tree, off + 8)
    add(tree, F.release_flags, off + 12, 4)
    add(tree, F.lock_owner, off + 16, 8)
    return fhtext(off)
end

local function fsync_in(tree, off)
    add(tree, F.fh, off, 8)
    add(tree, F.fsync_flags, off + 8, 4)
    return fhtext(off)
end

local function lk_in(tree, off)
    add(tree, F.fh, off, 8)
    add(tree, F.lock_owner, off + 8, 8)
    add(tree, F.lk_start, off + 16, 8)
    add(tree, F.lk_end, off + 24, 8)
    add(tree, F.lk_type, off + 32, 4)
    add(tree, F.lk_pid, off + 36, 4)
    add(tree, F.lk_flags, off + 40, 4)
    local t = u32(off + 32)
    return fhtext(off) .. ", " .. (LK_TYPES[t or -1] or tostring(t))
end

local function create_like(tree, off, stop, mknod)
    -- MKNOD: mknod_in (16; 8 before 7.12): mode rdev umask padding
    -- CREATE/TMPFILE: create_in (16; 8 before 7.12): flags mode umask open_flags
    local small = conn.minor ~= nil and conn.minor < 12
    local mode
    if mknod then
        mode = u32(off)
        local mi = add(tree, F.mode, off, 4)
        add_mode_text(mi, mode)
        add(tree, F.rdev, off + 4, 4)
        if not small then add(tree, F.umask, off + 8, 4) end
    else
        open_flags(tree, off)
        mode = u32(off + 4)
        local mi = add(tree, F.mode, off + 4, 4)
        add_mode_text(mi, mode)
        if not small then
            add(tree, F.umask, off + 8, 4)
            add(tree, F.open_open_flags, off + 12, 4)
        end
    end
    local name = cstring(tree, F.name, off + (small and 8 or 16), stop)
    return q(name) .. (mode and (", mode " .. string.format("%o", mode)) or "")
end

local REQUEST = {}

REQUEST[1] = name_only -- LOOKUP
REQUEST[10] = name_only -- UNLINK
REQUEST[11] = name_only -- RMDIR

REQUEST[2] = function(tree, off) -- FORGET
    add(tree, F.forget_nlookup, off, 8)
    return "nlookup " .. tostring(u64(off))
end

REQUEST[3] = function(tree, off) -- GETATTR
    local fl = u32(off)
    add(tree, F.getattr_flags, off, 4)
    if fl and bit32.btest(fl, 1) then
        add(tree, F.fh, off + 8, 8)
        return fhtext(off + 8)
    end
    return ""
end

REQUEST[4] = function(tree, off) -- SETATTR
    local valid = u32(off)
    local item = add(tree, F.setattr_valid, off, 4)
    if not valid then return "" end
    for bit = 0, #FATTR do add(item, F["fattr_" .. bit], off, 4) end
    local names = flag_list(valid, FATTR)
    if names ~= "" then item:append_text(" (" .. names .. ")") end
    local function set(bit) return bit32.btest(valid, bit32.lshift(1, bit)) end
    local parts = { names }
    if set(6) then add(tree, F.fh, off + 8, 8) end
    if set(3) then
        add(tree, F.setattr_size, off + 16, 8)
        parts[#parts + 1] = "size " .. tostring(u64(off + 16))
    end
    if set(9) then add(tree, F.lock_owner, off + 24, 8) end
    if set(4) then add_time(tree, F.setattr_atime, off + 32, off + 56) end
    if set(5) then add_time(tree, F.setattr_mtime, off + 40, off + 60) end
    if set(10) then add_time(tree, F.setattr_ctime, off + 48, off + 64) end
    if set(0) then
        local mode = u32(off + 68)
        local mi = add(tree, F.setattr_mode, off + 68, 4)
        add_mode_text(mi, mode)
        parts[#parts + 1] = "mode " .. string.format("%o", mode or 0)
    end
    if set(1) then add(tree, F.setattr_uid, off + 76, 4) end
    if set(2) then add(tree, F.setattr_gid, off + 80, 4) end
    return table.concat(parts, ", ")
end

REQUEST[6] = function(tree, off, stop) -- SYMLINK: name, target
    local name, nxt = cstring(tree, F.name, off, stop)
    local target = cstring(tree, F.target, nxt, stop)
    return q(name) .. " -> " .. q(target)
end

REQUEST[8] = function(tree, off, stop) return create_like(tree, off, stop, true) end -- MKNOD

REQUEST[9] = function(tree, off, stop) -- MKDIR: mkdir_in {mode, umask}, name
    local mode = u32(off)
    local mi = add(tree, F.mode, off, 4)
    add_mode_text(mi, mode)
    add(tree, F.umask, off + 4, 4)
    local name = cstring(tree, F.name, off + 8, stop)
    return q(name) .. (mode and (", mode " .. string.format("%o", mode)) or "")
end

REQUEST[12] = function(tree, off, stop) -- RENAME: rename_in {newdir}, old, new
    add(tree, F.rename_newdir, off, 8)
    local old, nxt = cstring(tree, F.name, off + 8, stop)
    local new = cstring(tree, F.newname, nxt, stop)
    return string.format("%s -> %s in %s", q(old), q(new), tostring(u64(off)))
end

REQUEST[45] = function(tree, off, stop) -- RENAME2: rename2_in {newdir, flags, pad}, old, new
    add(tree, F.rename_newdir, off, 8)
    local fl = u32(off + 8)
    local item = add(tree, F.rename_flags, off + 8, 4)
    if item and fl then
        item:append_text(" (" .. flag_list(fl, { [0] = "NOREPLACE", "EXCHANGE", "WHITEOUT" })
            .. ")")
    end
    local old, nxt = cstring(tree, F.name, off + 16, stop)
    local new = cstring(tree, F.newname, nxt, stop)
    return string.format("%s -> %s in %s", q(old), q(new), tostring(u64(off)))
end

REQUEST[13] = function(tree, off, stop) -- LINK: link_in {oldnodeid}, newname
    add(tree, F.link_oldnodeid, off, 8)
    local name = cstring(tree, F.name, off + 8, stop)
    return string.format("%s -> node %s", q(name), tostring(u64(off)))
end

local function open_in(tree, off)
    local fl = open_flags(tree, off)
    add(tree, F.open_open_flags, off + 4, 4)
    return fl and open_flags_text(fl) or ""
end
REQUEST[14] = open_in -- OPEN
REQUEST[27] = open_in -- OPENDIR

REQUEST[15] = read_in -- READ
REQUEST[28] = read_in -- READDIR
REQUEST[44] = read_in -- READDIRPLUS

REQUEST[16] = function(tree, off, stop) -- WRITE: write_in (40; 24 before 7.9), data
    add(tree, F.fh, off, 8)
    add(tree, F.offset, off + 8, 8)
    add(tree, F.size, off + 16, 4)
    add(tree, F.write_flags, off + 20, 4)
    local hl = 40
    if conn.minor ~= nil and conn.minor < 9 then
        hl = 24
    else
        add(tree, F.lock_owner, off + 24, 8)
        open_flags(tree, off + 32)
    end
    add_data(tree, off + hl, stop)
    return string.format("%s, offset %s, size %s", fhtext(off), tostring(u64(off + 8)),
        tostring(u32(off + 16)))
end

REQUEST[18] = release_in -- RELEASE
REQUEST[29] = release_in -- RELEASEDIR
REQUEST[20] = fsync_in -- FSYNC
REQUEST[30] = fsync_in -- FSYNCDIR

REQUEST[21] = function(tree, off, stop) -- SETXATTR: setxattr_in (8 or 16), name, value
    local size = u32(off)
    -- 16-byte header with SETXATTR_EXT; otherwise 8. The value length tells them apart.
    local hl = 16
    if conn.setxattr_ext == false then hl = 8 end
    if conn.setxattr_ext == nil and size then
        local avail = math.min(stop, CAP) - off
        if avail > 8 then
            local nul8 = T(off, avail):raw():find("\0", 9, true)
            if nul8 and (stop - (off + nul8)) == size then hl = 8 end
        end
    end
    add(tree, F.size, off, 4)
    add(tree, F.xattr_flags, off + 4, 4)
    if hl == 16 then add(tree, F.xattr_setxattr_flags, off + 8, 4) end
    local name, nxt = cstring(tree, F.xattr_name, off + hl, stop)
    add_data(tree, nxt, stop, F.xattr_value)
    return q(name) .. ", size " .. tostring(size)
end

local function getxattr_in(tree, off, stop, tr, with_name)
    local size = u32(off)
    add(tree, F.size, off, 4)
    if tr then tr.xsize = size end
    local text = "size " .. tostring(size)
    if with_name then
        local name = cstring(tree, F.xattr_name, off + 8, stop)
        text = q(name) .. ", " .. text
    end
    return text
end
REQUEST[22] = function(tree, off, stop, tr) return getxattr_in(tree, off, stop, tr, true) end
REQUEST[23] = function(tree, off, stop, tr) return getxattr_in(tree, off, stop, tr, false) end

REQUEST[24] = function(tree, off, stop) -- REMOVEXATTR
    return q(cstring(tree, F.xattr_name, off, stop))
end

REQUEST[25] = function(tree, off) -- FLUSH: flush_in {fh, unused, padding, lock_owner}
    add(tree, F.fh, off, 8)
    add(tree, F.lock_owner, off + 16, 8)
    return fhtext(off)
end

REQUEST[26] = function(tree, off, stop) -- INIT: init_in (64; 16 before 7.36)
    local major, minor = u32(off), u32(off + 4)
    add(tree, F.init_major, off, 4)
    add(tree, F.init_minor, off + 4, 4)
    add(tree, F.init_max_readahead, off + 8, 4)
    init_flags(tree, off + 12, (stop - off >= 20) and off + 16 or nil)
    return string.format("%s.%s", tostring(major), tostring(minor))
end

REQUEST[31] = lk_in -- GETLK
REQUEST[32] = lk_in -- SETLK
REQUEST[33] = lk_in -- SETLKW

REQUEST[34] = function(tree, off) -- ACCESS
    local m = u32(off)
    local item = add(tree, F.access_mask, off, 4)
    if item and m then
        local t = flag_list(m, { [0] = "X_OK", "W_OK", "R_OK" })
        item:append_text(" (" .. (t ~= "" and t or "F_OK") .. ")")
    end
    return "mask " .. tostring(m)
end

REQUEST[35] = function(tree, off, stop) return create_like(tree, off, stop, false) end -- CREATE
REQUEST[51] = REQUEST[35] -- TMPFILE

REQUEST[36] = function(tree, off) -- INTERRUPT
    add(tree, F.interrupt_unique, off, 8)
    return "of unique " .. tostring(u64(off))
end

REQUEST[37] = function(tree, off) -- BMAP
    add(tree, F.bmap_block, off, 8)
    add(tree, F.bmap_blocksize, off + 8, 4)
    return "block " .. tostring(u64(off))
end

REQUEST[39] = function(tree, off, stop) -- IOCTL: ioctl_in, in-data
    add(tree, F.fh, off, 8)
    add(tree, F.ioctl_flags, off + 8, 4)
    add(tree, F.ioctl_cmd, off + 12, 4)
    add(tree, F.ioctl_arg, off + 16, 8)
    add(tree, F.ioctl_in_size, off + 24, 4)
    add(tree, F.ioctl_out_size, off + 28, 4)
    add_data(tree, off + 32, stop)
    return string.format("%s, cmd 0x%x", fhtext(off), u32(off + 12) or 0)
end

REQUEST[40] = function(tree, off) -- POLL
    add(tree, F.fh, off, 8)
    add(tree, F.poll_kh, off + 8, 8)
    add(tree, F.poll_flags, off + 16, 4)
    add(tree, F.poll_events, off + 20, 4)
    return fhtext(off)
end

REQUEST[41] = function(tree, off, stop) -- NOTIFY_REPLY: notify_retrieve_in (40), data
    add(tree, F.offset, off + 8, 8)
    add(tree, F.size, off + 16, 4)
    add_data(tree, off + 40, stop)
    return string.format("offset %s, size %s", tostring(u64(off + 8)), tostring(u32(off + 16)))
end

REQUEST[42] = function(tree, off, stop) -- BATCH_FORGET: count, dummy, count x forget_one
    local count = u32(off)
    add(tree, F.forget_count, off, 4)
    local p = off + 8
    local ids = {}
    for _ = 1, count or 0 do
        if p + 16 > stop or not has(p, 16) then break end
        local st = tree:add(fuse, T(p, 16), "Forget")
        add(st, F.forget_nodeid, p, 8)
        add(st, F.forget_nlookup, p + 8, 8)
        st:append_text(string.format(": nodeid %s, nlookup %s", tostring(u64(p)),
            tostring(u64(p + 8))))
        if #ids < 8 then ids[#ids + 1] = tostring(u64(p)) .. "x" .. tostring(u64(p + 8)) end
        p = p + 16
    end
    return string.format("%d entries (%s)", count or 0, table.concat(ids, " "))
end

REQUEST[43] = function(tree, off) -- FALLOCATE
    add(tree, F.fh, off, 8)
    add(tree, F.offset, off + 8, 8)
    add(tree, F.fallocate_length, off + 16, 8)
    add(tree, F.fallocate_mode, off + 24, 4)
    return string.format("%s, offset %s, length %s", fhtext(off), tostring(u64(off + 8)),
        tostring(u64(off + 16)))
end

REQUEST[46] = function(tree, off) -- LSEEK
    add(tree, F.fh, off, 8)
    add(tree, F.offset, off + 8, 8)
    add(tree, F.lseek_whence, off + 16, 4)
    return string.format("%s, offset %s, %s", fhtext(off), tostring(u64(off + 8)),
        WHENCE[u32(off + 16) or -1] or "?")
end

local function copy_in(tree, off)
    add(tree, F.fh, off, 8)
    add(tree, F.offset, off + 8, 8)
    add(tree, F.cfr_nodeid_out, off + 16, 8)
    add(tree, F.cfr_fh_out, off + 24, 8)
    add(tree, F.cfr_off_out, off + 32, 8)
    add(tree, F.cfr_len, off + 40, 8)
    add(tree, F.cfr_flags, off + 48, 8)
    return string.format("%s -> node %s, length %s", fhtext(off), tostring(u64(off + 16)),
        tostring(u64(off + 40)))
end
REQUEST[47] = copy_in
REQUEST[53] = copy_in

REQUEST[48] = function(tree, off) -- SETUPMAPPING
    add(tree, F.fh, off, 8)
    add(tree, F.offset, off + 8, 8)
    add(tree, F.map_len, off + 16, 8)
    add(tree, F.map_flags, off + 24, 8)
    add(tree, F.map_moffset, off + 32, 8)
    return fhtext(off)
end

REQUEST[49] = function(tree, off, stop) -- REMOVEMAPPING: count (4 bytes), entries
    local count = u32(off)
    add(tree, F.map_count, off, 4)
    local p = off + 4
    for _ = 1, count or 0 do
        if p + 16 > stop or not has(p, 16) then break end
        local st = tree:add(fuse, T(p, 16), "Mapping")
        add(st, F.map_moffset, p, 8)
        add(st, F.map_len, p + 8, 8)
        p = p + 16
    end
    return tostring(count) .. " entries"
end

REQUEST[52] = function(tree, off) -- STATX: statx_in
    local fl = u32(off)
    add(tree, F.getattr_flags, off, 4)
    if fl and bit32.btest(fl, 1) then add(tree, F.fh, off + 8, 8) end
    add(tree, F.statx_flags, off + 16, 4)
    add(tree, F.statx_mask, off + 20, 4)
    return string.format("mask 0x%x", u32(off + 20) or 0)
end

REQUEST[4096] = function(tree, off) -- CUSE_INIT: cuse_init_in
    add(tree, F.init_major, off, 4)
    add(tree, F.init_minor, off + 4, 4)
    add(tree, F.cuse_flags, off + 12, 4)
    return string.format("%s.%s", tostring(u32(off)), tostring(u32(off + 4)))
end

---------------------------------------------------------------------------------------
-- Replies: REPLY[opcode](tree, off, stop, tr) -> summary text
---------------------------------------------------------------------------------------

local REPLY = {}

local function entry_reply(tree, off, stop)
    local _, text = entry_out(tree, off, stop)
    return text
end
for _, op in ipairs({ 1, 6, 8, 9, 13 }) do REPLY[op] = entry_reply end

local function attr_reply(tree, off, stop)
    local _, text = attr_out(tree, off, stop)
    return text
end
REPLY[3] = attr_reply
REPLY[4] = attr_reply

REPLY[5] = function(tree, off, stop) -- READLINK: target without NUL
    return "-> " .. q(nstring(tree, F.target, off, stop - off))
end

local function open_reply(tree, off)
    local _, text = open_out(tree, off)
    return text
end
REPLY[14] = open_reply
REPLY[27] = open_reply

REPLY[15] = function(tree, off, stop) -- READ: data
    return tostring(add_data(tree, off, stop)) .. " bytes"
end

local function write_out(tree, off)
    add(tree, F.size, off, 4)
    return "size " .. tostring(u32(off))
end
REPLY[16] = write_out
REPLY[47] = write_out

REPLY[17] = function(tree, off, stop) -- STATFS: fuse_kstatfs
    add(tree, F.statfs_blocks, off, 8)
    add(tree, F.statfs_bfree, off + 8, 8)
    add(tree, F.statfs_bavail, off + 16, 8)
    add(tree, F.statfs_files, off + 24, 8)
    add(tree, F.statfs_ffree, off + 32, 8)
    add(tree, F.statfs_bsize, off + 40, 4)
    add(tree, F.statfs_namelen, off + 44, 4)
    if stop - off > 48 then add(tree, F.statfs_frsize, off + 48, 4) end
    return string.format("blocks %s, free %s", tostring(u64(off)), tostring(u64(off + 8)))
end

local function xattr_reply(tree, off, stop, tr, list)
    -- a size-0 request asks for the size only: the reply is fuse_getxattr_out (8 bytes)
    local probe = stop - off == 8 and (tr == nil or tr.xsize == 0 or tr.xsize == nil)
    if probe then
        add(tree, F.size, off, 4)
        return "size " .. tostring(u32(off))
    end
    if list then
        local names = {}
        local p = off
        while p < stop and p < CAP do
            local name, nxt = cstring(tree, F.xattr_name, p, stop)
            if name == nil or nxt == p then break end
            names[#names + 1] = name
            p = nxt
        end
        return table.concat(names, " ")
    end
    return tostring(add_data(tree, off, stop, F.xattr_value)) .. " bytes"
end
REPLY[22] = function(tree, off, stop, tr) return xattr_reply(tree, off, stop, tr, false) end
REPLY[23] = function(tree, off, stop, tr) return xattr_reply(tree, off, stop, tr, true) end

REPLY[26] = function(tree, off, stop) -- INIT: init_out (8..64)
    local major, minor = u32(off), u32(off + 4)
    add(tree, F.init_major, off, 4)
    add(tree, F.init_minor, off + 4, 4)
    if minor and not PINFO.visited then
        conn.minor = minor
        local fl = u32(off + 12)
        if fl then conn.setxattr_ext = bit32.btest(fl, bit32.lshift(1, 29)) end
    end
    if stop - off > 8 then
        add(tree, F.init_max_readahead, off + 8, 4)
        init_flags(tree, off + 12, (stop - off >= 36) and off + 32 or nil)
        add(tree, F.init_max_background, off + 16, 2)
        add(tree, F.init_congestion, off + 18, 2)
        add(tree, F.init_max_write, off + 20, 4)
    end
    if stop - off > 24 then
        add(tree, F.init_time_gran, off + 24, 4)
        add(tree, F.init_max_pages, off + 28, 2)
        add(tree, F.init_map_alignment, off + 30, 2)
        add(tree, F.init_max_stack_depth, off + 36, 4)
        add(tree, F.init_request_timeout, off + 40, 2)
    end
    local text = string.format("%s.%s", tostring(major), tostring(minor))
    if stop - off > 8 then text = text .. ", max_write " .. tostring(u32(off + 20)) end
    return text
end

REPLY[28] = function(tree, off, stop) -- READDIR
    local count, names = dirents(tree, off, stop, false)
    return string.format("%d entries (%s)", count, table.concat(names, " "))
end

REPLY[44] = function(tree, off, stop) -- READDIRPLUS
    local count, names = dirents(tree, off, stop, true)
    return string.format("%d entries (%s)", count, table.concat(names, " "))
end

REPLY[31] = function(tree, off) -- GETLK: lk_out
    add(tree, F.lk_start, off, 8)
    add(tree, F.lk_end, off + 8, 8)
    add(tree, F.lk_type, off + 16, 4)
    add(tree, F.lk_pid, off + 20, 4)
    return LK_TYPES[u32(off + 16) or -1] or "?"
end

local function create_reply(tree, off, stop)
    local nxt, text = entry_out(tree, off, math.min(stop, off + ENTRY_OUT))
    if stop - off == ENTRY_OUT_COMPAT + SIZES.fuse_open_out then nxt = off + ENTRY_OUT_COMPAT end
    local _, fh = open_out(tree, nxt)
    return (text or "") .. ", " .. (fh or "")
end
REPLY[35] = create_reply
REPLY[51] = create_reply

REPLY[37] = function(tree, off) -- BMAP
    add(tree, F.bmap_block, off, 8)
    return "block " .. tostring(u64(off))
end

REPLY[39] = function(tree, off, stop) -- IOCTL: ioctl_out + data
    add(tree, F.ioctl_result, off, 4)
    add(tree, F.ioctl_flags, off + 4, 4)
    add(tree, F.ioctl_in_iovs, off + 8, 4)
    add(tree, F.ioctl_out_iovs, off + 12, 4)
    add_data(tree, off + 16, stop)
    return "result " .. tostring(i32(off))
end

REPLY[40] = function(tree, off) -- POLL
    add(tree, F.poll_revents, off, 4)
    return string.format("revents 0x%x", u32(off) or 0)
end

REPLY[46] = function(tree, off) -- LSEEK
    add(tree, F.offset, off, 8)
    return "offset " .. tostring(u64(off))
end

REPLY[52] = function(tree, off) -- STATX: statx_out {attr_valid, nsec, flags, spare[2], statx}
    add_valid(tree, F.attr_valid, off, off + 8)
    local s = off + 32
    add(tree, F.statx_mask, s, 4)
    add(tree, F.statx_blksize, s + 4, 4)
    add(tree, F.statx_nlink, s + 16, 4)
    add(tree, F.statx_uid, s + 20, 4)
    add(tree, F.statx_gid, s + 24, 4)
    local mode = u16(s + 28)
    local mi = add(tree, F.statx_mode, s + 28, 2)
    add_mode_text(mi, mode)
    add(tree, F.statx_ino, s + 32, 8)
    add(tree, F.statx_size, s + 40, 8)
    add(tree, F.statx_blocks, s + 48, 8)
    return "size " .. tostring(u64(s + 40))
end

REPLY[53] = function(tree, off) -- COPY_FILE_RANGE_64
    add(tree, F.cfr_copied, off, 8)
    return tostring(u64(off)) .. " bytes"
end

REPLY[4096] = function(tree, off, stop) -- CUSE_INIT: cuse_init_out (72) + device info
    add(tree, F.init_major, off, 4)
    add(tree, F.init_minor, off + 4, 4)
    add(tree, F.cuse_flags, off + 12, 4)
    add(tree, F.cuse_max_read, off + 16, 4)
    add(tree, F.init_max_write, off + 20, 4)
    add(tree, F.cuse_dev_major, off + 24, 4)
    add(tree, F.cuse_dev_minor, off + 28, 4)
    local p = off + 72
    local info = {}
    while p < stop and p < CAP do
        local s, nxt = cstring(tree, F.cuse_info, p, stop)
        if s == nil or nxt == p then break end
        if s ~= "" then info[#info + 1] = s end
        p = nxt
    end
    return table.concat(info, " ")
end

---------------------------------------------------------------------------------------
-- Notifications: NOTIFY[code](tree, off, stop) -> summary text
---------------------------------------------------------------------------------------

local NOTIFY = {}

NOTIFY[1] = function(tree, off) -- POLL
    add(tree, F.poll_kh, off, 8)
    return "kh " .. tostring(u64(off))
end

NOTIFY[2] = function(tree, off) -- INVAL_INODE
    add(tree, F.notify_nodeid, off, 8)
    add(tree, F.notify_off, off + 8, 8)
    add(tree, F.notify_len, off + 16, 8)
    return string.format("nodeid %s, off %s, len %s", tostring(u64(off)), tostring(i64(off + 8)),
        tostring(i64(off + 16)))
end

NOTIFY[3] = function(tree, off, stop) -- INVAL_ENTRY
    add(tree, F.notify_parent, off, 8)
    add(tree, F.notify_namelen, off + 8, 4)
    add(tree, F.notify_flags, off + 12, 4)
    local name = cstring(tree, F.name, off + 16, stop)
    return string.format("parent %s, %s", tostring(u64(off)), q(name))
end

NOTIFY[4] = function(tree, off, stop) -- STORE
    add(tree, F.notify_nodeid, off, 8)
    add(tree, F.offset, off + 8, 8)
    add(tree, F.size, off + 16, 4)
    add_data(tree, off + 24, stop)
    return string.format("nodeid %s, offset %s, size %s", tostring(u64(off)),
        tostring(u64(off + 8)), tostring(u32(off + 16)))
end

NOTIFY[5] = function(tree, off) -- RETRIEVE
    add(tree, F.notify_unique, off, 8)
    add(tree, F.notify_nodeid, off + 8, 8)
    add(tree, F.offset, off + 16, 8)
    add(tree, F.size, off + 24, 4)
    return string.format("nodeid %s, offset %s, size %s, notify_unique %s",
        tostring(u64(off + 8)), tostring(u64(off + 16)), tostring(u32(off + 24)),
        tostring(u64(off)))
end

NOTIFY[6] = function(tree, off, stop) -- DELETE
    add(tree, F.notify_parent, off, 8)
    add(tree, F.notify_child, off + 8, 8)
    add(tree, F.notify_namelen, off + 16, 4)
    local name = cstring(tree, F.name, off + 24, stop)
    return string.format("parent %s, child %s, %s", tostring(u64(off)), tostring(u64(off + 8)),
        q(name))
end

NOTIFY[9] = function(tree, off, stop) -- PRUNE: count, padding, spare, nodeids
    local count = u32(off)
    add(tree, F.notify_count, off, 4)
    local p = off + 16
    for _ = 1, count or 0 do
        if p + 8 > stop or not has(p, 8) then break end
        add(tree, F.notify_nodeid, p, 8)
        p = p + 8
    end
    return tostring(count) .. " nodes"
end

---------------------------------------------------------------------------------------
-- Frame dissection
---------------------------------------------------------------------------------------

-- seconds since the first frame; differences of these stay exact to the nanosecond for
-- captures of any practical length (frame.time is not available in every pass)
local function frame_time()
    return PINFO.rel_ts
end

local function nstime(secs)
    local whole = math.floor(secs)
    local ns = math.floor((secs - whole) * 1e9 + 0.5)
    if ns >= 1000000000 then whole, ns = whole + 1, ns - 1000000000 end
    return NSTime.new(whole, ns)
end

-- Byte order of this frame: the len field must equal the frame's length.
local function little_endian(tvb, wire)
    local pref = byte_order_pref
    if pref == BO_LITTLE then return true end
    if pref == BO_BIG then return false end
    if tvb(0, 4):le_uint() == wire then return true end
    if tvb(0, 4):uint() == wire then return false end
    return true
end

-- Direction: pcapng epb_flags (pinfo.p2p_dir: 1 = inbound, 0 = outbound), else the header
-- heuristic of fusetrace.capture.pcapng.guess_direction.
local function is_request(pinfo)
    if pinfo.p2p_dir == 1 then return true end
    if pinfo.p2p_dir == 0 then return false end
    if CAP < 40 then return false end
    local second = u32(4)
    if second == 0 or second >= 0x80000000 then return false end
    if T(8, 8):uint64() == ZERO64 then return false end
    return true
end

local function body_tree(root, off, stop, label)
    local n = math.min(stop, CAP) - off
    if n <= 0 then return root end
    return root:add(fuse, T(off, n), label)
end

local function dissect_request(tvb, pinfo, root, wire)
    local opcode = u32(4)
    local unique = u64(8)
    local nodeid = u64(16)
    local extlen = u16(36) or 0
    local name = OPCODES[opcode] or string.format("opcode %d", opcode)
    root:add(F.type, 1):set_generated()
    local hdr = root:add(fuse, T(0, 40), "In header")
    add(hdr, F.len, 0, 4)
    add(hdr, F.opcode, 4, 4)
    add(hdr, F.unique, 8, 8)
    add(hdr, F.nodeid, 16, 8)
    add(hdr, F.uid, 24, 4)
    add(hdr, F.gid, 28, 4)
    add(hdr, F.pid, 32, 4)
    add(hdr, F.total_extlen, 36, 2)
    add(hdr, F.hpadding, 38, 2)
    local ustr, nstr = tostring(unique), tostring(nodeid)
    hdr:append_text(string.format(": %s, unique %s, nodeid %s", name, ustr, nstr))
    if unique:higher() >= 0x80000000 then root:add(F.resend, true):set_generated() end

    -- pairing
    local key = ustr
    local tr
    if not pinfo.visited then
        tr = { op = opcode, req = pinfo.number, t = frame_time() }
        by_frame[pinfo.number] = tr
        if not NO_REPLY[opcode] then by_unique[key] = tr end
    else
        tr = by_frame[pinfo.number]
    end
    if tr and tr.rep then
        root:add(F.response_in, tr.rep):set_generated()
    end

    -- body: arguments, then the extension block (total_extlen x 8 bytes)
    local stop = wire - extlen * 8
    if stop < 40 then stop = wire end
    local text = ""
    local decoder = REQUEST[opcode]
    if wire > 40 or decoder then
        local bt = body_tree(root, 40, stop, name)
        if decoder then
            text = decoder(bt, 40, stop, tr) or ""
        elseif stop > 40 and has(40, 1) then
            bt:add(F.payload, T(40, math.min(stop, CAP) - 40))
        end
    end
    if stop < wire and has(stop, 1) then
        root:add(F.ext, T(stop, math.min(wire, CAP) - stop))
    end
    local info = string.format("%s Request unique %s", name, ustr)
    if nstr ~= "0" then info = info .. ", nodeid " .. nstr end
    if text ~= "" then info = info .. ", " .. text end
    root:append_text(", " .. info)
    pinfo.cols.info = info
    pinfo.cols.src = "kernel"
    pinfo.cols.dst = "daemon"
end

local function dissect_reply(tvb, pinfo, root, wire)
    local err = i32(4)
    local unique = u64(8)
    local key = tostring(unique)
    pinfo.cols.src = "daemon"
    pinfo.cols.dst = "kernel"
    root:add(F.type, key == "0" and 3 or 2):set_generated()
    local hdr = root:add(fuse, T(0, 16), "Out header")
    add(hdr, F.len, 0, 4)

    if key == "0" then
        -- notification: the error field holds the notify code
        local code = u32(4)
        local name = NOTIFY_CODES[code] or string.format("code %d", code)
        add(hdr, F.notify_code, 4, 4)
        add(hdr, F.unique, 8, 8)
        hdr:append_text(": notification " .. name)
        local text = ""
        local decoder = NOTIFY[code]
        if wire > 16 or decoder then
            local bt = body_tree(root, 16, wire, name)
            if decoder then
                text = decoder(bt, 16, wire) or ""
            elseif has(16, 1) then
                bt:add(F.payload, T(16, math.min(wire, CAP) - 16))
            end
        end
        local info = "Notify " .. name
        if text ~= "" then info = info .. ", " .. text end
        root:append_text(", " .. info)
        pinfo.cols.info = info
        return
    end

    add(hdr, F.error, 4, 4)
    add(hdr, F.unique, 8, 8)

    -- pairing
    local tr, dup
    if not pinfo.visited then
        tr = by_unique[key]
        if tr then
            if tr.rep then
                dup = tr.rep
                by_frame[pinfo.number] = { dup = tr }
            else
                tr.rep = pinfo.number
                local now = frame_time()
                if tr.t and now then tr.delta = nstime(now - tr.t) end
                by_frame[pinfo.number] = tr
            end
        end
    else
        local entry = by_frame[pinfo.number]
        if entry and entry.dup then
            tr, dup = entry.dup, entry.dup.rep
        else
            tr = entry
        end
    end

    local opcode = tr and tr.op
    local name = opcode and (OPCODES[opcode] or string.format("opcode %d", opcode))
    if opcode then
        root:add(F.opcode, opcode):set_generated()
        root:add(F.request_in, tr.req):set_generated()
        if tr.delta and not dup then root:add(F.time, tr.delta):set_generated() end
    else
        root:add_proto_expert_info(E.unpaired)
        name = "Unknown"
    end
    if dup then
        local item = root:add(F.duplicate_of, dup)
        item:set_generated()
        item:add_proto_expert_info(E.duplicate)
    end
    if bit32.btest(unique:lower(), 1) then
        root:add(F.interrupt_reply, true):set_generated()
    end
    hdr:append_text(string.format(": %s, unique %s, error %s", name, key,
        errname(err)))

    local info = string.format("%s Reply unique %s", name, key)
    if err ~= 0 then
        info = info .. ", error " .. errname(err)
        root:add_proto_expert_info(E.error, "Error reply: " .. errname(err))
        if wire > 16 and has(16, 1) then
            root:add(F.payload, T(16, math.min(wire, CAP) - 16))
        end
    elseif wire > 16 then
        local decoder = opcode and REPLY[opcode]
        local bt = body_tree(root, 16, wire, name)
        if decoder then
            local text = decoder(bt, 16, wire, tr) or ""
            if text ~= "" then info = info .. ", " .. text end
        elseif has(16, 1) then
            bt:add(F.payload, T(16, math.min(wire, CAP) - 16))
        end
    end
    root:append_text(", " .. info)
    pinfo.cols.info = info
end

function fuse.dissector(tvb, pinfo, tree)
    local wire = tvb:reported_len()
    T, CAP, PINFO = tvb, tvb:len(), pinfo
    pinfo.cols.protocol = "FUSE"
    local root = tree:add(fuse, tvb())
    if CAP < 16 then
        root:add_proto_expert_info(E.malformed, "Frame shorter than a FUSE header")
        pinfo.cols.info = "Malformed FUSE frame"
        return CAP
    end
    LE = little_endian(tvb, wire)
    if u32(0) ~= wire then
        root:add_proto_expert_info(E.malformed,
            string.format("Header length %d differs from the frame length %d", u32(0), wire))
    end
    if CAP < wire then root:add_proto_expert_info(E.snapped) end
    if is_request(pinfo) then
        if CAP < 40 then
            root:add_proto_expert_info(E.malformed, "Request shorter than fuse_in_header")
            pinfo.cols.info = "Malformed FUSE request"
            return CAP
        end
        dissect_request(tvb, pinfo, root, wire)
    else
        dissect_reply(tvb, pinfo, root, wire)
    end
    return CAP
end

DissectorTable.get("wtap_encap"):add(wtap_encaps.USER0, fuse)
