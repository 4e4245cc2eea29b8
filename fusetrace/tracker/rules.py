"""The rule catalogue: every check the tracker makes, as data (design.md §5).

Codes are stable and grouped by family like ruff's: ``FT1xx`` ids and pairing, ``FT2xx``
lifecycle (lookup counts, file handles), ``FT3xx`` framing and sizes, ``FT4xx`` INIT and
versions, ``FT5xx`` notifications and interrupts. ``fusetrace explain CODE`` prints a rule's
``doc``; section numbers refer to the project's protocol reference (docs/protocol.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from fusetrace.tracker.findings import Culprit, Severity

E, W, N = Severity.ERROR, Severity.WARNING, Severity.INFO
D, K, C = Culprit.DAEMON, Culprit.KERNEL, Culprit.CAPTURE

FAMILIES: dict[str, str] = {
    "FT1": "ids and reply pairing",
    "FT2": "lifecycle: lookup counts and file handles",
    "FT3": "framing and sizes",
    "FT4": "INIT and versions",
    "FT5": "notifications and interrupts",
}


@dataclass(frozen=True, slots=True)
class Rule:
    code: str
    name: str
    severity: Severity
    culprit: Culprit
    title: str
    doc: str

    @property
    def family(self) -> str:
        return self.code[:3]


def _r(code: str, name: str, sev: Severity, culprit: Culprit, title: str, doc: str) -> Rule:
    return Rule(code, name, sev, culprit, title, " ".join(doc.split()))


_CATALOGUE: tuple[Rule, ...] = (
    # ---- FT1: ids and pairing -----------------------------------------------------------
    _r(
        "FT101",
        "reply-unknown-unique",
        E,
        D,
        "reply to a request that is not outstanding",
        """
        The daemon wrote a reply whose unique (bit 0 masked) matches no request read from
        /dev/fuse that is still waiting for an answer. The kernel looks the id up in the
        processing table of the file descriptor the reply is written to, finds nothing and
        fails the write() with ENOENT; nothing else happens, and the request the daemon meant
        to answer (if any) keeps its caller waiting. docs/protocol.md §5.3 (W6).""",
    ),
    _r(
        "FT102",
        "duplicate-reply",
        E,
        D,
        "second reply to the same request",
        """
        A request was answered twice. The kernel removes a request from its processing
        table when the first reply is accepted, so the second write() finds nothing and
        fails with ENOENT. Usually a daemon bug in error paths (reply sent, then an error
        reply sent again). docs/protocol.md §5.3 (W6, W8).""",
    ),
    _r(
        "FT103",
        "request-id-odd-or-zero",
        E,
        K,
        "request with an odd or zero unique",
        """
        Ordinary request ids come from a per-connection counter advanced by 2 (since Linux
        4.20), so they are even and non-zero; only INTERRUPT has an odd id (the target's id
        with bit 0 set) and only NOTIFY_REPLY carries a daemon-chosen id. A request with an
        odd or zero id points at a damaged capture or a changed kernel; the daemon would
        answer it under an id the kernel masks differently. docs/protocol.md §5.1.""",
    ),
    _r(
        "FT104",
        "request-id-reused",
        E,
        K,
        "request id reused while still outstanding",
        """
        The kernel sent a request whose id is still outstanding (read, not yet answered) on
        the same connection. The processing table hashes requests by id, so two live
        requests with one id cannot be told apart: the daemon's reply completes only one of
        them. Ids are unique per connection while in flight. docs/protocol.md §5.1, §5.2.""",
    ),
    _r(
        "FT105",
        "init-not-unique-2",
        W,
        K,
        "INIT does not carry unique 2",
        """
        On a fresh connection INIT is the first id handed out and therefore has unique 2.
        Another value means the capture did not start at mount time, frames are missing,
        or the kernel allocates ids differently (io_uring, resend). docs/protocol.md §4.1,
        §5.1.""",
    ),
    _r(
        "FT106",
        "reply-to-no-reply-message",
        E,
        D,
        "reply to FORGET, BATCH_FORGET or NOTIFY_REPLY",
        """
        FORGET, BATCH_FORGET and NOTIFY_REPLY are finished by the kernel as soon as the
        daemon reads them; they never enter the processing table. A reply to one fails with
        ENOENT. libfuse never replies to them; a daemon that does is confused about which
        operations expect answers. docs/protocol.md §2 (kind NR), §5.2.""",
    ),
    _r(
        "FT107",
        "interrupt-reply-with-payload",
        E,
        D,
        "interrupt reply with a payload",
        """
        A reply with bit 0 of unique set answers an INTERRUPT, and may only be a bare
        16-byte header (error EAGAIN to have the interrupt re-sent, ENOSYS to stop all
        interrupts, anything else ignored). With a payload the kernel fails the write()
        with EINVAL; the target request is untouched and still needs its own reply.
        docs/protocol.md §5.3 (W7), §5.4.""",
    ),
    _r(
        "FT108",
        "interrupt-reply-after-target",
        W,
        D,
        "interrupt reply after its target was answered",
        """
        The daemon answered an INTERRUPT after it had already answered the interrupted
        request. The kernel finds no request with that id and fails the write() with ENOENT;
        nothing else happens. This is a race more than a bug, and the common libraries do it
        by design: the kernel's documentation tells a daemon to answer EAGAIN to an
        interrupt whose target it is not working on, libfuse parks such an interrupt and
        answers it EAGAIN with its next request, and go-fuse answers it EAGAIN after a short
        wait and ignores the ENOENT. Expect this warning whenever callers are interrupted
        (signals during I/O) on libfuse and go-fuse daemons. docs/protocol.md §5.4, §5.6
        note.""",
    ),
    _r(
        "FT109",
        "reply-without-resend-bit",
        E,
        D,
        "reply to a resent request under its old id",
        """
        After a NOTIFY_RESEND notification the kernel moves every request the daemon had
        read back to the pending queue, sets bit 63 (FUSE_UNIQUE_RESEND) in each id and
        delivers them again. Replies must echo the new id; a reply with the old id (bit 63
        clear) finds nothing and fails with ENOENT, and the resent request still waits.
        docs/protocol.md §5.1, §5.5.""",
    ),
    _r(
        "FT110",
        "reply-on-wrong-channel",
        E,
        D,
        "reply written to another /dev/fuse descriptor than the request's",
        """
        Each cloned /dev/fuse descriptor (FUSE_DEV_IOC_CLONE) has its own processing table.
        A reply is searched only in the table of the descriptor it is written to, so a reply
        on another descriptor fails with ENOENT and the request keeps waiting. Every reply,
        interrupt replies included, must go to the descriptor that delivered the request.
        docs/protocol.md §5.2, §9.2.""",
    ),
    _r(
        "FT111",
        "request-never-answered",
        N,
        D,
        "request still unanswered at end of capture",
        """
        The capture ends while requests read by the daemon are still waiting for a reply.
        This is normal when recording stops before unmount, but a request that stays
        unanswered for the rest of a long capture usually means a lost reply: its caller is
        still blocked (uninterruptibly, once the daemon has read the request). Reported as
        information. docs/protocol.md §5.4, §7.3.""",
    ),
    _r(
        "FT112",
        "request-older-than-timeout",
        W,
        D,
        "request unanswered for longer than the negotiated request timeout",
        """
        With FUSE_REQUEST_TIMEOUT (7.43, Linux 6.15) the daemon sets a request timeout in
        its INIT reply. A request older than that anywhere in the kernel's queues makes the
        kernel abort the whole connection (checked about every 15 s): every pending request
        fails with ECONNABORTED and the mount is dead. Judged from the capture's timestamps
        (request to reply, or to the last frame), never from the clock. docs/protocol.md §4.2,
        §10 (24).""",
    ),
    _r(
        "FT113",
        "reply-refused",
        E,
        D,
        "the kernel refused a reply",
        """
        The recorder wrote this reply to /dev/fuse and the kernel's write() failed with the
        errno named in the finding (the capture stores the kernel's answer per frame). The
        kernel checks a reply in a fixed order: length, error range, the id in this file
        descriptor's processing table, then the body (EINVAL, ENOENT, the request failing
        with EIO). Reported only when no other rule already explains the refusal at that
        frame; a late interrupt reply refused with ENOENT is FT108. docs/protocol.md §5.3
        (W1-W9), §10 (5).""",
    ),
    _r(
        "FT114",
        "reply-after-request-ended",
        N,
        K,
        "a reply the kernel refused because it had already ended the request",
        """
        The daemon answered a request that was still outstanding in the capture, and the
        kernel refused the reply with ENOENT: it no longer had the request in its processing
        table. The kernel ends every request it still holds when the connection ends (an
        unmount, fuse_conn_destroy() then fuse_abort_conn(); a write after that finds no
        request and fails with ENOENT), so a background request such as a RELEASE can be
        overtaken by the unmount. Natively the daemon's write fails the same way (libfuse
        ignores it); the daemon did nothing wrong. Any other refusal is FT113.
        docs/protocol.md §5.3 (W6).""",
    ),
    # ---- FT2: lifecycle --------------------------------------------------------------------
    _r(
        "FT201",
        "forget-exceeds-lookups",
        E,
        K,
        "FORGET count larger than the lookups the daemon handed out",
        """
        The kernel counts one lookup for every entry reply it accepts with a non-zero node
        id (LOOKUP, MKNOD, MKDIR, SYMLINK, LINK, CREATE, TMPFILE and each READDIRPLUS entry
        but '.' and '..') and sends FORGET/BATCH_FORGET with exactly the counts it holds.
        A FORGET for more than was handed out means the model (or the capture) is wrong: a
        daemon following libfuse's contract would drop a count below zero. docs/protocol.md
        §7.1.""",
    ),
    _r(
        "FT202",
        "request-names-forgotten-nodeid",
        E,
        K,
        "request names a node id the kernel already forgot",
        """
        Once FORGET has returned all lookups of a node id, the id is dead until a new entry
        reply revives it; the daemon may have freed the inode. A later request naming it (in
        the header's nodeid) is a kernel-side anomaly or a missing frame in the capture.
        docs/protocol.md §7.1.""",
    ),
    _r(
        "FT203",
        "request-names-unknown-nodeid",
        E,
        K,
        "request names a node id that was never announced",
        """
        Every node id the kernel uses, except the root (1), was first handed out by the
        daemon in an entry reply (LOOKUP, creation ops, READDIRPLUS). A request naming an id
        never seen in an accepted entry reply means the capture started late, lost frames,
        or the kernel invented an id. docs/protocol.md §7.1.""",
    ),
    _r(
        "FT204",
        "entry-reply-bad-nodeid",
        E,
        D,
        "entry reply with node id 0 or 1 where that is not allowed",
        """
        A creation reply (MKNOD, MKDIR, SYMLINK, LINK, CREATE, TMPFILE) must carry a new,
        non-zero node id other than the root's; a LOOKUP of a name must not return the root
        (1). The kernel rejects such replies: the syscall fails with EIO and no lookup is
        counted, so a daemon that already counted one leaks it. (A LOOKUP returning 0 is a
        valid negative entry.) docs/protocol.md §7.1.""",
    ),
    _r(
        "FT205",
        "entry-reply-bad-type",
        E,
        D,
        "entry reply with an invalid file type or the wrong one",
        """
        The mode in an entry reply must be one of the seven file types, and a creation reply
        must return the type that was asked for (MKDIR a directory, SYMLINK a symlink,
        CREATE and TMPFILE a regular file, MKNOD the requested type); the size must not
        exceed LLONG_MAX. The kernel rejects the reply (EIO to the caller) and counts no
        lookup. docs/protocol.md §7.1.""",
    ),
    _r(
        "FT206",
        "generation-reuse",
        E,
        D,
        "node id reused with a different generation while its inode is live",
        """
        (nodeid, generation) must be unique for the life of the filesystem. If an entry
        reply returns a node id the kernel still holds with another generation while the
        old inode is still live under a name, the kernel marks the cached inode bad
        (fuse_iget -> fuse_stale_inode: every open descriptor of a live file gets EIO) and
        creates a new one. A LINK reply that forgets the generation (0 for a node at
        generation 1 or more) is the classic case. The same reuse after the old inode's
        last name was removed is how daemons recycle ids: FT217, information only.
        docs/protocol.md §7.1, §10 (17).""",
    ),
    _r(
        "FT207",
        "file-type-change",
        E,
        D,
        "file type of a node id changed",
        """
        An entry or attribute reply gives a node id a different file type than earlier
        replies while the kernel still holds it. The kernel marks the inode bad: every later
        operation on it fails with EIO. (A new type together with a new generation after
        the old inode's last name was removed is a recycled id, FT217.) docs/protocol.md
        §7.1, §10 (17).""",
    ),
    _r(
        "FT208",
        "fh-never-returned",
        E,
        K,
        "request uses a file handle the daemon never returned",
        """
        File handles are chosen by the daemon in OPEN, OPENDIR, CREATE and TMPFILE replies
        and echoed by the kernel in I/O requests and finally in RELEASE/RELEASEDIR. A
        request using a handle that was never returned (and that is not 0 in no-open mode)
        is a kernel-side anomaly or a capture that started late. docs/protocol.md §7.2.""",
    ),
    _r(
        "FT209",
        "fh-used-after-release",
        E,
        K,
        "request uses a released file handle",
        """
        The kernel sends RELEASE only after the last user and all asynchronous I/O on a
        handle are gone, so no request may name the handle afterwards (until the daemon
        hands the same value out again). docs/protocol.md §7.2.""",
    ),
    _r(
        "FT210",
        "second-release",
        E,
        K,
        "file handle released twice",
        """
        Exactly one RELEASE (RELEASEDIR) is sent per successful OPEN/CREATE/TMPFILE
        (OPENDIR). A second RELEASE of a handle that is no longer open would make a daemon
        free its state twice. docs/protocol.md §7.2.""",
    ),
    _r(
        "FT211",
        "release-in-no-open-mode",
        E,
        K,
        "RELEASE for a handle opened in no-open mode",
        """
        After the daemon answers OPEN (OPENDIR) with ENOSYS the kernel opens files without
        messages, uses fh 0 and sends no RELEASE (RELEASEDIR) for those opens. A RELEASE
        for a handle that no OPEN reply returned, after no-open mode began, contradicts this.
        docs/protocol.md §7.2.""",
    ),
    _r(
        "FT212",
        "enosys-op-sent-again",
        W,
        K,
        "operation sent again after the daemon answered ENOSYS",
        """
        For many operations (OPEN, OPENDIR, FLUSH, FSYNC, the xattr family, ACCESS, LINK,
        INTERRUPT, LSEEK, FALLOCATE, COPY_FILE_RANGE, STATX, ...) the kernel remembers an
        ENOSYS reply for the life of the connection and stops sending the operation. Seeing
        it again means the model differs from the kernel that produced the capture.
        docs/protocol.md §2 (ENOSYS list), §5.4.""",
    ),
    _r(
        "FT213",
        "lookups-held-at-end",
        N,
        C,
        "lookup counts still held at end of capture",
        """
        At the end of the capture the kernel still holds lookup counts on some node ids.
        This is expected: the kernel sends no FORGETs at unmount (the daemon must treat all
        counts as dropped), and a capture may end before unmount. Listed to help find leaks
        in long captures. docs/protocol.md §7.1, §7.3.""",
    ),
    _r(
        "FT214",
        "handles-open-at-end",
        N,
        C,
        "file handles still open at end of capture",
        """
        At the end of the capture some file handles have not been released. Normal if
        recording stopped while files were open or before unmount; RELEASE is sent in the
        background and may come after the close() that caused it. docs/protocol.md §7.2,
        §7.3.""",
    ),
    _r(
        "FT215",
        "fh-wrong-node-or-kind",
        E,
        K,
        "request names a handle with another node's id or of the other kind",
        """
        A handle is (nodeid, fh, kind), not the bare fh: the kernel keeps the daemon's fh in a
        struct fuse_file together with the node it was opened on, and every request that
        carries the fh carries that node's id (fuse_prepare_release, fuse_read_args_fill;
        COPY_FILE_RANGE's fh_out goes with nodeid_out). File handles (OPEN, CREATE, TMPFILE)
        and directory handles (OPENDIR) are separate: READ, WRITE, RELEASE, ... name only a
        file handle, READDIR(PLUS), FSYNCDIR and RELEASEDIR only a directory handle (IOCTL
        either). An fh that is open, but only on another node or as the other kind, is a
        frame the kernel cannot send; it is blamed on that frame and changes no handle, so
        later valid uses of the real handle are not reported. docs/protocol.md §7.2, §10
        (19).""",
    ),
    _r(
        "FT216",
        "readdirplus-entry-rejected",
        E,
        D,
        "READDIRPLUS entry the kernel rejects (node id 1 or invalid attributes)",
        """
        Each READDIRPLUS entry other than '.' and '..' with a non-zero node id is linked into
        the dcache (fuse_direntplus_link). Node id 1 is the root and cannot be a directory
        entry (invalid_nodeid gives EIO), and attributes with an invalid file type or a size
        above LLONG_MAX are rejected likewise (fuse_invalid_attr); parse_dirplusfile then
        sends FORGET(nodeid, 1) for the entry, even FORGET(1, 1). The entry never appears as
        an inode; the same fault in a LOOKUP reply is FT204/FT205. Reported at the reply.
        docs/protocol.md §7.1, §8.1, §10 (16).""",
    ),
    _r(
        "FT217",
        "nodeid-recycled",
        N,
        D,
        "node id reused with a new generation after its last name was removed",
        """
        An entry reply names a node id the kernel still holds, with another generation (and
        possibly another file type), after the old inode's last name was unlinked, removed
        or renamed over. The kernel treats the old inode as stale (fuse_iget ->
        fuse_stale_inode, 5.14): it is made bad and unhashed and a new inode is created;
        only descriptors still open on the removed file see EIO. This is how libfuse's
        passthrough_hp recycles ids (libfuse's test_syscalls -u checks it), so it is
        information only. Lookup counts belong to the (nodeid, generation) pair; the old
        inode's count is still forgotten under the same node id. The same reuse while the
        old inode is still live under a name is FT206. docs/protocol.md §7.1, §10 (17).""",
    ),
    # ---- FT3: framing and sizes -----------------------------------------------------------
    _r(
        "FT301",
        "reply-too-short",
        E,
        D,
        "daemon message shorter than the 16-byte header",
        """
        Every daemon → kernel message starts with the 16-byte fuse_out_header. A shorter
        write() fails with EINVAL and has no effect: the request the daemon meant to
        answer stays pending. docs/protocol.md §5.3 (W2).""",
    ),
    _r(
        "FT302",
        "out-len-mismatch",
        E,
        D,
        "out.len differs from the bytes written",
        """
        The len field of fuse_out_header must equal the number of bytes written in the one
        write(). Otherwise the kernel fails the write() with EINVAL and ignores it; the
        request it meant to answer stays pending and its caller keeps waiting. docs/protocol.md
        §1, §5.3 (W3).""",
    ),
    _r(
        "FT303",
        "request-too-short",
        E,
        C,
        "kernel message shorter than the 40-byte header",
        """
        Every kernel → daemon message starts with the 40-byte fuse_in_header; the kernel
        never sends less. A shorter frame means the capture is damaged (or its snap length
        is below 40). docs/protocol.md §1.""",
    ),
    _r(
        "FT304",
        "in-len-mismatch",
        E,
        C,
        "in.len differs from the frame length",
        """
        The len field of fuse_in_header counts the whole message. A frame whose original
        length differs from in.len was cut or merged by the recorder, or the capture is
        damaged. docs/protocol.md §1.""",
    ),
    _r(
        "FT305",
        "error-out-of-range",
        E,
        D,
        "reply error positive or at/below -512",
        """
        out.error must be 0 or a negative errno greater than -512 (-512 is ERESTARTSYS, and
        kernel-internal errnos must not leak; the bound was -1000 before Linux 5.14). The
        kernel fails the write() with EINVAL and leaves the request pending, so the caller
        keeps waiting for a proper reply. docs/protocol.md §5.3 (W5).""",
    ),
    _r(
        "FT306",
        "error-reply-with-payload",
        E,
        D,
        "error reply carries a payload",
        """
        A reply with a non-zero error must be the bare 16-byte header. The kernel fails the
        write() with EINVAL and completes the request with EIO, so the caller sees EIO
        instead of the intended error. docs/protocol.md §5.3 (W8).""",
    ),
    _r(
        "FT307",
        "fixed-reply-wrong-size",
        E,
        D,
        "fixed-size reply with the wrong size",
        """
        Operations with a fixed reply (entry_out, attr_out, open_out, statfs_out, write_out,
        lk_out, bmap_out, poll_out, lseek_out, statx_out, entry_out+open_out, ...) must
        reply with exactly that size (or the compat size of the negotiated minor). The
        kernel fails the write() with EINVAL and the caller gets EIO. A header-only success
        reply to LOOKUP, GETATTR or OPEN is the common case; an empty reply is valid only
        for operations without reply data. docs/protocol.md §5.3 (W8), §8.2.""",
    ),
    _r(
        "FT308",
        "variable-reply-too-long",
        E,
        D,
        "variable-size reply longer than the kernel asked for",
        """
        Replies whose size the kernel bounds (READ, READDIR, READDIRPLUS ≤ read_in.size,
        READLINK < page size, GETXATTR/LISTXATTR ≤ size, IOCTL ≤ 16 + out_size, INIT ≤ 64
        bytes) must not be longer. The kernel fails the write() with EINVAL and the request
        completes with EIO. A daemon whose xattr value is larger must reply ERANGE.
        docs/protocol.md §5.3 (W8), §8.2.""",
    ),
    _r(
        "FT309",
        "xattr-probe-wrong-shape",
        E,
        D,
        "GETXATTR/LISTXATTR size probe not answered with fuse_getxattr_out",
        """
        GETXATTR and LISTXATTR with size 0 ask 'how big is it?'; the reply must be exactly
        the 8-byte fuse_getxattr_out holding the length. Data (or nothing) instead makes the
        write() fail with EINVAL and the caller get EIO. docs/protocol.md §2, §8.2.""",
    ),
    _r(
        "FT310",
        "write-size-exceeds-request",
        E,
        D,
        "WRITE reply claims more bytes than were sent",
        """
        write_out.size must not exceed write_in.size. The kernel accepts the write() but
        fails the request with EIO, so the caller's write(2) fails. docs/protocol.md §5.3
        (size limits above the transport), §8.2.""",
    ),
    _r(
        "FT311",
        "copy-range-exceeds-len",
        E,
        D,
        "COPY_FILE_RANGE reply copies more than asked",
        """
        The byte count in a COPY_FILE_RANGE (write_out.size) or COPY_FILE_RANGE_64
        (bytes_copied) reply must not exceed copy_file_range_in.len. The kernel accepts the
        write() but fails the request with EIO. docs/protocol.md §5.3.""",
    ),
    _r(
        "FT312",
        "malformed-listxattr",
        E,
        D,
        "LISTXATTR data is not a list of names",
        """
        A LISTXATTR reply with data must be a sequence of non-empty NUL-terminated names.
        Otherwise the kernel fails listxattr(2) with EIO. docs/protocol.md §5.3, §8.2.""",
    ),
    _r(
        "FT313",
        "bad-dirent",
        E,
        D,
        "directory entry with an invalid name",
        """
        A READDIR/READDIRPLUS record with namelen 0, namelen above the name limit (1024;
        4095 with max_pages > 1 on 6.15+), or a '/' in the name makes the kernel fail the
        whole getdents() with EIO. docs/protocol.md §8.1.""",
    ),
    _r(
        "FT314",
        "short-read-not-at-eof",
        W,
        D,
        "short READ inside the file",
        """
        A READ reply shorter than asked means end of file to the kernel: unless writeback
        caching is on, it shrinks its idea of the file size to the end of the short read.
        A short read ending before the size the daemon itself reported (and not on a direct
        I/O handle) is a data-integrity bug: later readers see a truncated file.
        docs/protocol.md §8.2.""",
    ),
    _r(
        "FT315",
        "extension-on-wrong-op",
        W,
        K,
        "request carries an extension block it cannot have",
        """
        in.total_extlen announces a trailing extension block (security context,
        supplementary group) only on MKNOD, MKDIR, SYMLINK, CREATE and TMPFILE, and only
        since minor 7.38. Elsewhere the field is padding and must be zero. docs/protocol.md §1,
        §3.3.""",
    ),
    _r(
        "FT316",
        "frames-cut-by-snaplen",
        N,
        C,
        "frames cut by the snap length",
        """
        The capture was recorded with a snap length and some frames were stored cut short.
        Length checks still use the original length, but rules that read the body (sizes
        inside the payload, node ids in entry replies, directory entries) skip cut frames,
        so the check is less complete. Reported once, at the first cut frame. design.md
        §4.""",
    ),
    _r(
        "FT317",
        "dirent-trailing-partial",
        W,
        D,
        "directory listing ends with a partial record",
        """
        The kernel stops parsing a READDIR/READDIRPLUS reply silently when fewer bytes than a
        record remain or the next record would overrun the reply. The trailing bytes are
        ignored, so the entry in them is lost from the listing. docs/protocol.md §8.1.""",
    ),
    _r(
        "FT318",
        "request-size-mismatch",
        E,
        K,
        "request length does not match its arguments",
        """
        For requests made only of fixed structs and counted data (READ, WRITE, OPEN,
        RELEASE, FORGET, BATCH_FORGET, IOCTL, NOTIFY_REPLY, ...), in.len is exactly 40 plus
        the struct sizes of the negotiated minor (compat sizes for old minors), plus the data
        the size or count fields announce, plus 8 x total_extlen. A different length means a
        damaged frame or a kernel that lays the request out differently from the model the
        decoder uses. docs/protocol.md §1, §3.2, §10 (2).""",
    ),
    _r(
        "FT319",
        "bad-getlk-lock",
        E,
        D,
        "GETLK reply describes an impossible lock",
        """
        The lock in a GETLK reply must have type F_RDLCK, F_WRLCK or F_UNLCK, and a read or
        write lock must have start and end at most LLONG_MAX with end not before start.
        Anything else makes the kernel fail fcntl(F_GETLK) with EIO. docs/protocol.md §5.3,
        §10 (13).""",
    ),
    _r(
        "FT320",
        "bad-ioctl-retry",
        E,
        D,
        "IOCTL retry the kernel cannot honour",
        """
        FUSE_IOCTL_RETRY in an IOCTL reply asks the kernel to send the ioctl again with the
        memory the reply describes. It is allowed only for unrestricted ioctls (CUSE, or
        FUSE_IOCTL_UNRESTRICTED in the request), with at most 256 iovecs in all, and the
        reply data must be exactly in_iovs + out_iovs fuse_ioctl_iovec records (16 bytes
        each; 8 with FUSE_IOCTL_COMPAT). Otherwise the kernel fails the ioctl(2) with EIO
        (ENOMEM for too many iovecs). docs/protocol.md §5.3, §8.2, §10 (13).""",
    ),
    _r(
        "FT321",
        "lookup-name-too-long",
        E,
        K,
        "LOOKUP of a name longer than the connection's name limit",
        """
        fuse_lookup_name refuses a name longer than the connection's name_max with
        ENAMETOOLONG before any request is sent. name_max is 1024 (FUSE_NAME_LOW_MAX), or
        4095 (FUSE_NAME_MAX, PATH_MAX - 1) on 6.15+ kernels when the daemon accepted
        MAX_PAGES with max_pages > 1. A longer LOOKUP name is a frame the kernel cannot
        send. (Directory entries are bounded by the constant FUSE_NAME_MAX instead, FT313;
        notification names by name_max, FT503.) docs/protocol.md §8.1, §10 (15).""",
    ),
    # ---- FT4: INIT and versions -----------------------------------------------------------
    _r(
        "FT401",
        "reply-before-init",
        E,
        D,
        "reply before the INIT reply",
        """
        Until INIT is answered the kernel hands out no other request, so any reply other
        than the INIT reply finds nothing and fails with ENOENT. docs/protocol.md §4.1,
        §10 (9).""",
    ),
    _r(
        "FT402",
        "request-before-init",
        E,
        K,
        "request other than INIT before INIT completes",
        """
        Ordinary requests wait in allocation until INIT is answered, so the first message a
        daemon reads is INIT and nothing else arrives until the INIT reply. A different
        first request means the capture started late or lost frames. docs/protocol.md §4.1.""",
    ),
    _r(
        "FT403",
        "init-major-mismatch",
        E,
        D,
        "INIT reply major is not 7",
        """
        Linux speaks major 7 and fails INIT for any other major in the reply (an all-zero or
        header-only reply reads as major 0). The mount stays, but every request then fails
        with ECONNREFUSED. docs/protocol.md §4.1.""",
    ),
    _r(
        "FT404",
        "init-error-reply",
        E,
        D,
        "INIT answered with an error",
        """
        An error reply to INIT sets the connection's error state: the mount stays, but every
        non-forced request fails with ECONNREFUSED and the kernel never sends INIT again
        (with SYNC_INIT, mount() itself fails). docs/protocol.md §4.1.""",
    ),
    _r(
        "FT405",
        "init-flags-not-offered",
        W,
        D,
        "INIT reply sets flags the kernel did not offer",
        """
        The kernel does not intersect the reply's flags with the ones it offered; it acts on
        any bit it knows. A daemon should only accept flags that were offered (libfuse
        does); anything else enables behaviour the kernel did not agree to. docs/protocol.md §4.2,
        §10 (10).""",
    ),
    _r(
        "FT406",
        "init-minor-above-kernel",
        N,
        D,
        "INIT reply minor above the kernel's",
        """
        The daemon answered with a higher minor than the kernel offered. Harmless: all kernel
        checks are 'minor < N', so the effective protocol is the kernel's. libfuse does this
        routinely. docs/protocol.md §4.1.""",
    ),
    _r(
        "FT407",
        "init-ext-missing",
        W,
        D,
        "INIT reply has flags2 but not INIT_EXT",
        """
        flags2 (bits 32-63) in the INIT reply is read only when the reply sets FUSE_INIT_EXT.
        Without it the kernel ignores every high flag the daemon set. docs/protocol.md §4.1,
        §4.2.""",
    ),
    _r(
        "FT408",
        "max-write-too-small",
        W,
        D,
        "INIT reply max_write below 4096",
        """
        The kernel floors max_write at 4096, so a smaller value is ignored and the daemon
        will receive larger WRITEs than it asked for. docs/protocol.md §4.1.""",
    ),
    _r(
        "FT409",
        "max-pages-zero",
        W,
        D,
        "MAX_PAGES set with max_pages 0",
        """
        With FUSE_MAX_PAGES the kernel clamps init_out.max_pages to at least 1; a zero value
        is probably a daemon that forgot to fill the field. docs/protocol.md §4.1.""",
    ),
    _r(
        "FT410",
        "idmap-without-default-permissions",
        E,
        D,
        "ALLOW_IDMAP without default_permissions",
        """
        FUSE_ALLOW_IDMAP in the INIT reply requires the mount's default_permissions option;
        without it the kernel fails INIT and every request then fails with ECONNREFUSED.
        Checked only when the capture records the mount options. docs/protocol.md §4.1, §4.2.""",
    ),
    _r(
        "FT411",
        "passthrough-disabled",
        W,
        D,
        "PASSTHROUGH accepted but silently disabled",
        """
        FUSE_PASSTHROUGH is honoured only if max_stack_depth is 1 or 2 and WRITEBACK_CACHE
        is not also set; otherwise the kernel disables passthrough without telling the
        daemon, and opens asking for it fail. docs/protocol.md §4.1, §10 (11).""",
    ),
    _r(
        "FT412",
        "second-init",
        E,
        K,
        "INIT sent twice on one connection",
        """
        Linux sends INIT exactly once per connection and never re-sends it, not even after
        a failed INIT. A second INIT means two captures were merged or the capture is
        damaged. docs/protocol.md §4.1.""",
    ),
    # ---- FT5: notifications and interrupts ------------------------------------------------
    _r(
        "FT501",
        "notify-unknown-code",
        E,
        D,
        "notification with an unknown code",
        """
        A message with unique 0 is a notification and its error field is the code (1..9 in
        ABI 7.45). An unknown code makes the write() fail with EINVAL. docs/protocol.md §5.3 (W4),
        §6.""",
    ),
    _r(
        "FT502",
        "notify-wrong-size",
        E,
        D,
        "notification payload has the wrong size",
        """
        Each notification has an exact size: POLL 8, INVAL_INODE 24, RETRIEVE 32,
        INVAL_ENTRY 16 + namelen + 1, DELETE 24 + namelen + 1, STORE 24 + size, PRUNE 16 +
        8 x count. Any other size fails the write() with EINVAL. docs/protocol.md §6.""",
    ),
    _r(
        "FT503",
        "notify-name-too-long",
        E,
        D,
        "notification names an entry that is too long",
        """
        INVAL_ENTRY and DELETE with namelen above the name limit (1024; 4095 with
        max_pages > 1 on 6.15+) fail with ENAMETOOLONG before the size is even checked; the
        cached entry stays.
        docs/protocol.md §6.""",
    ),
    _r(
        "FT504",
        "notify-before-init",
        E,
        D,
        "notification before the INIT reply",
        """
        Notifications make sense only on an initialised connection; the newest kernels
        reject any notification before INIT completes with EINVAL. docs/protocol.md §5.3 (W4),
        §11.""",
    ),
    _r(
        "FT505",
        "retrieve-unique-collision",
        W,
        D,
        "RETRIEVE notify_unique equals an outstanding request id",
        """
        The kernel answers NOTIFY_RETRIEVE with a NOTIFY_REPLY message carrying the
        daemon-chosen notify_unique as its id. If that id equals a request still
        outstanding, the kernel accepts it, but tracing tools (and daemons that dispatch by
        id) confuse the two. docs/protocol.md §5.1, §6.""",
    ),
    _r(
        "FT506",
        "interrupt-unknown-target",
        W,
        K,
        "INTERRUPT for a request that is not outstanding",
        """
        The kernel sends INTERRUPT only for a request the daemon has read and not yet
        answered. In a recording an INTERRUPT may follow its request's reply when the two
        crossed in the recorder (the reply is captured before it is written to /dev/fuse);
        that is not reported while at most a few kernel frames lie between them. One naming
        a request answered longer ago is a missing frame or a kernel fault. (One whose
        target never appears in the capture is FT510, judged at the end.) docs/protocol.md
        §5.4.""",
    ),
    _r(
        "FT507",
        "interrupt-unique-mismatch",
        E,
        K,
        "INTERRUPT header id is not its target's id with bit 0 set",
        """
        An INTERRUPT's header unique is the target's id with FUSE_INT_REQ_BIT (bit 0) set,
        and fuse_interrupt_in.unique is the target id. The daemon answers the interrupt
        under the header id; if the two disagree its answer reaches the wrong request.
        docs/protocol.md §5.1.""",
    ),
    _r(
        "FT508",
        "notify-unknown-nodeid",
        N,
        D,
        "notification names a node the kernel does not hold",
        """
        INVAL_INODE, INVAL_ENTRY and DELETE (the parent), STORE and RETRIEVE act on an inode
        the kernel has cached; a node id it holds no lookup on (never announced, or
        forgotten) is not cached, so the write() fails with ENOENT and nothing happens.
        Harmless (a daemon cannot know what the kernel evicted), but a daemon that keeps
        invalidating forgotten nodes is doing useless work, and one that expects the
        notification to take effect is wrong. docs/protocol.md §6, §10 (22).""",
    ),
    _r(
        "FT509",
        "notify-reply-unmatched",
        E,
        K,
        "NOTIFY_REPLY that answers no earlier RETRIEVE",
        """
        The kernel sends NOTIFY_REPLY only to answer a RETRIEVE notification it accepted
        (fuse_retrieve -> fuse_simple_notify_reply(fm, outarg->notify_unique, ...)): its
        unique is that RETRIEVE's notify_unique, its nodeid and offset are the RETRIEVE's,
        its size at most the RETRIEVE's size (the bytes it found cached), and each RETRIEVE
        is answered at most once. A NOTIFY_REPLY with another id, node or offset, more bytes
        than asked, or a second one for the same RETRIEVE points at a damaged capture or a
        kernel fault. A RETRIEVE the kernel refused (the capture's result) is answered by
        nothing. docs/protocol.md §6, §10 (22).""",
    ),
    _r(
        "FT510",
        "interrupt-target-missing",
        E,
        K,
        "INTERRUPT whose target never appears in the capture",
        """
        An INTERRUPT always names a request the kernel already handed to a reader (FR_SENT,
        checked in request_wait_answer and in fuse_dev_do_read). FR_SENT is set before the
        target's read() returns, so with several reader threads the INTERRUPT can be
        recorded just before its target; the check is therefore made at the end of the
        capture: an INTERRUPT whose target request never appeared anywhere in it means the
        capture is corrupt or lost frames. (An INTERRUPT for a request answered long before
        is FT506.) docs/protocol.md §5.4, §10 (4, 22).""",
    ),
    _r(
        "FT511",
        "notify-refused",
        W,
        D,
        "the kernel refused a notification",
        """
        The recorder wrote this notification to /dev/fuse and the kernel's write() failed
        with the errno named in the finding. ENOENT is the common, benign case: the node
        or entry is not cached (any more), which a daemon cannot know. Other errors (EINVAL,
        ENOTDIR, EBUSY, ENOTEMPTY) mean the notification was malformed or asked for
        something impossible. Reported only when no other rule explains the refusal at
        that frame. docs/protocol.md §5.3 (W4), §6, §10 (22).""",
    ),
)

RULES: dict[str, Rule] = {r.code: r for r in _CATALOGUE}

#: rule code -> the function that raises it ("module.Class.method"), filled by :func:`checks`
RAISED_BY: dict[str, str] = {}

_F = TypeVar("_F", bound=Callable[..., Any])


def checks(*codes: str) -> Callable[[_F], _F]:
    """Bind rule codes to the function that raises them: ``@checks("FT310")``.

    Each code is raised in exactly one place; binding a code twice, or one the catalogue
    does not have, fails at import. The function is returned unchanged (no cost per call);
    tests/tracker/test_rules.py proves every ``_emit`` in the tracker uses only its
    function's codes, and ``fusetrace explain`` prints where a rule is checked.
    """

    def bind(fn: _F) -> _F:
        where = f"{fn.__module__}.{fn.__qualname__}"
        for code in codes:
            if code not in RULES:
                raise ValueError(f"{where} checks {code}, which is not in the catalogue")
            other = RAISED_BY.get(code)
            if other is not None and other != where:
                raise ValueError(f"{code} is raised by {other} and by {where}")
            RAISED_BY[code] = where
        fn.__checks__ = codes  # type: ignore[attr-defined]
        return fn

    return bind


def raised_by(code: str) -> str | None:
    """The function that raises ``code`` (None before the tracker is imported)."""
    return RAISED_BY.get(code)


def matches(code: str, patterns: Iterable[str]) -> bool:
    """True if ``code`` is one of ``patterns`` or starts with one (``FT1`` = the family)."""
    return any(code.startswith(p) for p in patterns)


def select_rules(
    select: Iterable[str] | None = None, ignore: Iterable[str] | None = None
) -> frozenset[str]:
    """The codes enabled by ``--select``/``--ignore`` (codes or prefixes, ruff style).

    Raises ``ValueError`` naming a pattern that matches no rule.
    """
    sel = [p.strip().upper() for p in select or () if p.strip()]
    ign = [p.strip().upper() for p in ignore or () if p.strip()]
    for p in (*sel, *ign):
        if not any(c.startswith(p) for c in RULES):
            raise ValueError(f"{p!r} matches no rule (see `fusetrace rules`)")
    codes = set(RULES) if not sel else {c for c in RULES if matches(c, sel)}
    return frozenset(c for c in codes if not matches(c, ign))
