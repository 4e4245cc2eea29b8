"""The seccomp hand-off: unmodified daemons open /dev/fuse and mount as they do natively.

Each daemon here is started with its ordinary command line (no ``{}``, no wrapper): it
mounts by itself (ntfs-3g's fuse-lite, mergerfs's own libfuse, libfuse 3 as root) or
through a helper (rclone runs fusermount3). Reads are compared with the source, writes
with the same operations done natively, the mount with the native one, and the capture
must check clean and replay against the same daemon with no difference.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from fusetrace.capture.files import open_capture
from fusetrace.protocol.abi import opcode_name
from fusetrace.proxy import seccomp
from tests.support.mount import (
    fusetrace_cmd,
    fusetrace_env,
    is_mounted,
    native_mount,
    recording,
)

pytestmark = pytest.mark.skipif(seccomp.available() is not None, reason=seccomp.available() or "")


def need(*programs: str) -> None:
    for program in programs:
        if shutil.which(program) is None:
            pytest.skip(f"{program} is not installed (scripts/install-deps)")


# ---- the hand-off without a mount ------------------------------------------------------
CHILD = textwrap.dedent(
    """
    import ctypes, errno, fcntl, os, stat, struct, sys
    fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    print(stat.S_ISSOCK(os.fstat(fd).st_mode), fcntl.fcntl(fd, fcntl.F_GETFD))
    os.write(fd, b"ping")
    other = os.open("/dev/null", os.O_RDWR)
    print(stat.S_ISCHR(os.fstat(other).st_mode))
    libc = ctypes.CDLL(None, use_errno=True)
    print(libc.syscall(430, b"fuse", 0), ctypes.get_errno())  # fsopen
    opts = f"fd={fd},rootmode=40000,user_id=0,group_id=0,default_permissions"
    rc = libc.mount(b"src", sys.argv[1].encode(), b"fuse.t", 6, opts.encode())
    print(rc, ctypes.get_errno() if rc else 0)
    clone = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)  # as libfuse -o clone_fd does
    print(stat.S_ISCHR(os.fstat(clone).st_mode))
    try:
        fcntl.ioctl(clone, 0x8004E500, struct.pack("=I", fd))  # FUSE_DEV_IOC_CLONE
    except OSError as e:
        print(errno.errorcode[e.errno])
    """
)


def test_open_and_mount_are_answered_without_mounting(tmp_path: Path) -> None:
    """A child under the filter: its open of /dev/fuse gets fusetrace's socket (with
    O_CLOEXEC), other opens go on, fsopen says ENOSYS, and its mount(2) reaches fusetrace
    with the daemon's type, source, flags and options; nothing is mounted. A later open
    (clone_fd) gets the real device."""
    target = tmp_path / "mnt"
    target.mkdir()
    calls: list[tuple[seccomp.MountCall, socket.socket]] = []

    def on_mount(call: seccomp.MountCall, sock: socket.socket) -> int:
        calls.append((call, sock))
        return 0

    sup = seccomp.Supervisor(
        str(target),
        lambda: socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET),
        on_mount,
        lambda: 0,
    )
    sup.start()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(target)],
            stdout=subprocess.PIPE,
            preexec_fn=sup.preexec(),
        )
        sup.spawned()
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        lines = out.decode().splitlines()
        assert lines[0] == "True 1"  # a socket, close-on-exec as asked
        assert lines[1] == "True"  # /dev/null opened for real
        assert lines[2] == f"-1 {38}"  # ENOSYS
        assert lines[3] == "0 0"
        # once mounted, a clone_fd open gets the real device, which refuses to clone the
        # socket with EINVAL, as /dev/fuse refuses anything that is not a FUSE device
        assert lines[4:] == ["True", "EINVAL"]
        ((call, sock),) = calls
        assert (call.source, call.fstype, call.flags) == ("src", "fuse.t", 6)
        assert os.path.realpath(call.target) == os.path.realpath(target)
        assert call.options == ["rootmode=40000", "user_id=0", "group_id=0", "default_permissions"]
        assert call.data(9) == "fd=9," + ",".join(call.options)
        assert sock.recv(16) == b"ping"
        assert not is_mounted(target)
        assert sup.events.opened == 1
    finally:
        sup.close()


def test_filter_program_shape() -> None:
    arch = seccomp.this_arch()
    assert arch is not None
    code = seccomp.build_filter(arch)
    assert len(code) % 8 == 0 and len(code) // 8 < 64
    # the last instruction allows; some instruction kills (a foreign architecture)
    last = int.from_bytes(code[-4:], sys.byteorder)
    assert last == seccomp.SECCOMP_RET_ALLOW
    words = [int.from_bytes(code[i + 4 : i + 8], sys.byteorder) for i in range(0, len(code), 8)]
    assert seccomp.SECCOMP_RET_KILL_PROCESS in words
    assert seccomp.SECCOMP_RET_ERRNO | 38 in words


# ---- helpers for real daemons ----------------------------------------------------------
def mount_entry(mnt: Path) -> tuple[str, str, str, str]:
    """(fstype, source, mount options, superblock options) of the mount on ``mnt``."""
    real = os.path.realpath(mnt)
    found = None
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        parts = line.split()
        sep = parts.index("-")
        if parts[4] == real:
            found = (parts[sep + 1], parts[sep + 2], parts[5], parts[sep + 3])
    assert found is not None, f"nothing mounted on {mnt}"
    return found


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root``: type and size, and a digest of the contents."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in dirnames:
            out[os.path.relpath(os.path.join(dirpath, name), root)] = "dir"
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()[:16]
            out[os.path.relpath(path, root)] = f"file {os.path.getsize(path)} {digest}"
    return out


def writes(root: Path, edit: bool = True) -> None:
    """A small realistic write workload: new files, a directory, rename, append,
    truncate and overwrite in place (``edit``), unlink, rmdir."""
    payload = hashlib.sha256(b"seed").digest() * 10_000  # 320 KB, always the same
    (root / "docs").mkdir()
    (root / "docs" / "a.txt").write_text("first line\n")
    with open(root / "docs" / "a.txt", "a") as f:
        f.write("appended\n")
    (root / "big.bin").write_bytes(payload)
    if edit:
        with open(root / "big.bin", "r+b") as f:
            f.seek(100_000)
            f.write(b"overwritten in place")
        os.truncate(root / "big.bin", 250_000)
    (root / "gone.txt").write_text("soon gone\n")
    os.rename(root / "docs" / "a.txt", root / "docs" / "b.txt")
    os.unlink(root / "gone.txt")
    (root / "empty").mkdir()
    os.rmdir(root / "empty")


def plain_writes(tmp_path: Path, edit: bool = True) -> dict[str, str]:
    """What :func:`writes` leaves on a plain local directory."""
    d = tmp_path / "plain"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir()
    writes(d, edit)
    return snapshot(d)


def replay(
    capture: Path, daemon: list[str], env: dict[str, str] | None = None, stdin: str = ""
) -> dict:
    r = subprocess.run(
        fusetrace_cmd(
            "replay", "--handoff", "seccomp", "--format", "json", str(capture), "--", *daemon
        ),
        input=stdin,
        capture_output=True,
        text=True,
        env=fusetrace_env(env),
        timeout=180,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    report: dict = json.loads(r.stdout)
    return report


def meta(capture: Path) -> dict:
    with open_capture(str(capture)) as reader:
        list(reader)
        return dict(reader.info.meta)


def squash_image(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "src"
    (src / "dir").mkdir(parents=True)
    (src / "dir" / "n.txt").write_text("".join(f"{i}\n" for i in range(20_000)))
    (src / "hello.txt").write_text("hello\n")
    os.symlink("hello.txt", src / "link")
    image = tmp_path / "i.sqfs"
    subprocess.run(
        ["mksquashfs", str(src), str(image), "-quiet", "-no-progress"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return src, image


# ---- real daemons ----------------------------------------------------------------------
@pytest.mark.mount
def test_libfuse3_daemon_mounting_by_itself(mountpoint: Path, tmp_path: Path) -> None:
    """squashfuse_ll given the real mountpoint (no {}) mounts by itself, as root: the mount
    is the native one, field for field, and the reads are the source's."""
    need("squashfuse_ll", "mksquashfs")
    src, image = squash_image(tmp_path)
    daemon = ["squashfuse_ll", "-f", str(image), str(mountpoint)]
    with native_mount(daemon, mountpoint):
        native = mount_entry(mountpoint)
    with recording(daemon, mountpoint, tmp_path / "s.pcapng") as rec:
        assert mount_entry(mountpoint) == native
        assert snapshot(mountpoint) == snapshot(src)
        assert os.readlink(mountpoint / "link") == "hello.txt"
    m = meta(rec.capture)
    assert m["handoff"] == "seccomp"
    assert (m["mount_type"], m["mount_source"]) == (native[0], native[1])
    report = replay(rec.capture, daemon)
    assert report["summary"]["differences"] == 0


@pytest.mark.mount
def test_ntfs3g_fuse_lite(mountpoint: Path, tmp_path: Path) -> None:
    """ntfs-3g (its integrated fuse-lite opens /dev/fuse and mounts by itself) on an image
    made with mkntfs: mount as native, writes as native, replay without a difference."""
    need("ntfs-3g", "mkntfs")
    fresh = tmp_path / "fresh.img"
    with open(fresh, "wb") as f:
        f.truncate(32 << 20)
    subprocess.run(["mkntfs", "-F", "-f", "-q", str(fresh)], check=True, capture_output=True)
    image = tmp_path / "disk.img"  # one path, so that the mounts' sources are equal

    def fresh_image() -> None:
        subprocess.run(["cp", "--sparse=always", str(fresh), str(image)], check=True)

    daemon = ["ntfs-3g", "-o", "no_detach", str(image), str(mountpoint)]
    fresh_image()
    with native_mount(daemon, mountpoint):
        native_entry = mount_entry(mountpoint)
        writes(mountpoint)
        native = snapshot(mountpoint)
    fresh_image()
    # when two FORGETs are queued at once the kernel sends BATCH_FORGET (minor 18 >= 16),
    # which ntfs-3g's fuse-lite does not know: it answers ENOSYS to a message that takes no
    # reply, and the kernel refuses that answer with ENOENT, natively as traced
    batch_forget = {"FT106": "ntfs-3g's fuse-lite answers BATCH_FORGET with ENOSYS"}
    with recording(daemon, mountpoint, tmp_path / "n.pcapng", allow=batch_forget) as rec:
        assert mount_entry(mountpoint) == native_entry
        writes(mountpoint)
        traced = snapshot(mountpoint)
    assert traced == native == plain_writes(tmp_path)
    with open_capture(str(rec.capture)) as reader:
        frames = list(reader)
    for finding in rec.allowed:  # the only reply to a no-reply message: to a BATCH_FORGET
        (request,) = finding.related
        assert opcode_name(int.from_bytes(frames[request].data[4:8], "little")) == (
            "BATCH_FORGET"
        ), finding.describe()
    assert meta(rec.capture)["handoff"] == "seccomp"
    fresh_image()
    report = replay(rec.capture, daemon)
    assert report["summary"]["differences"] == 0


@pytest.mark.mount
def test_rclone_mount_of_a_local_directory(mountpoint: Path, tmp_path: Path) -> None:
    """``rclone mount SRC MNT`` as users write it: rclone refuses a mountpoint that already
    looks mounted, then runs fusermount3, whose open and mount are served."""
    need("rclone")
    src = tmp_path / "remote"
    (src / "in").mkdir(parents=True)
    (src / "in" / "data.txt").write_text("from the remote\n" * 1000)
    before = tmp_path / "before"
    shutil.copytree(src, before)
    env = {"RCLONE_CONFIG": str(tmp_path / "rclone.conf")}
    daemon = [
        "rclone",
        "mount",
        "--vfs-cache-mode",
        "writes",
        "--cache-dir",
        str(tmp_path / "cache"),
        str(src),
        str(mountpoint),
    ]
    with recording(daemon, mountpoint, tmp_path / "r.pcapng", env=env) as rec:
        assert snapshot(mountpoint) == snapshot(before)
        writes(mountpoint / "in", edit=False)  # (rclone fails a truncate after a write)
        got = snapshot(mountpoint / "in")  # (uploads to SRC happen in the background)
    expect = plain_writes(tmp_path, edit=False)
    assert {k: v for k, v in got.items() if k != "data.txt"} == expect
    m = meta(rec.capture)
    assert (m["handoff"], m["mount_type"]) == ("seccomp", "fuse.rclone")
    shutil.rmtree(src)
    shutil.rmtree(tmp_path / "cache")  # files written through the cache, maybe not uploaded
    shutil.copytree(before, src)
    report = replay(rec.capture, daemon, env)
    assert report["summary"]["differences"] == 0


@pytest.mark.mount
def test_mergerfs_two_branches(mountpoint: Path, tmp_path: Path) -> None:
    """mergerfs mounts through its own libfuse (mergerfs-fusermount only when not root)."""
    need("mergerfs")
    b1, b2 = tmp_path / "b1", tmp_path / "b2"
    (b1 / "shared").mkdir(parents=True)
    (b2 / "shared").mkdir(parents=True)
    (b1 / "shared" / "one.txt").write_text("branch one\n")
    (b2 / "two.txt").write_text("branch two\n")
    pristine = tmp_path / "pristine"
    for b in (b1, b2):
        shutil.copytree(b, pristine / b.name)
    daemon = ["mergerfs", "-f", "-o", "category.create=ff", f"{b1}:{b2}", str(mountpoint)]
    with recording(daemon, mountpoint, tmp_path / "m.pcapng") as rec:
        union = snapshot(mountpoint)
        assert union == {**snapshot(b1), **snapshot(b2)}
        writes(mountpoint / "shared")
        after = snapshot(mountpoint / "shared")
    assert {k: v for k, v in after.items() if k != "one.txt"} == plain_writes(tmp_path)
    assert (b1 / "shared" / "big.bin").exists()  # first found branch takes new files
    assert meta(rec.capture)["mount_type"] == "fuse.mergerfs"
    for b in (b1, b2):
        shutil.rmtree(b)
        shutil.copytree(pristine / b.name, b)
    report = replay(rec.capture, daemon)
    assert report["summary"]["differences"] == 0


@pytest.mark.mount
def test_fuse2fs_libfuse2_as_root(mountpoint: Path, tmp_path: Path) -> None:
    """fuse2fs (libfuse 2) mounts by itself as root: the mount is the native one, an ext2
    image written through it holds what a plain directory holds, and the capture replays
    on a fresh image."""
    need("fuse2fs", "mkfs.ext2")
    fresh, image = tmp_path / "fresh.img", tmp_path / "disk.img"
    with open(fresh, "wb") as f:
        f.truncate(16 << 20)
    subprocess.run(["mkfs.ext2", "-q", "-F", str(fresh)], check=True)
    shutil.copy(fresh, image)
    daemon = ["fuse2fs", "-f", str(image), str(mountpoint)]
    with native_mount(daemon, mountpoint):
        native = mount_entry(mountpoint)
    shutil.copy(fresh, image)
    with recording(daemon, mountpoint, tmp_path / "e.pcapng") as rec:
        assert mount_entry(mountpoint) == native
        writes(mountpoint)
        traced = snapshot(mountpoint)
    del traced["lost+found"]
    assert traced == plain_writes(tmp_path)
    assert meta(rec.capture)["handoff"] == "seccomp"
    shutil.copy(fresh, image)
    assert replay(rec.capture, daemon)["summary"]["differences"] == 0


@pytest.mark.mount
def test_cryfs_reads_its_password_from_stdin(mountpoint: Path, tmp_path: Path) -> None:
    """cryfs asks for a password on stdin; piped to fusetrace, it reaches the daemon, and
    the capture replays against the same encrypted filesystem with no difference."""
    need("cryfs")
    base, home = tmp_path / "base", tmp_path / "home"
    base.mkdir()
    home.mkdir()
    env = {
        "HOME": str(home),
        "CRYFS_FRONTEND": "noninteractive",
        "CRYFS_NO_UPDATE_CHECK": "true",
        "CRYFS_LOCAL_STATE_DIR": str(home / "state"),
    }
    daemon = ["cryfs", "-f", "--allow-replaced-filesystem", str(base), str(mountpoint)]
    # an empty filesystem first, kept as it was for the replay
    with recording(
        daemon, mountpoint, tmp_path / "init.pcapng", env=env, stdin=b"pass phrase\n",
        ready_timeout=180,
    ):  # fmt: skip
        pass
    # cryfs keeps what it last saw of the blocks in its local state (rollback protection):
    # both are kept as they were
    before, before_home = tmp_path / "before", tmp_path / "before-home"
    shutil.copytree(base, before)
    shutil.copytree(home, before_home)
    with recording(
        daemon,
        mountpoint,
        tmp_path / "c.pcapng",
        env=env,
        stdin=b"pass phrase\n",
        ready_timeout=180,
    ) as rec:
        writes(mountpoint)
        traced = snapshot(mountpoint)
    assert traced == plain_writes(tmp_path)
    assert (base / "cryfs.config").exists()
    assert meta(rec.capture)["handoff"] == "seccomp"
    # the same session against the filesystem as it was before it: the password goes to
    # replay's stdin, which the daemon reads as under record
    for now, then in ((base, before), (home, before_home)):
        shutil.rmtree(now)
        shutil.copytree(then, now)
    report = replay(rec.capture, daemon, env, stdin="pass phrase\n")
    assert report["summary"]["differences"] == 0, report["differences"]


# ---- endings ---------------------------------------------------------------------------
@pytest.mark.mount
@pytest.mark.parametrize("handoff", ["seccomp", "fusermount"])
@pytest.mark.parametrize("ending", ["daemon killed", "SIGINT"])
def test_endings_leave_nothing_behind(
    handoff: str, ending: str, mountpoint: Path, tmp_path: Path
) -> None:
    """The recording helper fails the test if a mount or a process is left."""
    need("squashfuse_ll", "mksquashfs")
    _src, image = squash_image(tmp_path)
    with recording(
        ["squashfuse_ll", "-f", str(image), str(mountpoint)],
        mountpoint,
        tmp_path / "e.pcapng",
        record_args=["--handoff", handoff],
        check_clean=False,
    ) as rec:
        assert (mountpoint / "hello.txt").read_text() == "hello\n"
        if ending == "SIGINT":
            rec.signal(signal.SIGINT)
            assert rec.wait(30) == 130
        else:
            for pid in rec.daemon_pids():
                os.kill(pid, signal.SIGKILL)
            assert rec.wait(30) == 128 + signal.SIGKILL
        assert not is_mounted(mountpoint)
    assert rec.frames()


@pytest.mark.mount
def test_a_daemon_that_never_mounts_is_explained(mountpoint: Path, tmp_path: Path) -> None:
    r = subprocess.run(
        fusetrace_cmd(
            "record",
            "-w",
            str(tmp_path / "x.pcapng"),
            str(mountpoint),
            "--",
            "sh",
            "-c",
            "echo giving up >&2; exit 3",
        ),
        capture_output=True,
        text=True,
        env=fusetrace_env(),
        timeout=60,
    )
    assert r.returncode == 4
    line = [ln for ln in r.stderr.splitlines() if ln.startswith("fusetrace: error:")]
    assert len(line) == 1, r.stderr
    assert "seccomp hand-off" in line[0]
    assert "exit status 3" in line[0] and "never opened /dev/fuse" in line[0]
    assert "giving up" in line[0]
    assert not is_mounted(mountpoint)


@pytest.mark.mount
@pytest.mark.parametrize("handoff", ["seccomp", "fusermount"])
def test_nothing_is_mounted_before_the_daemon_mounts(
    handoff: str, mountpoint: Path, tmp_path: Path
) -> None:
    """What the daemon and the user's scripts see on the mountpoint before the daemon's
    own mount: nothing, in the daemon's mount namespace and in fusetrace's (rclone refuses a
    mountpoint that looks mounted; readiness checks would pass too early)."""
    need("squashfuse_ll", "mksquashfs")
    _src, image = squash_image(tmp_path)
    seen = tmp_path / "seen"
    script = (
        f'if mountpoint -q "$1"; then echo daemon:mounted; else echo daemon:free; fi > {seen}; '
        f'grep -c " $1 " /proc/$PPID/mountinfo >> {seen}; '
        f'exec squashfuse_ll -f {image} "$1"'
    )
    with recording(
        ["sh", "-c", script, "sh", str(mountpoint)],
        mountpoint,
        tmp_path / "b.pcapng",
        record_args=["--handoff", handoff],
    ):
        assert (mountpoint / "hello.txt").read_text() == "hello\n"
    assert seen.read_text().split() == ["daemon:free", "0"]


#: a raw FUSE daemon: opens /dev/fuse and mounts by itself, answers INIT, sends a
#: NOTIFY_INVAL_ENTRY for a parent the kernel does not know (natively refused with ENOENT),
#: writes what its write() returned to a file, then answers GETATTR of the root and every
#: other request with ENOSYS
RAW_DAEMON = textwrap.dedent(
    """
    import ctypes, errno, os, struct, sys
    mnt, report = sys.argv[1], sys.argv[2]
    fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    libc = ctypes.CDLL(None, use_errno=True)
    opts = f"fd={fd},rootmode=40000,user_id=0,group_id=0".encode()
    if libc.mount(b"raw", mnt.encode(), b"fuse.raw", 6, opts) != 0:
        sys.exit(f"mount: {os.strerror(ctypes.get_errno())}")
    init = os.read(fd, 1 << 20)
    unique = struct.unpack_from("=Q", init, 8)[0]
    body = struct.pack("=IIIIHHIIHHII", 7, 31, 0, 0, 16, 12, 65536, 1, 32, 0, 0, 0)
    body += bytes(64 - len(body))
    os.write(fd, struct.pack("=IiQ", 16 + len(body), 0, unique) + body)
    name = b"nothing"
    note = struct.pack("=QII", 987654321, len(name), 0) + name + b"\\0"
    try:
        os.write(fd, struct.pack("=IiQ", 16 + len(note), 3, 0) + note)
        result = "ok"
    except OSError as e:
        result = errno.errorcode[e.errno]
    with open(report, "w") as f:
        f.write(result)
    while True:
        try:
            req = os.read(fd, 1 << 20)
        except OSError:
            break
        if not req:
            break
        length, opcode, unique = struct.unpack_from("=IIQ", req)
        if opcode in (2, 42):  # FORGET, BATCH_FORGET: no reply
            continue
        if opcode == 3:  # GETATTR: the root, an empty directory
            attr = struct.pack("=6Q10I", 1, 0, 0, 0, 0, 0, 0, 0, 0, 0o40755, 2, 0, 0, 0, 4096, 0)
            out = struct.pack("=QII", 1, 0, 0) + attr + bytes(88 - len(attr))
            reply = struct.pack("=IiQ", 16 + len(out), 0, unique) + out
        else:
            reply = struct.pack("=IiQ", 16, -errno.ENOSYS, unique)
        try:
            os.write(fd, reply)
        except OSError:
            pass
    """
)


@pytest.mark.mount
@pytest.mark.parametrize("sync", [False, True])
def test_sync_writes_give_the_daemon_the_kernels_answer(
    sync: bool, mountpoint: Path, tmp_path: Path
) -> None:
    """A notification the kernel refuses (ENOENT: no such parent): natively the daemon's
    write() fails with ENOENT; traced with --sync-writes too; without it the daemon's write
    to the socket succeeds (the man page says so)."""
    script = tmp_path / "raw.py"
    script.write_text(RAW_DAEMON)
    report = tmp_path / "report"
    daemon = [sys.executable, str(script), str(mountpoint), str(report)]
    with native_mount(daemon, mountpoint):
        pass
    assert report.read_text() == "ENOENT"
    report.unlink()
    args = ["--sync-writes"] if sync else []
    with recording(
        daemon, mountpoint, tmp_path / "w.pcapng", record_args=args, check_clean=False
    ) as rec:
        os.stat(mountpoint)
    assert rec.returncode == 0, rec.stderr
    assert report.read_text() == ("ENOENT" if sync else "ok")
    assert "kernel refused 1 ENOENT" in rec.stderr


def test_sync_writes_need_the_seccomp_handoff(mountpoint: Path, tmp_path: Path) -> None:
    r = subprocess.run(
        fusetrace_cmd(
            "record",
            "--sync-writes",
            "-w",
            str(tmp_path / "x.pcapng"),
            str(mountpoint),
            "--",
            "squashfuse_ll",
            "-f",
            "img",
            "{}",
        ),
        capture_output=True,
        text=True,
        env=fusetrace_env(),
        timeout=60,
    )
    assert r.returncode == 2, r.stderr
    assert "--sync-writes needs the seccomp hand-off" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.fixture
def ntfs_block_device(tmp_path: Path) -> Iterator[str]:
    """A loop device holding a fresh NTFS: ntfs-3g mounts a block device as fuseblk."""
    need("ntfs-3g", "mkntfs", "losetup")
    image = tmp_path / "blk.img"
    with open(image, "wb") as f:
        f.truncate(32 << 20)
    subprocess.run(["mkntfs", "-F", "-f", "-q", str(image)], check=True, capture_output=True)
    r = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"no loop device: {r.stderr.strip()}")
    device = r.stdout.strip()
    try:
        yield device
    finally:
        subprocess.run(["losetup", "-d", device], check=True)


@pytest.mark.mount
@pytest.mark.parametrize("ending", ["umount", "daemon killed"])
def test_fuseblk_mount_ends_cleanly(
    ending: str, ntfs_block_device: str, mountpoint: Path, tmp_path: Path
) -> None:
    """ntfs-3g on a block device mounts fuseblk, whose unmount sends DESTROY and waits for
    the answer: after a crash nobody answers, so fusetrace aborts the connection first
    (its name is the block device's number, not a minor) instead of hanging."""
    daemon = ["ntfs-3g", "-o", "no_detach", ntfs_block_device, str(mountpoint)]
    with recording(
        daemon, mountpoint, tmp_path / "blk.pcapng", check_clean=ending == "umount"
    ) as rec:
        assert mount_entry(mountpoint)[:2] == ("fuseblk", ntfs_block_device)
        (mountpoint / "kept").write_text("kept\n")
        if ending == "daemon killed":
            for pid in rec.daemon_pids():
                os.kill(pid, signal.SIGKILL)
            assert rec.wait(30) == 128 + signal.SIGKILL
            assert not is_mounted(mountpoint)
    if ending == "umount":
        with native_mount(daemon, mountpoint):
            assert (mountpoint / "kept").read_text() == "kept\n"
