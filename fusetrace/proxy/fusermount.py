"""The fusermount handoff: fusetrace stands in for fusermount3/fusermount.

Daemons that mount through fusermount (libfuse 2 daemons such as unionfs-fuse, fuse-zip,
bindfs; libfuse 3 daemons that are not allowed to mount) fork and exec
``fusermount3 -o OPTIONS -- MOUNTPOINT`` (libfuse 2: ``fusermount``) with a socket whose
number is in ``_FUSE_COMMFD``, and receive the /dev/fuse descriptor over it (SCM_RIGHTS).
libfuse execs ``/usr/bin/fusermount3`` first and falls back to a PATH search; it only takes
that path when its own mount(2) fails with EPERM.

So the daemon runs in a mount namespace of its own (a slave of ours, so it sees the
filesystem fusetrace mounts for it when the mountpoint lies on a shared mount; when it lies
on a private one, as in many containers, fusetrace attaches a clone of its mount in the
daemon's namespace, see :func:`attach_in_namespace`: nothing is mounted on the mountpoint
before the daemon asks, so ``mountpoint -q`` and mountinfo tell the truth) in which both
fusermount paths are bind mounts of a small shim, with CAP_SYS_ADMIN dropped from its
capability bounding set (its own mount(2) then fails with EPERM, and libfuse turns to
"fusermount"). The shim forwards its command line to fusetrace over an inherited control
socket; fusetrace checks the options, mounts /dev/fuse itself, and hands back the daemon's
end of the proxy socket, which the shim passes on through ``_FUSE_COMMFD``. Nothing the
daemon did not ask for is granted: its own -o options decide the mount (plus fusetrace's
own -o, which the user gave explicitly).

go-fuse (gocryptfs and other Go daemons) speaks the same protocol with two differences
(fuse/mount_linux.go, ``callFusermount``): it runs ``fusermount3 MOUNTPOINT -o OPTIONS``
(the mountpoint first, no ``--``), and it starts fusermount with an environment of its
own holding nothing but ``_FUSE_COMMFD=3``, with its end of the socket as descriptor 3.
Its PATH search (``exec.LookPath``, falling back to /bin) happens in the daemon, so the
shim is still found, but the shim cannot read the control socket's number from its
environment. So the control socket sits at a high, fixed descriptor number (inherited:
go-fuse's fork places descriptors 0-3 and leaves the others alone) and that number is
written into the shim itself, with fusetrace's pid; the shim takes the descriptor only if
it is a SEQPACKET socket whose peer is that fusetrace.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import fcntl
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from fusetrace.errors import EnvironmentProblem
from fusetrace.proxy import mount as mounts

#: environment variable naming the control socket the shim talks to fusetrace on
SHIM_FD_ENV = "FUSETRACE_FUSERMOUNT_FD"
COMMFD_ENV = "_FUSE_COMMFD"
#: where libfuse 3 and 2 look first (FUSERMOUNT_DIR); also found through PATH
FUSERMOUNT_PATHS = (
    "/usr/bin/fusermount3",
    "/usr/bin/fusermount",
    "/bin/fusermount3",
    "/bin/fusermount",
)
#: fusermount options that only concern fusermount or libfuse; accepted and ignored
IGNORED_OPTIONS = frozenset({"nonempty", "auto_unmount", "allow_root", "blkdev"})
IGNORED_PREFIXES = ("user=", "fd=", "rootmode=", "user_id=", "group_id=")

CLONE_NEWNS = 0x00020000
MS_BIND = mounts.MS_BIND
MS_REC = mounts.MS_REC
MS_SLAVE = mounts.MS_SLAVE
PR_CAPBSET_DROP = 24
CAP_SYS_ADMIN = 21

#: the lowest descriptor number the control socket gets in the daemon (above the ones a
#: library places for fusermount: 0-2 and _FUSE_COMMFD, 3 for go-fuse)
CONTROL_FD_MIN = 64

SHIM_SOURCE = """#!{python}
# fusetrace stands in for fusermount for this daemon
import sys
sys.path.insert(0, {root!r})
from fusetrace.proxy.fusermount import shim_main
sys.exit(shim_main(sys.argv, {fd}, {pid}))
"""


# ---- the shim (runs as fusermount3 inside the daemon's namespace) -----------------------
def _peer_pid(sock: socket.socket) -> int | None:
    try:
        cred = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    return int(struct.unpack("3i", cred)[0])


def control_socket(fd: int | None, fusetrace_pid: int | None) -> socket.socket | None:
    """The control socket: from the environment, else at ``fd`` if its peer is fusetrace.

    A daemon may start fusermount with an environment of its own (go-fuse does), so the
    number written into the shim is the fallback; the peer check makes sure the descriptor
    found there is fusetrace's and not something else the daemon opened.
    """
    env = os.environ.get(SHIM_FD_ENV)
    if env is not None:
        with contextlib.suppress(ValueError, OSError):
            return socket.socket(fileno=int(env))
    if fd is None:
        return None
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return None
    if (
        sock.family != socket.AF_UNIX
        or sock.type != socket.SOCK_SEQPACKET
        or (fusetrace_pid is not None and _peer_pid(sock) != fusetrace_pid)
    ):
        sock.close()
        return None
    return sock


def shim_main(argv: list[str], fd: int | None = None, fusetrace_pid: int | None = None) -> int:
    """Entry point of the shim: relay the request, pass the descriptor on."""
    prog = os.path.basename(argv[0]) or "fusermount3"
    ctl = control_socket(fd, fusetrace_pid)
    if ctl is None:
        print(f"{prog}: fusetrace control socket missing", file=sys.stderr)
        return 1
    ctl.send(json.dumps({"argv": argv[1:], "cwd": os.getcwd()}).encode())
    msg, anc, _flags, _addr = ctl.recvmsg(4096, socket.CMSG_SPACE(4))
    fds = array.array("i")
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    if msg != b"ok":
        print(f"{prog}: {msg.decode(errors='replace')}", file=sys.stderr)
        return 1
    if not fds:  # an unmount request: nothing to hand on
        return 0
    commfd = os.environ.get(COMMFD_ENV)
    if commfd is None:
        print(f"{prog}: {COMMFD_ENV} not set", file=sys.stderr)
        return 1
    comm = socket.socket(fileno=int(commfd))
    comm.sendmsg([b"\0"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())])
    return 0


# ---- fusetrace's side -------------------------------------------------------------------
@dataclass
class Request:
    """What the daemon asked fusermount for."""

    unmount: bool
    mountpoint: str
    options: list[str]


def parse_request(payload: bytes) -> Request:
    """``fusermount3 [-o OPTS] [-u] [-q] [-z] [--] MOUNTPOINT`` as sent by the shim."""
    msg = json.loads(payload)
    args: list[str] = list(msg["argv"])
    cwd: str = msg.get("cwd", "/")
    options: list[str] = []
    unmount = False
    mountpoint = None
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest = args[i + 1 :]
            mountpoint = rest[0] if rest else None
            break
        if arg == "-o" and i + 1 < len(args):
            options += mounts.split_options([args[i + 1]])
            i += 2
            continue
        if arg.startswith("-o") and len(arg) > 2:
            options += mounts.split_options([arg[2:]])
        elif arg == "-u":
            unmount = True
        elif arg.startswith("-") and arg not in ("-q", "-z"):
            raise ValueError(f"fusermount option {arg} is not supported")
        elif not arg.startswith("-"):
            mountpoint = arg
        i += 1
    if not mountpoint:
        raise ValueError("no mountpoint given")
    return Request(unmount, os.path.normpath(os.path.join(cwd, mountpoint)), options)


def kernel_options(options: list[str]) -> list[str]:
    """The daemon's fusermount options minus those only fusermount/libfuse care about."""
    return [o for o in options if o not in IGNORED_OPTIONS and not o.startswith(IGNORED_PREFIXES)]


def reply(ctl: socket.socket, message: str, fd: int | None = None) -> None:
    anc = []
    if fd is not None:
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]).tobytes())]
    ctl.sendmsg([message.encode()], anc)


class Shim:
    """The shim script and the namespace set-up that puts it in place of fusermount."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="fusetrace-fusermount-")
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self.path = os.path.join(self.dir, "fusermount3")
        self.ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # a high number the daemon does not reuse for fusermount's own descriptors
        with theirs:
            high = fcntl.fcntl(theirs.fileno(), fcntl.F_DUPFD_CLOEXEC, CONTROL_FD_MIN)
        self.theirs = socket.socket(fileno=high)
        with open(self.path, "w") as f:
            f.write(SHIM_SOURCE.format(python=sys.executable, root=root, fd=high, pid=os.getpid()))
        os.chmod(self.path, 0o755)
        os.chmod(self.dir, 0o755)
        os.symlink("fusermount3", os.path.join(self.dir, "fusermount"))

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        env[SHIM_FD_ENV] = str(self.theirs.fileno())
        env["PATH"] = self.dir + os.pathsep + env.get("PATH", "/usr/bin:/bin")
        return env

    def preexec(self) -> Callable[[], None]:
        """Runs in the daemon's process between fork and exec."""
        libc = mounts.libc()
        libc.unshare.argtypes = [ctypes.c_int]
        libc.prctl.argtypes = [
            ctypes.c_int,
            ctypes.c_ulong,
            ctypes.c_ulong,
            ctypes.c_ulong,
            ctypes.c_ulong,
        ]
        shim = os.fsencode(self.path)
        targets = [os.fsencode(p) for p in FUSERMOUNT_PATHS if os.path.exists(p)]

        def setup() -> None:
            if libc.unshare(CLONE_NEWNS) != 0:
                os._exit(126)
            libc.mount(None, b"/", None, MS_REC | MS_SLAVE, None)
            for target in targets:
                libc.mount(shim, target, None, MS_BIND, None)
            if libc.prctl(PR_CAPBSET_DROP, CAP_SYS_ADMIN, 0, 0, 0) != 0:
                os._exit(126)

        return setup

    def close(self) -> None:
        """Close the control socket and remove the shim."""
        with contextlib.suppress(OSError):
            self.ours.close()
        with contextlib.suppress(OSError):
            self.theirs.close()
        shutil.rmtree(self.dir, ignore_errors=True)


SYS_OPEN_TREE = {"x86_64": 428, "aarch64": 428}
SYS_MOVE_MOUNT = {"x86_64": 429, "aarch64": 429}
OPEN_TREE_CLONE = 1
MOVE_MOUNT_F_EMPTY_PATH = 4
AT_FDCWD = -100


def attach_in_namespace(pid: int, mountpoint: str) -> None:
    """Make the filesystem mounted on ``mountpoint`` (in our namespace) appear on the same
    path in the mount namespace of process ``pid``: a clone of the mount (open_tree), moved
    there by a short-lived helper that enters that namespace (setns, move_mount). Nothing
    changes in our namespace. The clone keeps the filesystem alive until it is unmounted or
    the namespace ends, so the caller aborts the connection once its own mount is gone."""
    lib = mounts.libc()
    lib.syscall.restype = ctypes.c_long
    open_tree = SYS_OPEN_TREE[os.uname().machine]
    move_mount = SYS_MOVE_MOUNT[os.uname().machine]
    target = os.fsencode(mountpoint)
    tree = int(lib.syscall(open_tree, AT_FDCWD, target, OPEN_TREE_CLONE | os.O_CLOEXEC))
    if tree < 0:
        e = ctypes.get_errno()
        raise EnvironmentProblem(f"cannot clone the mount on {mountpoint}: {os.strerror(e)}")
    try:
        ns = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        os.close(tree)
        raise EnvironmentProblem(f"the daemon's mount namespace is gone: {e.strerror}") from None

    def enter_and_attach() -> None:
        if lib.setns(ns, CLONE_NEWNS) != 0:
            os._exit(3)
        if lib.syscall(move_mount, tree, b"", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) != 0:
            os._exit(4)

    try:
        helper = subprocess.run(
            ["true"], preexec_fn=enter_and_attach, close_fds=True, timeout=30, check=False
        )
    finally:
        os.close(ns)
        os.close(tree)
    if helper.returncode != 0:
        raise EnvironmentProblem(
            f"cannot show the mount on {mountpoint} in the daemon's mount namespace "
            f"(helper step {helper.returncode} failed)"
        )


def links_libfuse3(program: str) -> bool:
    """True if ``program`` is dynamically linked with libfuse 3 (ldd says so)."""
    try:
        out = subprocess.run(["ldd", program], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "libfuse3.so" in out
