"""The fusermount handoff: fusetrace stands in for fusermount3/fusermount.

Daemons that mount through fusermount (libfuse 2 daemons such as unionfs-fuse, fuse-zip,
bindfs; libfuse 3 daemons that are not allowed to mount) fork and exec
``fusermount3 -o OPTIONS -- MOUNTPOINT`` (libfuse 2: ``fusermount``) with a socket whose
number is in ``_FUSE_COMMFD``, and receive the /dev/fuse descriptor over it (SCM_RIGHTS).
libfuse execs ``/usr/bin/fusermount3`` first and falls back to a PATH search; it only takes
that path when its own mount(2) fails with EPERM.

So the daemon runs in a mount namespace of its own (a slave of ours, so it still sees our
mounts) in which both fusermount paths are bind mounts of a small shim, with
CAP_SYS_ADMIN dropped from its capability bounding set (its own mount(2) then fails with
EPERM, and libfuse turns to "fusermount"). The shim forwards its command line to
fusetrace over an inherited control socket; fusetrace checks the options, mounts /dev/fuse
itself, and hands back the daemon's end of the proxy socket, which the shim passes on
through ``_FUSE_COMMFD``. Nothing the daemon did not ask for is granted: its own -o
options decide the mount (plus fusetrace's own -o, which the user gave explicitly).
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

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
MS_BIND = 4096
MS_REC = 16384
MS_SLAVE = 1 << 19
PR_CAPBSET_DROP = 24
CAP_SYS_ADMIN = 21

SHIM_SOURCE = """#!{python}
# fusetrace stands in for fusermount for this daemon
import sys
sys.path.insert(0, {root!r})
from fusetrace.proxy.fusermount import shim_main
sys.exit(shim_main(sys.argv))
"""


# ---- the shim (runs as fusermount3 inside the daemon's namespace) -----------------------
def shim_main(argv: list[str]) -> int:
    """Entry point of the shim: relay the request, pass the descriptor on."""
    prog = os.path.basename(argv[0]) or "fusermount3"
    try:
        ctl = socket.socket(fileno=int(os.environ[SHIM_FD_ENV]))
    except (KeyError, ValueError, OSError):
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
        with open(self.path, "w") as f:
            f.write(SHIM_SOURCE.format(python=sys.executable, root=root))
        os.chmod(self.path, 0o755)
        os.chmod(self.dir, 0o755)
        os.symlink("fusermount3", os.path.join(self.dir, "fusermount"))
        self.ours, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)

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
        with contextlib.suppress(OSError):
            self.ours.close()
        with contextlib.suppress(OSError):
            self.theirs.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def links_libfuse3(program: str) -> bool:
    """True if ``program`` is dynamically linked with libfuse 3 (ldd says so)."""
    try:
        out = subprocess.run(["ldd", program], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "libfuse3.so" in out
