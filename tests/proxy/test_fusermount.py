"""The fusermount stand-in: parsing what the daemon asks for."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fusetrace.proxy import fusermount
from fusetrace.proxy import mount as mounts


def request(*argv: str, cwd: str = "/home/u") -> bytes:
    return json.dumps({"argv": list(argv), "cwd": cwd}).encode()


def test_mount_request_as_libfuse_sends_it() -> None:
    req = fusermount.parse_request(
        request("-o", "rw,nosuid,nodev,fsname=a\\,b,subtype=unionfs", "--", "mnt")
    )
    assert not req.unmount
    assert req.mountpoint == "/home/u/mnt"
    assert req.options == ["rw", "nosuid", "nodev", "fsname=a,b", "subtype=unionfs"]


def test_unmount_request() -> None:
    req = fusermount.parse_request(request("-u", "-q", "-z", "--", "/mnt/x"))
    assert req.unmount and req.mountpoint == "/mnt/x"


def test_unknown_fusermount_flag_is_refused() -> None:
    with pytest.raises(ValueError, match="-x"):
        fusermount.parse_request(request("-x", "--", "/m"))
    with pytest.raises(ValueError, match="mountpoint"):
        fusermount.parse_request(request("-o", "ro"))


def test_libfuse_only_options_are_not_passed_to_the_kernel() -> None:
    opts = ["nonempty", "auto_unmount", "user=alice", "allow_other", "max_read=4096", "ro"]
    assert fusermount.kernel_options(opts) == ["allow_other", "max_read=4096", "ro"]


def test_mount_request_as_go_fuse_sends_it() -> None:
    # go-fuse: fusermount3 MOUNTPOINT -o OPTIONS, no "--" (fuse/mount_linux.go)
    req = fusermount.parse_request(
        request("/tmp/m", "-o", "max_read=131072,fsname=/c,subtype=gocryptfs", cwd="/")
    )
    assert not req.unmount and req.mountpoint == "/tmp/m"
    assert req.options == ["max_read=131072", "fsname=/c", "subtype=gocryptfs"]


def run_shim(shim: fusermount.Shim, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The shim as a daemon would run it, answered in a thread: ``ok`` and a descriptor."""
    comm_ours, comm_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    proc = subprocess.Popen(
        [shim.path, "/tmp/m", "-o", "ro"],
        env={**env, fusermount.COMMFD_ENV: str(comm_theirs.fileno())},
        pass_fds=[shim.theirs.fileno(), comm_theirs.fileno()],
        stderr=subprocess.PIPE,
    )
    comm_theirs.close()
    shim.theirs.close()
    payload = shim.ours.recv(65536)
    assert fusermount.parse_request(payload).mountpoint == "/tmp/m"
    r, w = os.pipe()
    fusermount.reply(shim.ours, "ok", r)
    os.close(r)
    _msg, anc, _flags, _addr = comm_ours.recvmsg(16, socket.CMSG_SPACE(4))
    (level, kind, data) = anc[0]
    assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
    got = int.from_bytes(data[:4], sys.byteorder)
    os.write(w, b"through")
    assert os.read(got, 16) == b"through"  # the very pipe fusetrace handed over
    for fd in (got, w):
        os.close(fd)
    comm_ours.close()
    proc.wait(20)
    return proc


def test_shim_finds_the_control_socket_without_its_environment() -> None:
    # go-fuse starts fusermount with nothing but _FUSE_COMMFD=3 in its environment
    shim = fusermount.Shim()
    try:
        assert shim.theirs.fileno() >= fusermount.CONTROL_FD_MIN
        proc = run_shim(shim, {})
        assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        shim.close()


def test_shim_refuses_a_socket_that_is_not_fusetraces() -> None:
    """At the shim's descriptor number, a SEQPACKET socket made by another process (its
    peer is not the fusetrace written in the shim) is not taken for the control socket."""
    shim = fusermount.Shim()
    try:
        fd = shim.theirs.fileno()
        shim.theirs.close()
        other = (
            "import os, socket, sys\n"
            "a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
            f"os.dup2(a.fileno(), {fd})\n"
            f"os.execve({shim.path!r}, [{shim.path!r}, '/tmp/m'], {{}})\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", other], env={}, capture_output=True, timeout=20
        )
    finally:
        shim.close()
    assert proc.returncode == 1
    assert b"fusetrace control socket missing" in proc.stderr


def test_shim_without_any_control_socket_says_so() -> None:
    shim = fusermount.Shim()
    try:
        fd = shim.theirs.fileno()
        shim.theirs.close()
        r, w = os.pipe()
        os.dup2(r, fd)  # a pipe where the control socket should be
        proc = subprocess.run(
            [shim.path, "/tmp/m"], env={}, pass_fds=[fd], capture_output=True, timeout=20
        )
        for x in (r, w, fd):
            os.close(x)
    finally:
        shim.close()
    assert proc.returncode == 1
    assert b"fusetrace control socket missing" in proc.stderr


@pytest.mark.mount
def test_attach_in_namespace_shows_a_mount_only_there(tmp_path: Path) -> None:
    """A private mountpoint: the mount made here is cloned into another process's mount
    namespace; this namespace gains nothing (no bind of the mountpoint on itself)."""
    where = os.path.realpath(tmp_path)
    subprocess.run(["mount", "--bind", where, where], check=True)
    mnt = os.path.join(where, "mnt")
    other = None
    try:
        subprocess.run(["mount", "--make-private", where], check=True)
        os.mkdir(mnt)
        assert not mounts.shared_at(mnt)
        other = subprocess.Popen(
            ["unshare", "-m", "--propagation", "slave", "sleep", "60"],
        )
        ns = f"/proc/{other.pid}/ns/mnt"
        deadline = time.monotonic() + 10
        while os.readlink(ns) == os.readlink("/proc/self/ns/mnt"):  # until unshare ran
            assert time.monotonic() < deadline
            time.sleep(0.01)
        before = Path("/proc/self/mountinfo").read_text()
        subprocess.run(["mount", "-t", "tmpfs", "marker", mnt], check=True)
        fusermount.attach_in_namespace(other.pid, mnt)
        theirs = Path(f"/proc/{other.pid}/mountinfo").read_text()
        assert f" {mnt} " in theirs and " - tmpfs marker " in theirs
        subprocess.run(["umount", mnt], check=True)
        assert Path("/proc/self/mountinfo").read_text() == before
    finally:
        if other is not None:
            other.kill()
            other.wait()
        subprocess.run(["umount", "-R", where], check=True)
