"""Real daemons behind the proxy, with real workloads, checked against the source."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import mmap
import os
import pwd
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fusetrace.capture.files import open_capture
from fusetrace.frame import Direction, Frame
from fusetrace.proxy import daemon as daemons
from tests.support.mount import is_mounted, native_mount, recording

SUPPORT = Path(__file__).resolve().parent.parent / "support"


def check_capture(frames: list[Frame]) -> None:
    """Frame lengths right, INIT first, every reply answering an earlier request."""
    assert frames[0].direction is Direction.INBOUND
    assert struct.unpack_from("=I", frames[0].data, 4)[0] == 26
    seen: set[int] = set()
    for fr in frames:
        # the header's length is the frame's; --snaplen may have cut the stored bytes
        assert struct.unpack_from("=I", fr.data)[0] == fr.orig_len >= len(fr.data)
        unique = struct.unpack_from("=Q", fr.data, 8)[0]
        if fr.direction is Direction.INBOUND:
            seen.add(unique)
        elif unique:
            assert unique & ~1 in seen


def sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def file_tree(base: Path, dirs: int) -> tuple[Path, Path]:
    """``dirs`` directories of 100 small files each, and a tar of them."""
    src = base / "tree"
    for d in range(dirs):
        sub = src / f"d{d:02d}"
        sub.mkdir(parents=True)
        for f in range(100):
            (sub / f"f{f:03d}").write_bytes(f"{d}/{f}\n".encode() * (f % 7 + 1))
    tar = base / "tree.tar"
    with tarfile.open(tar, "w") as t:
        t.add(src, arcname="tree")
    return src, tar


@pytest.fixture(scope="module")
def many_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tree of 3,000 small files in 30 directories, and a tar of it."""
    return file_tree(tmp_path_factory.mktemp("many"), 30)


@pytest.fixture(scope="module")
def some_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tree of 500 small files in 5 directories, and a tar of it."""
    return file_tree(tmp_path_factory.mktemp("some"), 5)


def writable_workload(
    mnt: Path, tmp: Path, many: tuple[Path, Path], *, xattrs: bool, big_mb: int = 50
) -> None:
    """create, write ``big_mb`` MB, rename, xattrs, unlink, mkdir, tar x of the tree + diff -r."""
    big_src = tmp / "big.src"
    with open(big_src, "wb") as f:
        f.write(os.urandom(big_mb << 20))
    shutil.copyfile(big_src, mnt / "big")
    assert sha(mnt / "big") == sha(big_src)
    os.rename(mnt / "big", mnt / "big.renamed")
    assert not (mnt / "big").exists()
    assert (mnt / "big.renamed").stat().st_size == big_mb << 20
    out = tmp / "big.out"
    shutil.copyfile(mnt / "big.renamed", out)
    assert sha(out) == sha(big_src)
    os.unlink(mnt / "big.renamed")
    assert not (mnt / "big.renamed").exists()
    (mnt / "dir" / "sub").mkdir(parents=True)
    (mnt / "dir" / "sub" / "note").write_text("note\n")
    if xattrs:
        os.setxattr(mnt / "dir" / "sub" / "note", "user.tag", b"v1")
        assert os.getxattr(mnt / "dir" / "sub" / "note", "user.tag") == b"v1"
        assert "user.tag" in os.listxattr(mnt / "dir" / "sub" / "note")
    src, tar = many
    subprocess.run(["tar", "xf", str(tar), "-C", str(mnt)], check=True)
    subprocess.run(["diff", "-r", str(src), str(mnt / "tree")], check=True)
    listing = subprocess.run(["ls", "-R", str(mnt)], capture_output=True, text=True, check=True)
    assert listing.stdout.count("f099") == len(os.listdir(src))
    shutil.rmtree(mnt / "tree")
    shutil.rmtree(mnt / "dir")
    assert os.listdir(mnt) == []


@pytest.mark.mount
def test_fuse_overlayfs_writable_workload(
    mountpoint: Path, tmp_path: Path, many_files: tuple[Path, Path]
) -> None:
    lower, upper, work = (tmp_path / n for n in ("lower", "upper", "work"))
    for d in (lower, upper, work):
        d.mkdir()
    (lower / "from-lower").write_text("lower layer\n")
    daemon = [
        "fuse-overlayfs",
        "-f",
        "-o",
        f"lowerdir={lower},upperdir={upper},workdir={work}",
        str(mountpoint),
    ]
    with recording(daemon, mountpoint, tmp_path / "ov.pcapng") as rec:
        assert (mountpoint / "from-lower").read_text() == "lower layer\n"
        os.unlink(mountpoint / "from-lower")
        writable_workload(mountpoint, tmp_path, many_files, xattrs=True)
        metadata_workload(mountpoint)
    assert rec.returncode == 0, rec.stderr
    frames = rec.frames()
    check_capture(frames)
    # a 1 MiB-class WRITE crossed the proxy whole
    assert max(len(f.data) for f in frames if f.direction is Direction.INBOUND) > 128 * 1024
    assert (lower / "from-lower").exists()  # the lower layer is untouched


@pytest.mark.mount
def test_pyfuse3_passthrough_daemon(
    mountpoint: Path, tmp_path: Path, many_files: tuple[Path, Path]
) -> None:
    pytest.importorskip("pyfuse3")
    backing = tmp_path / "backing"
    backing.mkdir()
    daemon = [sys.executable, str(SUPPORT / "passthroughfs.py"), str(backing), "{}"]
    with recording(daemon, mountpoint, tmp_path / "py.pcapng") as rec:
        writable_workload(mountpoint, tmp_path, many_files, xattrs=False)
        (mountpoint / "kept").write_text("kept\n")
    assert rec.returncode == 0, rec.stderr
    assert (backing / "kept").read_text() == "kept\n"
    check_capture(rec.frames())


@pytest.mark.mount
def test_mfusepy_loopback_daemon(
    mountpoint: Path, tmp_path: Path, many_files: tuple[Path, Path]
) -> None:
    pytest.importorskip("mfusepy")
    backing = tmp_path / "backing"
    backing.mkdir()
    daemon = [sys.executable, str(SUPPORT / "loopback_mfusepy.py"), str(backing), "{}"]
    with recording(
        daemon, mountpoint, tmp_path / "mf.pcapng", env={"FUSE_LIBRARY_NAME": "fuse3"}
    ) as rec:
        writable_workload(mountpoint, tmp_path, many_files, xattrs=False)
        (mountpoint / "kept").write_text("kept\n")
    assert rec.returncode == 0, rec.stderr
    assert (backing / "kept").read_text() == "kept\n"
    check_capture(rec.frames())


def test_mountpoint_arguments_are_found_before_mounting(tmp_path: Path) -> None:
    mnt = tmp_path / "m"
    mnt.mkdir()
    argv = ["d", "-o", "x", str(mnt), "{}", str(tmp_path / "m" / "."), "other"]
    assert daemons.mountpoint_arguments(argv, str(mnt)) == [3, 4, 5]
    assert daemons.substitute(argv, [3], "/dev/fd/7")[3] == "/dev/fd/7"


def test_exit_statuses() -> None:
    assert daemons.describe_status(1) == "exit status 1"
    assert daemons.describe_status(-9) == "killed by SIGKILL"
    assert daemons.exit_code_for(-15) == 143
    assert daemons.exit_code_for(3) == 3


@pytest.mark.mount
def test_unionfs_fuse_through_the_fusermount_handoff(mountpoint: Path, tmp_path: Path) -> None:
    rw, ro = tmp_path / "rw", tmp_path / "ro"
    rw.mkdir()
    (ro / "sub").mkdir(parents=True)
    (ro / "sub" / "old.txt").write_text("read only branch\n")
    daemon = ["unionfs-fuse", "-f", "-o", "cow", f"{rw}=RW:{ro}=RO", str(mountpoint)]
    # libfuse 2: no /dev/fd/N; fusetrace stands in for fusermount, the command line as is
    with recording(
        daemon, mountpoint, tmp_path / "u.pcapng", record_args=["--handoff", "fusermount"]
    ) as rec:
        assert (mountpoint / "sub" / "old.txt").read_text() == "read only branch\n"
        (mountpoint / "sub" / "old.txt").write_text("copied up\n")
        (mountpoint / "new").mkdir()
        (mountpoint / "new" / "f").write_bytes(os.urandom(300_000))
        os.rename(mountpoint / "new" / "f", mountpoint / "new" / "g")
        data = (mountpoint / "new" / "g").read_bytes()
        os.unlink(mountpoint / "new" / "g")
    assert rec.returncode == 0, rec.stderr
    assert (ro / "sub" / "old.txt").read_text() == "read only branch\n"
    assert (rw / "sub" / "old.txt").read_text() == "copied up\n"
    assert len(data) == 300_000 and not (rw / "new" / "g").exists()
    frames = rec.frames()
    check_capture(frames)
    with open_capture(str(rec.capture)) as reader:
        list(reader)
        meta = reader.info.meta
    assert meta["handoff"] == "fusermount"
    # the daemon's own mount options decided the mount
    assert "default_permissions" in meta["mount_options"]
    assert meta["mount_type"] == "fuse.unionfs-fuse"


@pytest.mark.mount
def test_fuse_zip_through_the_fusermount_handoff(mountpoint: Path, tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    payload = bytes(range(256)) * 1000
    with zipfile.ZipFile(archive, "w") as z:
        for name, data in (("dir/inside.txt", b"zipped\n"), ("top.bin", payload)):
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o100644 << 16
            z.writestr(info, data)
    with recording(
        ["fuse-zip", "-f", "-r", str(archive), str(mountpoint)], mountpoint, tmp_path / "z.pcapng"
    ) as rec:
        assert (mountpoint / "dir" / "inside.txt").read_bytes() == b"zipped\n"
        assert (mountpoint / "top.bin").read_bytes() == payload
    assert rec.returncode == 0, rec.stderr
    check_capture(rec.frames())


@pytest.mark.mount
def test_a_libfuse3_daemon_forced_through_fusermount(mountpoint: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("through fusermount3\n")
    image = tmp_path / "i.sqfs"
    subprocess.run(
        ["mksquashfs", str(src), str(image), "-quiet", "-no-progress"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    with recording(
        ["squashfuse_ll", "-f", str(image), str(mountpoint)],
        mountpoint,
        tmp_path / "f.pcapng",
        record_args=["--handoff", "fusermount"],
    ) as rec:
        assert (mountpoint / "f").read_text() == "through fusermount3\n"
    assert rec.returncode == 0, rec.stderr
    check_capture(rec.frames())


def metadata_workload(mnt: Path) -> None:
    """Links, modes, times, sizes, locks, mmap, holes, copy_file_range, a FIFO, xattrs and a
    directory of 300 entries, each checked through the mount."""
    d = mnt / "meta"
    d.mkdir()
    f = d / "f"
    f.write_bytes(b"x" * 10_000)
    os.symlink("f", d / "s")
    assert os.readlink(d / "s") == "f"
    os.link(f, d / "h")
    assert os.stat(d / "h").st_nlink == 2
    os.chmod(f, 0o600)
    os.chown(f, 1000, 1000)
    os.utime(f, (1, 2))
    st = os.stat(f)
    assert (st.st_mode & 0o777, st.st_uid, st.st_mtime) == (0o600, 1000, 2)
    os.truncate(f, 5000)
    fd = os.open(f, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, 1 << 20)
        assert os.fstat(fd).st_size == 1 << 20
        fcntl.flock(fd, fcntl.LOCK_EX)
        fcntl.flock(fd, fcntl.LOCK_UN)
        fcntl.lockf(fd, fcntl.LOCK_EX, 10, 0)
        fcntl.lockf(fd, fcntl.LOCK_UN, 10, 0)
        with mmap.mmap(fd, 4096) as m:
            m[0:5] = b"hello"
            m.flush()
        assert os.lseek(fd, 0, os.SEEK_DATA) == 0
        out = os.open(d / "copy", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            assert os.copy_file_range(fd, out, 4096, 0, 0) == 4096
        finally:
            os.close(out)
    finally:
        os.close(fd)
    assert (d / "copy").read_bytes()[:5] == b"hello"
    os.mkfifo(d / "fifo")
    assert stat.S_ISFIFO(os.stat(d / "fifo").st_mode)
    os.setxattr(f, "user.a", b"1")
    assert "user.a" in os.listxattr(f)
    os.removexattr(f, "user.a")
    for i in range(300):
        (d / f"n{i:03d}").touch()
    assert len(os.listdir(d)) == 305  # f, s, h, copy, fifo and the 300
    shutil.rmtree(d)


@pytest.fixture
def shared_mountpoint(mountpoint: Path) -> Iterator[Path]:
    """The mountpoint on a shared mount, as on a host whose / is shared (systemd's default):
    mounts made on it reach mount namespaces copied from this one."""
    subprocess.run(["mount", "--bind", str(mountpoint), str(mountpoint)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(mountpoint)], check=True)
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


def gocryptfs_cipher_dir(tmp_path: Path) -> tuple[Path, Path]:
    """An initialised gocryptfs cipher directory and its password file."""
    cipher, passfile = tmp_path / "cipher", tmp_path / "pass"
    cipher.mkdir()
    passfile.write_text("correct horse battery staple\n")
    subprocess.run(
        ["gocryptfs", "-init", "-q", "-scryptn", "10", "-passfile", str(passfile), str(cipher)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return cipher, passfile


@pytest.mark.mount
@pytest.mark.parametrize(
    ("handoff", "host"),
    [
        ("auto", "private"),
        ("fusermount", "shared"),
        ("fusermount", "private"),
    ],
)
def test_gocryptfs_go_fuse_through_fusermount3(
    request: pytest.FixtureRequest,
    handoff: str,
    host: str,
    tmp_path: Path,
    some_files: tuple[Path, Path],
) -> None:
    """gocryptfs (go-fuse) runs ``fusermount3 MOUNTPOINT -o ...`` with an environment of its
    own; it then opens a file in its mount before serving (go-fuse's poll hack), so it must
    see the mount. ``auto``: the seccomp hand-off serves the real fusermount3's open and
    mount. ``fusermount``: fusetrace stands in for fusermount3, in a mount namespace of the
    daemon's own, on a mountpoint that lies on a shared mount (systemd hosts) or a private
    one (containers)."""
    if shutil.which("gocryptfs") is None:
        pytest.skip("gocryptfs is not installed (scripts/install-deps)")
    mnt: Path = request.getfixturevalue("shared_mountpoint" if host == "shared" else "mountpoint")
    cipher, passfile = gocryptfs_cipher_dir(tmp_path)
    daemon = ["gocryptfs", "-fg", "-passfile", str(passfile), str(cipher), str(mnt)]
    args = [] if handoff == "auto" else ["--handoff", handoff]
    with recording(daemon, mnt, tmp_path / "gc.pcapng", record_args=args) as rec:
        writable_workload(mnt, tmp_path, some_files, xattrs=True, big_mb=4)
        metadata_workload(mnt)
        (mnt / "kept").write_text("kept, encrypted\n")
    assert rec.returncode == 0, rec.stderr
    assert not rec.warnings, [w.describe() for w in rec.warnings]
    frames = rec.frames()
    check_capture(frames)
    with open_capture(str(rec.capture)) as reader:
        list(reader)
        meta = reader.info.meta
    assert meta["handoff"] == ("seccomp" if handoff == "auto" else handoff)
    assert meta["mount_type"] == "fuse.gocryptfs"
    assert meta["mount_source"] == str(cipher)
    # what went through the proxy is on disk, encrypted: names and contents
    stored = sorted(p.name for p in cipher.iterdir())
    assert "kept" not in stored and len(stored) == 3  # kept, gocryptfs.conf, gocryptfs.diriv
    with native_mount(daemon, mnt):
        assert (mnt / "kept").read_text() == "kept, encrypted\n"


@pytest.mark.mount
def test_bindfs_mounting_by_itself(
    mountpoint: Path, tmp_path: Path, some_files: tuple[Path, Path]
) -> None:
    """bindfs links libfuse 2 (no /dev/fd/N): it mounts by itself under seccomp."""
    if shutil.which("bindfs") is None:
        pytest.skip("bindfs is not installed (scripts/install-deps)")
    src = tmp_path / "src"
    src.mkdir()
    with recording(
        ["bindfs", "-f", str(src), str(mountpoint)], mountpoint, tmp_path / "b.pcapng"
    ) as rec:
        writable_workload(mountpoint, tmp_path, some_files, xattrs=True, big_mb=4)
        metadata_workload(mountpoint)
        (mountpoint / "kept").write_text("kept\n")
    assert rec.returncode == 0, rec.stderr
    assert not rec.warnings, [w.describe() for w in rec.warnings]
    assert (src / "kept").read_text() == "kept\n"
    check_capture(rec.frames())
    with open_capture(str(rec.capture)) as reader:
        list(reader)
        assert reader.info.meta["handoff"] == "seccomp"


def overlay(tmp_path: Path, mountpoint: Path) -> list[str]:
    dirs = [tmp_path / n for n in ("lower", "upper", "work")]
    for d in dirs:
        d.mkdir()
    return [
        "fuse-overlayfs",
        "-f",
        "-o",
        f"lowerdir={dirs[0]},upperdir={dirs[1]},workdir={dirs[2]}",
        "{}",
    ]


def start_large_copy(mountpoint: Path) -> subprocess.Popen[bytes]:
    """dd of 4 GiB into the mount; returns once a good part of it is under way.

    conv=fsync: with the writeback cache dd's writes land in the page cache; once the
    connection is aborted the failed writeback was not always reported by close(), and dd
    exited 0 in loaded runs (1 of 3 with two CPU hogs; 0 of 5 with fsync)."""
    target = mountpoint / "big"
    dd = subprocess.Popen(
        ["dd", "if=/dev/zero", f"of={target}", "bs=1M", "count=4096", "conv=fsync", "status=none"],
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if (mountpoint / "big").stat().st_size > 32 << 20:
                return dd
        time.sleep(0.05)
    dd.kill()
    raise AssertionError("the copy did not get going")


@pytest.mark.mount
def test_ctrl_c_during_a_large_copy(mountpoint: Path, tmp_path: Path) -> None:
    with recording(
        overlay(tmp_path, mountpoint),
        mountpoint,
        tmp_path / "c.pcapng",
        record_args=["--snaplen", "256"],
        check_clean=False,  # interrupted mid-copy: requests stay unanswered
    ) as rec:
        dd = start_large_copy(mountpoint)
        try:
            rec.signal(signal.SIGINT)
            assert rec.wait(60) == 130
            assert dd.wait(60) != 0  # the copy was cut off, it did not hang
        finally:
            dd.kill()
            dd.wait()
        assert not is_mounted(mountpoint)
    frames = rec.frames()
    check_capture(frames)
    assert sum(1 for f in frames if struct.unpack_from("=I", f.data, 4)[0] == 16) > 10


@pytest.mark.mount
def test_daemon_killed_during_a_large_copy(mountpoint: Path, tmp_path: Path) -> None:
    with recording(
        overlay(tmp_path, mountpoint),
        mountpoint,
        tmp_path / "k.pcapng",
        record_args=["--snaplen", "256"],
        check_clean=False,  # the daemon is killed mid-copy
    ) as rec:
        dd = start_large_copy(mountpoint)
        try:
            for pid in rec.daemon_pids():
                os.kill(pid, signal.SIGKILL)
            assert rec.wait(60) == 128 + signal.SIGKILL
            assert dd.wait(60) != 0
        finally:
            dd.kill()
            dd.wait()
        assert not is_mounted(mountpoint)
    assert "killed by SIGKILL" in rec.stderr
    check_capture(rec.frames())


@pytest.mark.mount
def test_recording_fails_a_test_whose_capture_has_errors(mountpoint: Path, tmp_path: Path) -> None:
    """The helper's own check: a daemon that breaks the protocol (the tracker tests' one; it
    sends bad notifications right after INIT) fails the block with each error described."""
    misbehave = Path(__file__).parents[1] / "tracker" / "misbehave.py"
    daemon = [sys.executable, str(misbehave), "{}", str(tmp_path / "report.json"), "bad-out-len"]
    with (
        pytest.raises(AssertionError, match="fusetrace check finds") as failed,
        recording(daemon, mountpoint, tmp_path / "bad.pcapng", record_args=["--handoff", "fd"]),
    ):
        os.stat(mountpoint)
    assert "FT501 error [daemon]" in str(failed.value)
    # the same session, asked not to judge it
    with recording(
        daemon,
        mountpoint,
        tmp_path / "bad2.pcapng",
        record_args=["--handoff", "fd"],
        check_clean=False,
    ) as rec:
        os.stat(mountpoint)
    assert rec.returncode == 0 and rec.findings == []


def interrupted_io(mnt: Path, rounds: int = 30) -> None:
    """Readers and writers killed (SIGINT, SIGKILL) in the middle of direct I/O: the kernel
    sends INTERRUPT for the requests they were waiting on."""
    with open(mnt / "big", "wb") as f:
        f.write(os.urandom(64 << 20))
    for i in range(rounds):
        for cmd, sig in (
            (["dd", f"if={mnt / 'big'}", "of=/dev/null", "bs=1M", "iflag=direct"], signal.SIGINT),
            (["dd", "if=/dev/zero", f"of={mnt / 'w'}", "bs=1M", "count=64", "oflag=direct"],
             signal.SIGKILL),
        ):  # fmt: skip
            dd = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
            time.sleep(0.01 * (i % 5))
            dd.send_signal(sig)
            dd.wait(60)
    assert len((mnt / "big").read_bytes()) == 64 << 20  # still whole and readable


#: FT108 on these daemons is a result, not a fault of ours: a daemon library answers an
#: INTERRUPT whose target it is not working on (already answered, or crossed with its reply)
#: with EAGAIN, as the kernel's Documentation/filesystems/fuse.rst tells it to: libfuse parks
#: it and answers it with its next request (fuse_lowlevel.c, check_interrupt); go-fuse waits
#: 10 us and answers EAGAIN (fuse/opcode.go, doInterrupt; its server.go ignores the ENOENT
#: "which is normal if the referred request already has completed"). By then the target is
#: answered, so the kernel refuses the write with ENOENT. Seen on nearly every INTERRUPT of
#: these runs: fuse-overlayfs 27 of 27, bindfs 56 of 56, gocryptfs 72 of 223 (e.g. K>D 3755
#: INTERRUPT for SETATTR 3754; D>K 3754 SETATTR ok; K>D 3756 RELEASE; D>K 3755 INTERRUPT
#: reply -EAGAIN).
LATE_EAGAIN = {"FT108": "the daemon's library answers an INTERRUPT EAGAIN after its target"}


@pytest.mark.mount
@pytest.mark.parametrize("name", ["fuse-overlayfs", "bindfs", "gocryptfs"])
def test_interrupted_io(name: str, mountpoint: Path, tmp_path: Path) -> None:
    """Interrupted requests on libfuse 3, libfuse 2 and go-fuse daemons: no error, and no
    warning but the late EAGAIN each library sends by design (evidence checked below)."""
    if shutil.which(name) is None:
        pytest.skip(f"{name} is not installed (scripts/install-deps)")
    if name == "bindfs":
        (tmp_path / "src").mkdir()
        daemon = ["bindfs", "-f", str(tmp_path / "src"), str(mountpoint)]
    elif name == "gocryptfs":
        cipher, passfile = gocryptfs_cipher_dir(tmp_path)
        daemon = ["gocryptfs", "-fg", "-passfile", str(passfile), str(cipher), str(mountpoint)]
    else:
        daemon = overlay(tmp_path, mountpoint)
    with recording(daemon, mountpoint, tmp_path / "i.pcapng", allow=LATE_EAGAIN) as rec:
        interrupted_io(mountpoint)
    assert rec.returncode == 0, rec.stderr
    assert rec.warnings == [], [w.describe() for w in rec.warnings]
    frames = rec.frames()
    interrupts = [f for f in frames if f.direction is Direction.INBOUND and opcode_of(f) == 36]
    assert interrupts, "no INTERRUPT was sent: the workload did not interrupt anything"
    # the evidence: each FT108 is an EAGAIN interrupt reply, after the target's own reply
    for finding in rec.allowed:
        assert finding.rule == "FT108"
        assert finding.frame is not None
        reply = frames[finding.frame]
        length, error, unique = struct.unpack_from("=IiQ", reply.data)
        assert unique & 1 and error == -errno.EAGAIN and length == 16
        (answered,) = finding.related
        assert answered < finding.frame
        assert struct.unpack_from("=Q", frames[answered].data, 8)[0] == unique & ~1


def opcode_of(frame: Frame) -> int:
    return int(struct.unpack_from("=I", frame.data, 4)[0])


@pytest.fixture
def loopback_sshd(tmp_path: Path) -> Iterator[list[str]]:
    """An sshd of our own on 127.0.0.1 (key login as the current user); yields the sshfs
    options that reach it."""
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if shutil.which("sshfs") is None or not os.path.exists(sshd):
        pytest.skip("sshfs and openssh-server are not installed")
    d = tmp_path / "ssh"
    d.mkdir(mode=0o700)
    for key in ("host", "user"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True
        )
    shutil.copy(d / "user.pub", d / "authorized_keys")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = d / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "StrictModes no\nSubsystem sftp internal-sftp\n"
    )
    os.makedirs("/run/sshd", exist_ok=True)  # its privilege separation directory
    proc = subprocess.Popen(
        [sshd, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None and time.monotonic() < deadline, "sshd did not start"
            time.sleep(0.05)
        yield [
            "-o",
            f"port={port},IdentityFile={d / 'user'},StrictHostKeyChecking=no,"
            "UserKnownHostsFile=/dev/null,BatchMode=yes",
        ]
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()


@pytest.mark.mount
def test_sshfs_over_a_loopback_sshd(
    mountpoint: Path, tmp_path: Path, some_files: tuple[Path, Path], loopback_sshd: list[str]
) -> None:
    """sshfs (libfuse 3, /dev/fd/N): the writable workload, tar x of 500 files + diff -r."""
    src = tmp_path / "remote"
    src.mkdir()
    daemon = [
        "sshfs",
        "-f",
        *loopback_sshd,
        f"{pwd.getpwuid(os.getuid()).pw_name}@127.0.0.1:{src}",
        "{}",
    ]
    with recording(daemon, mountpoint, tmp_path / "ssh.pcapng") as rec:
        writable_workload(mountpoint, tmp_path, some_files, xattrs=False, big_mb=4)
        (mountpoint / "kept").write_text("kept\n")
    assert rec.returncode == 0, rec.stderr
    assert not rec.warnings, [w.describe() for w in rec.warnings]
    assert (src / "kept").read_text() == "kept\n"
    check_capture(rec.frames())


def test_which_finds_programs_as_shutil_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """resolve_program's PATH search: the first executable file of that name, skipping
    directories and files that cannot be run."""
    from fusetrace.proxy.daemon import which

    for d in ("a", "b", "c"):
        (tmp_path / d).mkdir()
    (tmp_path / "a" / "prog").mkdir()  # a directory
    (tmp_path / "b" / "prog").write_text("")  # not executable
    (tmp_path / "c" / "prog").write_text("#!/bin/sh\n")
    (tmp_path / "c" / "prog").chmod(0o755)
    path = os.pathsep.join(str(tmp_path / d) for d in ("a", "b", "c"))
    monkeypatch.setenv("PATH", path)
    assert which("prog") == shutil.which("prog") == str(tmp_path / "c" / "prog")
    assert which("absent") is shutil.which("absent") is None
