"""The hand-offs as record and replay drive them: the choice, the fusermount stand-in's
requests served until the daemon mounts, the seccomp hand-off waiting for the mount."""

from __future__ import annotations

import array
import json
import os
import shutil
import socket
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from fusetrace.proxy import seccomp
from fusetrace.proxy.forward import max_frame_size
from fusetrace.proxy.handoff import (
    FusermountHandoff,
    SeccompHandoff,
    choose_handoff,
    make_socketpair,
    record_handoff,
)


def request(*argv: str, cwd: str = "/home/u") -> bytes:
    return json.dumps({"argv": list(argv), "cwd": cwd}).encode()


def test_auto_handoff_choice(tmp_path: Path) -> None:
    squash = shutil.which("squashfuse_ll")
    unionfs = shutil.which("unionfs-fuse")
    assert squash and unionfs
    assert choose_handoff("auto", ["x", "{}"], [1], "/bin/true") == "fd"
    assert choose_handoff("auto", ["squashfuse_ll", "i", "/m"], [2], squash) == "fd"
    assert choose_handoff("auto", ["unionfs-fuse", "a", "/m"], [2], unionfs) == "fusermount"
    assert choose_handoff("fd", ["unionfs-fuse", "a", "/m"], [2], unionfs) == "fd"
    for go_fuse in ("gocryptfs",):  # statically linked Go: no libfuse at all
        program = shutil.which(go_fuse)
        if program is not None:
            argv = [go_fuse, "-fg", "c", "/m"]
            assert choose_handoff("auto", argv, [3], program) == "fusermount"
    bindfs = shutil.which("bindfs")
    if bindfs is not None:  # libfuse 2
        assert choose_handoff("auto", ["bindfs", "-f", "s", "/m"], [3], bindfs) == "fusermount"
    # record: {} asks for /dev/fd/N; every other daemon mounts as natively, under seccomp
    assert record_handoff("auto", ["x", "-f", "{}"], [2], "/bin/true") == "fd"
    for argv in (["squashfuse_ll", "i", "/m"], ["unionfs-fuse", "a", "/m"], ["ntfs-3g", "i"]):
        assert record_handoff("auto", argv, [2], squash) == "seccomp"
    assert record_handoff("fusermount", ["x", "{}"], [1], squash) == "fusermount"


def test_the_socket_pair_carries_the_largest_frame_in_one_message() -> None:
    ours, theirs = make_socketpair(max_frame_size())
    with ours, theirs:
        assert theirs.type == socket.SOCK_SEQPACKET
        frame = os.urandom(max_frame_size())
        ours.send(frame)
        assert theirs.recv(len(frame) + 1) == frame


def received_fd(sock: socket.socket) -> tuple[bytes, list[int]]:
    msg, anc, _flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(4))
    fds = array.array("i")
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data)
    return msg, list(fds)


def test_fusermount_requests_are_served_until_the_daemon_mounts() -> None:
    """Unmount requests before the mount get "ok", a malformed one its error (raised, or
    skipped as replay asks), the mount request is the caller's to answer: the daemon gets
    the socket end handed over; later requests get the caller's answers."""
    handoff = FusermountHandoff()
    daemon = handoff.shim.theirs  # the stand-in's end, as the daemon's fusermount holds it
    daemon.settimeout(10)
    try:
        daemon.send(request("-u", "-q", "--", "/m"))
        daemon.send(request("-x", "--", "/m"))
        with pytest.raises(ValueError, match="-x"):
            handoff.next_mount(lambda: False)
        assert daemon.recv(4096) == b"ok"
        assert daemon.recv(4096).startswith(b"fusetrace: fusermount option -x")
        daemon.send(request("-x", "--", "/m"))
        daemon.send(request("-o", "rw,fsname=a", "--", "mnt"))
        req = handoff.next_mount(lambda: False, skip_malformed=True)
        assert req is not None and not req.unmount
        assert (req.mountpoint, req.options) == ("/home/u/mnt", ["rw", "fsname=a"])
        assert daemon.recv(4096).startswith(b"fusetrace: fusermount option -x")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        inode = os.fstat(theirs.fileno()).st_ino
        handoff.hand_over(theirs)
        assert theirs.fileno() == -1  # our copy of the daemon's end is closed
        msg, fds = received_fd(daemon)
        assert msg == b"ok" and len(fds) == 1
        assert os.fstat(fds[0]).st_ino == inode
        os.close(fds[0])
        ours.close()
        asked: list[bytes] = []
        handoff.serve_later(lambda payload: (asked.append(payload), "later")[1])
        daemon.send(request("-u", "--", "/m"))
        assert daemon.recv(4096) == b"later"
        assert asked == [request("-u", "--", "/m")]
    finally:
        handoff.close()


def test_fusermount_waiting_ends_when_told_or_when_nobody_can_ask() -> None:
    handoff = FusermountHandoff()
    try:
        assert handoff.next_mount(lambda: True) is None
        handoff.shim.theirs.close()  # the daemon and its fusermount are gone
        done = threading.Event()
        assert handoff.next_mount(lambda: done.is_set()) is None
    finally:
        handoff.close()


CHILD = textwrap.dedent(
    """
    import ctypes, os, sys
    fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    os.write(fd, b"ping")
    libc = ctypes.CDLL(None, use_errno=True)
    opts = f"fd={fd},rootmode=40000,user_id=0,group_id=0"
    print(libc.mount(b"src", sys.argv[1].encode(), b"fuse.t", 6, opts.encode()))
    """
)


@pytest.mark.skipif(seccomp.available() is not None, reason=seccomp.available() or "")
def test_seccomp_handoff_starts_the_daemon_and_waits_for_its_mount(tmp_path: Path) -> None:
    """The daemon started under the filter opens /dev/fuse and mounts as natively; the
    wait ends once the caller served the mount with the socket the daemon got."""
    target = tmp_path / "mnt"
    target.mkdir()
    calls: list[tuple[seccomp.MountCall, socket.socket]] = []

    def on_mount(call: seccomp.MountCall, sock: socket.socket) -> int:
        calls.append((call, sock))
        return 0

    handoff = SeccompHandoff(str(target), on_mount, lambda: 0)
    try:
        proc = handoff.spawn(
            [sys.executable, "-c", CHILD, str(target)], sys.executable, stdout_to_stderr=False
        )
        assert handoff.wait_for_mount(lambda: proc.poll() not in (None, 0))
        assert proc.proc.wait(60) == 0
        ((call, sock),) = calls
        assert (call.source, call.fstype) == ("src", "fuse.t")
        assert sock.recv(16) == b"ping"
        assert handoff.supervisor.events.opened == 1
    finally:
        handoff.close()


@pytest.mark.skipif(seccomp.available() is not None, reason=seccomp.available() or "")
def test_seccomp_waiting_ends_when_told() -> None:
    handoff = SeccompHandoff("/nowhere", lambda _call, _sock: 0, lambda: 0)
    try:
        assert not handoff.wait_for_mount(lambda: True)
    finally:
        handoff.close()
