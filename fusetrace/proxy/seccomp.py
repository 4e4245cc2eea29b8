"""The seccomp hand-off: the daemon opens /dev/fuse and mounts as it always does.

A seccomp filter with a user-notification listener is installed in the daemon's process
between fork and exec (``preexec_fn``); its listener descriptor comes back to fusetrace over
a socket pair. From then on the daemon and everything it starts (fusermount3, its own
helper, a shell) run under the filter, and fusetrace answers a handful of system calls for
them:

- ``open``/``openat`` with ``O_RDWR`` and without ``O_CREAT`` (``openat`` only relative to
  the working directory), and every ``openat2``: BPF cannot read the path, so fusetrace
  reads it (resolving it through ``/proc/TID/cwd`` and ``/proc/TID/fd``). An open of
  /dev/fuse is answered with one end of a fresh socket pair, placed into the caller with
  SECCOMP_IOCTL_NOTIF_ADDFD (its ``O_CLOEXEC`` copied); every other open continues as if
  nothing had happened. Every library opens /dev/fuse read-write and never creates it, so
  the filter lets the loader's and most of a passthrough daemon's opens through untouched.
- ``mount``: the arguments are read from the caller's memory; when the mount's ``fd=N``
  names a socket fusetrace handed out, fusetrace mounts the real /dev/fuse with exactly what
  the daemon asked for (type and subtype, source, flags, options), only ``fd=N`` changed,
  and answers the call with the result. Other mounts continue.
- ``umount2`` of fusetrace's mountpoint: fusetrace unmounts (or answers EINVAL when the
  filesystem is already gone, instead of letting a late lazy unmount hit whatever is
  mounted there by then). Other unmounts continue.
- ``fsopen`` fails with ENOSYS in the filter itself, so a library falls back to mount(2).
- ``execve``/``execveat`` continue; the program's name is noted for error messages.

Everything else runs untouched. A program for another architecture (x32, i386) is killed
by the filter: its system calls would not be caught.

A second open of /dev/fuse once the filesystem is mounted (libfuse ``-o clone_fd`` opens
the device again and asks FUSE_DEV_IOC_CLONE) is let through to the real device: the clone
request then names fusetrace's socket, and the kernel refuses it with EINVAL, as it refuses
a clone of anything that is not a FUSE device. The library carries on with one descriptor.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import errno
import os
import platform
import select
import socket
import stat
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from fusetrace.proxy import mount as mounts

# ---- the kernel's interface (include/uapi/linux/seccomp.h, filter.h, audit.h) ------------
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV = 1 << 5
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_USER_NOTIF = 0x7FC00000
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1
SECCOMP_ADDFD_FLAG_SETFD = 1
SECCOMP_ADDFD_FLAG_SEND = 2


def _iowr(nr: int, size: int, write_only: bool = False) -> int:
    direction = 1 if write_only else 3  # _IOW / _IOWR
    return (direction << 30) | (size << 16) | (ord("!") << 8) | nr


# seccomp_notif: 80 bytes; seccomp_notif_resp: 24; seccomp_notif_addfd: 24
SECCOMP_IOCTL_NOTIF_RECV = _iowr(0, 80)
SECCOMP_IOCTL_NOTIF_SEND = _iowr(1, 24)
SECCOMP_IOCTL_NOTIF_ID_VALID = _iowr(2, 8, write_only=True)
SECCOMP_IOCTL_NOTIF_ADDFD = _iowr(3, 24, write_only=True)

# classic BPF
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_JGE_K = 0x35
BPF_AND_K = 0x54
BPF_RET_K = 0x06

AT_FDCWD = -100
#: the open flags the filter looks at: read-write, and not creating
OPEN_MASK = os.O_ACCMODE | os.O_CREAT


@dataclass(frozen=True)
class Arch:
    """System call numbers of one architecture (the filter compares the audit arch)."""

    audit: int
    seccomp: int
    calls: dict[str, int]
    #: system call numbers from here on belong to another ABI (x32 on x86_64)
    foreign_from: int | None = None


ARCHES = {
    "x86_64": Arch(
        0xC000003E,
        317,
        {
            "open": 2,
            "openat": 257,
            "openat2": 437,
            "mount": 165,
            "umount2": 166,
            "execve": 59,
            "execveat": 322,
            "fsopen": 430,
            "write": 1,
            "writev": 20,
        },
        foreign_from=0x40000000,
    ),
    "aarch64": Arch(
        0xC00000B7,
        277,
        {
            "openat": 56,
            "openat2": 437,
            "mount": 40,
            "umount2": 39,
            "execve": 221,
            "execveat": 281,
            "fsopen": 430,
            "write": 64,
            "writev": 66,
        },
    ),
}


def this_arch() -> Arch | None:
    return ARCHES.get(platform.machine())


def available() -> str | None:
    """None when the hand-off can work here; else why not, in words."""
    if this_arch() is None:
        return f"the seccomp hand-off does not know the system calls of {platform.machine()}"
    return None


# ---- the filter ----------------------------------------------------------------------
_OFF_NR = 0
_OFF_ARCH = 4


def _arg_low(i: int) -> int:
    """Offset of the low 32 bits of argument ``i`` in struct seccomp_data."""
    return 16 + 8 * i + (0 if sys.byteorder == "little" else 4)


class _Program:
    """A tiny assembler: instructions with jumps to labels, resolved at the end."""

    def __init__(self) -> None:
        self.code: list[tuple[int, str | int, str | int, int]] = []
        self.labels: dict[str, int] = {}

    def ld(self, offset: int) -> None:
        self.code.append((BPF_LD_W_ABS, 0, 0, offset))

    def and_(self, k: int) -> None:
        self.code.append((BPF_AND_K, 0, 0, k))

    def jeq(self, k: int, yes: str | int = 0, no: str | int = 0) -> None:
        self.code.append((BPF_JEQ_K, yes, no, k & 0xFFFFFFFF))

    def jge(self, k: int, yes: str | int = 0, no: str | int = 0) -> None:
        self.code.append((BPF_JGE_K, yes, no, k))

    def ret(self, k: int) -> None:
        self.code.append((BPF_RET_K, 0, 0, k))

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def _rel(self, pc: int, target: str | int) -> int:
        if isinstance(target, int):
            return target
        off = self.labels[target] - pc - 1
        if not 0 <= off < 256:
            raise ValueError(f"jump to {target} out of range")
        return off

    def assemble(self) -> bytes:
        out = bytearray()
        for pc, (code, jt, jf, k) in enumerate(self.code):
            out += code.to_bytes(2, "little") + bytes([self._rel(pc, jt), self._rel(pc, jf)])
            out += k.to_bytes(4, "little")
        return bytes(out)


def build_filter(arch: Arch, sync_fd: int | None = None) -> bytes:
    """The BPF program (struct sock_filter[]), in the host's byte order. With ``sync_fd``,
    write and writev on that descriptor number are caught too."""
    calls = arch.calls
    p = _Program()
    p.ld(_OFF_ARCH)
    p.jeq(arch.audit, 0, "kill")
    p.ld(_OFF_NR)
    if arch.foreign_from is not None:
        p.jge(arch.foreign_from, "kill", 0)
    if "open" in calls:
        p.jeq(calls["open"], "open", 0)
    p.jeq(calls["openat"], "openat", 0)
    for name in ("openat2", "mount", "umount2", "execve", "execveat"):
        p.jeq(calls[name], "notify", 0)
    if sync_fd is not None:
        p.jeq(calls["write"], "write", 0)
        p.jeq(calls["writev"], "write", 0)
    p.jeq(calls["fsopen"], "enosys", "allow")
    if sync_fd is not None:
        p.label("write")  # write(fd, ...), writev(fd, ...)
        p.ld(_arg_low(0))
        p.jeq(sync_fd, "notify", "allow")
    if "open" in calls:
        p.label("open")  # open(path, flags, mode)
        p.ld(_arg_low(1))
        p.and_(OPEN_MASK)
        p.jeq(os.O_RDWR, "notify", "allow")
    p.label("openat")  # openat(dirfd, path, flags, mode)
    p.ld(_arg_low(0))
    p.jeq(AT_FDCWD, 0, "allow")
    p.ld(_arg_low(2))
    p.and_(OPEN_MASK)
    p.jeq(os.O_RDWR, "notify", "allow")
    p.label("notify")
    p.ret(SECCOMP_RET_USER_NOTIF)
    p.label("enosys")
    p.ret(SECCOMP_RET_ERRNO | errno.ENOSYS)
    p.label("kill")
    p.ret(SECCOMP_RET_KILL_PROCESS)
    p.label("allow")  # (BPF jumps only forward)
    p.ret(SECCOMP_RET_ALLOW)
    code = p.assemble()
    if sys.byteorder != "little":  # struct sock_filter is native-endian
        words = bytearray()
        for i in range(0, len(code), 8):
            c, jt, jf, k = code[i : i + 2], code[i + 2], code[i + 3], code[i + 4 : i + 8]
            words += c[::-1] + bytes([jt, jf]) + k[::-1]
        code = bytes(words)
    return code


# ---- structures and calls ------------------------------------------------------------
class _SeccompData(ctypes.Structure):
    _fields_ = [
        ("nr", ctypes.c_int),
        ("arch", ctypes.c_uint32),
        ("ip", ctypes.c_uint64),
        ("args", ctypes.c_uint64 * 6),
    ]


class _Notif(ctypes.Structure):
    _fields_ = [
        ("id", ctypes.c_uint64),
        ("pid", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("data", _SeccompData),
    ]


class _Resp(ctypes.Structure):
    _fields_ = [
        ("id", ctypes.c_uint64),
        ("val", ctypes.c_int64),
        ("error", ctypes.c_int32),
        ("flags", ctypes.c_uint32),
    ]


class _AddFd(ctypes.Structure):
    _fields_ = [
        ("id", ctypes.c_uint64),
        ("flags", ctypes.c_uint32),
        ("srcfd", ctypes.c_uint32),
        ("newfd", ctypes.c_uint32),
        ("newfd_flags", ctypes.c_uint32),
    ]


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_calls: ctypes.CDLL | None = None


def _libc() -> ctypes.CDLL:
    """libc with the prototypes used here (ctypes releases the GIL during each call)."""
    global _calls
    if _calls is None:
        lib = mounts.libc()
        lib.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
        lib.ioctl.restype = ctypes.c_int
        lib.process_vm_readv.argtypes = [
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_ulong,
            ctypes.c_void_p,
            ctypes.c_ulong,
            ctypes.c_ulong,
        ]
        lib.process_vm_readv.restype = ctypes.c_ssize_t
        lib.syscall.restype = ctypes.c_long
        _calls = lib
    return _calls


@dataclass
class Notification:
    id: int
    #: the calling thread's id (not its process's: see :func:`tgid`)
    tid: int
    nr: int
    args: tuple[int, ...]


class Listener:
    """The notification descriptor: receive, answer, place descriptors."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._lib = _libc()

    def _ioctl(self, request: int, arg: ctypes.Structure | ctypes.c_uint64) -> int:
        rc = int(self._lib.ioctl(self.fd, request, ctypes.byref(arg)))
        if rc < 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        return rc

    def receive(self) -> Notification | None:
        """The next notification; None when it went away before we took it."""
        n = _Notif()  # zeroed, as the kernel wants
        try:
            self._ioctl(SECCOMP_IOCTL_NOTIF_RECV, n)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.EINTR):
                return None
            raise
        return Notification(n.id, n.pid, n.data.nr, tuple(n.data.args))

    def valid(self, nid: int) -> bool:
        """True while the call ``nid`` still waits (its caller was not killed)."""
        try:
            self._ioctl(SECCOMP_IOCTL_NOTIF_ID_VALID, ctypes.c_uint64(nid))
        except OSError:
            return False
        return True

    def answer(self, nid: int, value: int = 0, error: int = 0) -> None:
        """The call returns ``value``, or fails with ``error`` (a positive errno)."""
        self._send(_Resp(nid, value, -error, 0))

    def proceed(self, nid: int) -> None:
        """The call runs in the caller as if it had not been caught."""
        self._send(_Resp(nid, 0, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE))

    def _send(self, resp: _Resp) -> None:
        try:
            self._ioctl(SECCOMP_IOCTL_NOTIF_SEND, resp)
        except OSError as e:
            if e.errno != errno.ENOENT:  # the caller was killed meanwhile
                raise

    def place(self, nid: int, fd: int, cloexec: bool, at: int | None = None) -> int:
        """Put a copy of ``fd`` into the caller (at number ``at`` if given) and make its
        call return the new number."""
        flags = SECCOMP_ADDFD_FLAG_SEND | (SECCOMP_ADDFD_FLAG_SETFD if at is not None else 0)
        add = _AddFd(nid, flags, fd, at or 0, os.O_CLOEXEC if cloexec else 0)
        return self._ioctl(SECCOMP_IOCTL_NOTIF_ADDFD, add)


def read_memory(tid: int, addr: int, size: int) -> bytes:
    """Up to ``size`` bytes at ``addr`` in ``tid``'s memory (fewer at an unmapped page)."""
    return read_vector(tid, [(addr, size)])


def read_vector(tid: int, parts: list[tuple[int, int]]) -> bytes:
    """The (address, length) ``parts`` of ``tid``'s memory, joined, with one
    process_vm_readv (up to IOV_MAX parts)."""
    size = sum(n for _a, n in parts)
    buf = ctypes.create_string_buffer(max(size, 1))
    local = _Iovec(ctypes.cast(buf, ctypes.c_void_p), size)
    remote = (_Iovec * max(len(parts), 1))(*(_Iovec(a, n) for a, n in parts))
    got = _libc().process_vm_readv(tid, ctypes.byref(local), 1, remote, len(parts), 0)
    if got < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return buf.raw[:got]


PAGE = 4096


def read_string(tid: int, addr: int, limit: int = 4096) -> bytes | None:
    """The NUL-terminated string at ``addr``; None for a null pointer or unreadable
    memory. Read page by page, so a string that ends just before an unmapped page is read."""
    if not addr:
        return None
    out = b""
    while len(out) < limit:
        chunk = min(PAGE - (addr % PAGE), limit - len(out))
        try:
            data = read_memory(tid, addr, chunk)
        except OSError:
            return None
        end = data.find(b"\0")
        if end >= 0:
            return out + data[:end]
        out += data
        if len(data) < chunk:
            return None
        addr += chunk
    return out


def tgid(tid: int) -> int:
    """The process (thread group) of thread ``tid``."""
    try:
        with open(f"/proc/{tid}/status") as f:
            for line in f:
                if line.startswith("Tgid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return tid


def resolve(tid: int, dirfd: int, path: str) -> str:
    """``path`` as the caller ``tid`` means it: relative to its cwd or to ``dirfd``
    (normalized as a string; symlinks are not followed, and nothing is looked up)."""
    if path.startswith("/"):
        return os.path.normpath(path)
    where = f"/proc/{tid}/cwd" if dirfd == AT_FDCWD else f"/proc/{tid}/fd/{dirfd}"
    try:
        base = os.readlink(where)
    except OSError:
        return path
    return os.path.normpath(os.path.join(base, path))


def _signed32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


# ---- installing it in the daemon --------------------------------------------------------
def preexec(child: socket.socket, sync_fd: int | None = None) -> Callable[[], None]:
    """The function ``subprocess`` runs in the daemon's process before exec: install the
    filter and send its listener to fusetrace over ``child``. Everything it needs is made
    here, before the fork (the program's buffer must stay alive as long as it is used)."""
    arch = this_arch()
    if arch is None:
        raise OSError(errno.ENOSYS, available())
    lib = _libc()
    code = build_filter(arch, sync_fd)
    buf = ctypes.create_string_buffer(code, len(code))
    prog = _Fprog(len(code) // 8, ctypes.cast(buf, ctypes.c_void_p))
    flags = SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
    nr = arch.seccomp
    sendmsg = child.sendmsg
    level, kind = socket.SOL_SOCKET, socket.SCM_RIGHTS
    keep = (buf, prog)

    def install() -> None:
        assert keep
        fd = lib.syscall(nr, SECCOMP_SET_MODE_FILTER, flags, ctypes.byref(prog))
        if fd < 0:  # no WAIT_KILLABLE_RECV before Linux 5.19
            fd = lib.syscall(
                nr, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, ctypes.byref(prog)
            )
        if fd < 0:
            os.write(2, b"fusetrace: cannot install the seccomp filter\n")
            os._exit(126)
        sendmsg([b"L"], [(level, kind, int(fd).to_bytes(4, sys.byteorder))])
        os.close(fd)

    return install


# ---- serving the daemon ---------------------------------------------------------------
@dataclass
class MountCall:
    """A mount(2) the daemon made on a socket fusetrace handed out."""

    source: str | None
    target: str
    fstype: str
    flags: int
    #: the options string without ``fd=N``, in the daemon's order
    options: list[str]
    #: the position of ``fd=N`` in the options
    fd_index: int
    tid: int

    def data(self, fd: int) -> str:
        """The options string the daemon gave, with ``fd=`` naming ``fd``."""
        opts = list(self.options)
        opts.insert(self.fd_index, f"fd={fd}")
        return ",".join(opts)


@dataclass
class Handed:
    """One end of a socket pair placed into the daemon in place of /dev/fuse."""

    ours: socket.socket
    inode: int
    tgid: int
    fd: int
    mounted: bool = False


@dataclass
class Events:
    """What the daemon did, in order, for messages when something goes wrong."""

    lines: list[str] = field(default_factory=list)
    execs: list[str] = field(default_factory=list)
    #: system calls the filter handed to fusetrace
    caught: int = 0
    opened: int = 0
    foreign_mounts: list[str] = field(default_factory=list)

    def note(self, line: str) -> None:
        if len(self.lines) < 50:
            self.lines.append(line)


class Supervisor:
    """Serves the daemon's caught system calls in a thread of its own.

    Start it (:meth:`start`) before the daemon: the thread waits for the listener the
    daemon's ``preexec`` sends, then answers calls until every process under the filter is
    gone (POLLHUP) or :meth:`stop`.

    ``make_pair`` gives a fresh (ours, theirs) socket pair for each open of /dev/fuse;
    ``on_mount`` performs the real mount for a :class:`MountCall` with our socket end and
    returns 0 or an errno for the daemon; ``on_umount`` unmounts the filesystem for the
    daemon and returns 0 or an errno (EINVAL: not mounted any more).
    """

    def __init__(
        self,
        mountpoint: str,
        make_pair: Callable[[], tuple[socket.socket, socket.socket]],
        on_mount: Callable[[MountCall, socket.socket], int],
        on_umount: Callable[[], int],
        *,
        sync_fd: int | None = None,
        on_write: Callable[[bytes], int] | None = None,
    ) -> None:
        self.mountpoint = mountpoint
        #: the descriptor number the socket gets in the daemon, whose writes are caught
        self.sync_fd = sync_fd
        self._on_write = on_write
        #: the inode of the socket placed at ``sync_fd`` (writes there are delivered)
        self.sync_inode: int | None = None
        self._make_pair = make_pair
        self._on_mount = on_mount
        self._on_umount = on_umount
        self.ours, self.child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC)
        arch = this_arch()
        assert arch is not None
        self._names = {nr: name for name, nr in arch.calls.items()}
        self.handed: dict[int, Handed] = {}
        self.events = Events()
        self.mounted = threading.Event()
        self.listener: Listener | None = None
        self.error: BaseException | None = None
        try:
            self._dev = os.stat("/dev/fuse").st_rdev
        except OSError:
            self._dev = -1
        self._thread = threading.Thread(target=self._run, name="seccomp", daemon=True)

    def preexec(self) -> Callable[[], None]:
        return preexec(self.child, self.sync_fd)

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        """False once every process under the filter is gone (or the thread stopped)."""
        return self._thread.is_alive()

    def spawned(self) -> None:
        """The daemon has been started (or failed to): the parent's copy of its end goes."""
        self.child.close()

    def stop(self, timeout: float = 5.0) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def close(self) -> None:
        self.stop()
        for h in self.handed.values():
            if not h.mounted:
                h.ours.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            self.ours.close()
        with contextlib.suppress(OSError):
            self.child.close()
        if self.listener is not None:
            with contextlib.suppress(OSError):
                os.close(self.listener.fd)

    # ---- the thread --------------------------------------------------------------------
    def _receive_listener(self) -> Listener | None:
        poller = select.poll()
        poller.register(self.ours, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        for fd, _ev in poller.poll():
            if fd == self._wake_r:
                return None
        try:
            fds = array.array("i")
            msg, anc, _flags, _addr = self.ours.recvmsg(1, socket.CMSG_SPACE(4))
        except OSError:
            return None
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
        if msg != b"L" or not fds:
            return None
        return Listener(fds[0])

    def _run(self) -> None:
        try:
            listener = self._receive_listener()
            if listener is None:
                return
            self.listener = listener
            poller = select.poll()
            poller.register(listener.fd, select.POLLIN)
            poller.register(self._wake_r, select.POLLIN)
            while True:
                events = dict(poller.poll())
                if self._wake_r in events:
                    return
                ev = events.get(listener.fd, 0)
                if ev & select.POLLIN:
                    n = listener.receive()
                    if n is not None:
                        self._serve(listener, n)
                elif ev & (select.POLLHUP | select.POLLERR):
                    return  # every process under the filter is gone
        except BaseException as e:  # reported by the session
            self.error = e

    def _serve(self, listener: Listener, n: Notification) -> None:
        name = self._names.get(n.nr)
        self.events.caught += 1
        try:
            if name in ("open", "openat", "openat2"):
                self._open(listener, n, name)
            elif name == "mount":
                self._mount(listener, n)
            elif name == "umount2":
                self._umount(listener, n)
            elif name in ("write", "writev"):
                self._write(listener, n, name)
            elif name in ("execve", "execveat"):
                path = read_string(n.tid, n.args[0 if name == "execve" else 1])
                if path is not None:
                    shown = os.fsdecode(path)
                    if name == "execveat":
                        shown = resolve(n.tid, _signed32(n.args[0]), shown)
                    self.events.execs.append(shown)
                    self.events.note(f"exec'd {shown}")
                listener.proceed(n.id)
            else:
                listener.proceed(n.id)
        except Exception as e:
            # never leave the caller waiting: whatever failed here, its call goes on
            self.events.note(f"serving {name} failed: {e!r}")
            with contextlib.suppress(OSError):
                listener.proceed(n.id)

    def _is_fuse_device(self, path: str) -> bool:
        if os.path.basename(path) != "fuse" and not path.startswith("/dev/char/"):
            return False
        try:
            st = os.stat(path)
        except OSError:
            return False
        return stat.S_ISCHR(st.st_mode) and st.st_rdev == self._dev

    def _open(self, listener: Listener, n: Notification, name: str) -> None:
        args = n.args
        if name == "open":
            dirfd, addr, flags = AT_FDCWD, args[0], args[1]
        elif name == "openat":
            dirfd, addr, flags = _signed32(args[0]), args[1], args[2]
        else:  # openat2(dirfd, path, struct open_how *how, size): how->flags first
            dirfd, addr = _signed32(args[0]), args[1]
            try:
                flags = int.from_bytes(read_memory(n.tid, args[2], 8), sys.byteorder)
            except OSError:
                listener.proceed(n.id)
                return
        raw = read_string(n.tid, addr)
        if raw is None or (flags & os.O_ACCMODE) != os.O_RDWR:
            listener.proceed(n.id)
            return
        path = resolve(n.tid, dirfd, os.fsdecode(raw))
        if not self._is_fuse_device(path) or self.mounted.is_set():
            # after the mount: a clone_fd open gets the real device (see the module text)
            listener.proceed(n.id)
            return
        ours, theirs = self._make_pair()
        with theirs:
            if not listener.valid(n.id):
                ours.close()
                return
            at = None
            if self.sync_fd is not None and self.sync_inode is None:
                if not os.path.lexists(f"/proc/{n.tid}/fd/{self.sync_fd}"):
                    at = self.sync_fd
                else:
                    self.events.note(f"fd {self.sync_fd} taken: writes are not synchronous")
            cloexec = bool(flags & os.O_CLOEXEC)
            try:
                fd = listener.place(n.id, theirs.fileno(), cloexec, at)
            except OSError:
                if at is None:
                    raise
                at = None  # beyond the daemon's descriptor limit: any number
                self.events.note(f"fd {self.sync_fd} refused: writes are not synchronous")
                fd = listener.place(n.id, theirs.fileno(), cloexec)
            inode = os.fstat(theirs.fileno()).st_ino
            if at is not None:
                self.sync_inode = inode
        pid = tgid(n.tid)
        self.handed[inode] = Handed(ours, inode, pid, fd)
        self.events.opened += 1
        self.events.note(f"opened /dev/fuse (process {pid}, fd {fd})")

    def _handed_at(self, tid: int, fd: int) -> Handed | None:
        try:
            st = os.stat(f"/proc/{tid}/fd/{fd}")
        except OSError:
            return None
        if not stat.S_ISSOCK(st.st_mode):
            return None
        return self.handed.get(st.st_ino)

    def _mount(self, listener: Listener, n: Notification) -> None:
        args = n.args
        tid = n.tid
        fstype_b = read_string(tid, args[2], 256)
        fstype = os.fsdecode(fstype_b) if fstype_b is not None else ""
        if not (fstype in ("fuse", "fuseblk") or fstype.startswith(("fuse.", "fuseblk."))):
            listener.proceed(n.id)
            return
        source_b = read_string(tid, args[0])
        target_b = read_string(tid, args[1])
        data_b = read_string(tid, args[4], PAGE)
        if target_b is None or not listener.valid(n.id):
            listener.proceed(n.id)
            return
        options = os.fsdecode(data_b or b"").split(",") if data_b else []
        fd_index = -1
        handed = None
        for i, opt in enumerate(options):
            if opt.startswith("fd="):
                fd_index = i
                with contextlib.suppress(ValueError):
                    handed = self._handed_at(tid, int(opt[3:]))
        target = resolve(tid, AT_FDCWD, os.fsdecode(target_b))
        if handed is None:
            # a device fusetrace did not hand out: the daemon's business, but noted
            self.events.foreign_mounts.append(target)
            self.events.note(f"mounted {target} with a descriptor fusetrace did not hand out")
            listener.proceed(n.id)
            return
        call = MountCall(
            os.fsdecode(source_b) if source_b is not None else None,
            target,
            fstype,
            args[3],
            options[:fd_index] + options[fd_index + 1 :],
            fd_index,
            tid,
        )
        self.events.note(f"mount({call.source!r}, {target!r}, {fstype!r}, {','.join(options)!r})")
        if handed.mounted:
            listener.answer(n.id, error=errno.EBUSY)
            return
        result = self._on_mount(call, handed.ours)
        if result == 0:
            handed.mounted = True
            self.mounted.set()
            listener.answer(n.id, 0)
        else:
            listener.answer(n.id, error=result)

    def _write(self, listener: Listener, n: Notification, name: str) -> None:
        """A write to the daemon's FUSE descriptor: the frame goes to /dev/fuse from here,
        and the daemon's call returns the kernel's answer."""
        tid, args = n.tid, n.args
        handed = self._handed_at(tid, _signed32(args[0]))
        if handed is None or handed.inode != self.sync_inode or self._on_write is None:
            listener.proceed(n.id)
            return
        if name == "write":
            parts = [(args[1], args[2])]
        else:
            count = min(args[2], 1024)
            raw = read_memory(tid, args[1], 16 * count)
            parts = [
                (
                    int.from_bytes(raw[i : i + 8], sys.byteorder),
                    int.from_bytes(raw[i + 8 : i + 16], sys.byteorder),
                )
                for i in range(0, len(raw) - len(raw) % 16, 16)
            ]
        data = read_vector(tid, [p for p in parts if p[1]])
        if not listener.valid(n.id):
            return
        result = self._on_write(data)
        if result:
            listener.answer(n.id, error=result)
        else:
            listener.answer(n.id, len(data))

    def _umount(self, listener: Listener, n: Notification) -> None:
        raw = read_string(n.tid, n.args[0])
        if raw is None:
            listener.proceed(n.id)
            return
        target = resolve(n.tid, AT_FDCWD, os.fsdecode(raw))
        if target != self.mountpoint or not self.mounted.is_set():
            listener.proceed(n.id)
            return
        self.events.note(f"unmounted {target}")
        result = self._on_umount()
        if result:
            listener.answer(n.id, error=result)
        else:
            listener.answer(n.id, 0)
