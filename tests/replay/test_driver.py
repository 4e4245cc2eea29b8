"""The replay driver against real daemons on a real socket (no mount, no /dev/fuse needed).

fakefs numbers its node ids, file handles and directory cookies from a new base on every
run, so a clean replay proves the id mapping; its ``--change``/``--die-on``/``--hang-on``
switches give exactly one known difference or failure. squashfuse_ll, when installed, is
replayed over the image it was recorded on and over one where a single file differs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fusetrace.capture import CaptureReader
from fusetrace.errors import DaemonError
from fusetrace.frame import Direction, Frame
from fusetrace.protocol.abi import Opcode
from fusetrace.replay.codec import ProtocolCodec
from fusetrace.replay.driver import ChildSink, FrameSink, daemon_argv, run
from fusetrace.replay.engine import Outcome, ReplayEngine, ReplayOptions, ReplayResult
from fusetrace.replay.matching import MatchPolicy
from tests.replay.kernel import FAKEFS, MOUNTPOINT, Kernel, record_fakefs_session
from tests.support.mount import is_mounted, recording


@pytest.fixture(scope="module")
def fake_recording(tmp_path_factory: pytest.TempPathFactory) -> list[Frame]:
    path = tmp_path_factory.mktemp("rec") / "fake.pcapng"
    record_fakefs_session(str(path))
    with open(path, "rb") as f:
        return list(CaptureReader(f))


def replay(
    records: list[Frame], argv: list[str], mountpoint: str = MOUNTPOINT, **opts: object
) -> tuple[ReplayResult, list[tuple[Direction, bytes]]]:
    frames: list[tuple[Direction, bytes]] = []
    engine = ReplayEngine(records, ProtocolCodec(sys.byteorder), ReplayOptions(**opts))  # type: ignore[arg-type]
    result, _ = run(
        engine, argv, mountpoint=mountpoint, sinks=[lambda d, t, data: frames.append((d, data))]
    )
    return result, frames


def fakefs(*flags: str) -> list[str]:
    return [sys.executable, FAKEFS, *flags, "{}"]


def test_fresh_daemon_with_other_ids_replays_without_differences(
    fake_recording: list[Frame],
) -> None:
    result, frames = replay(fake_recording, fakefs())
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.differences == []
    requests = [r for r in fake_recording if r.direction is Direction.INBOUND]
    assert result.sent == len(requests)
    # every recorded answer was compared (the FORGETs have none)
    answered = sum(1 for r in fake_recording if r.direction is Direction.OUTBOUND)
    assert result.compared == answered
    # and the ids really were rewritten: the live requests differ from the recorded ones
    live_requests = [d for direction, d in frames if direction is Direction.INBOUND]
    assert len(live_requests) == len(requests)
    assert sum(a != b.data for a, b in zip(live_requests, requests, strict=True)) > 10


def test_serial_replay_also_matches(fake_recording: list[Frame]) -> None:
    result, _ = replay(fake_recording, fakefs(), serial=True)
    assert result.outcome is Outcome.COMPLETED and result.differences == []


def test_one_behaviour_change_gives_exactly_that_difference(
    fake_recording: list[Frame],
) -> None:
    result, _ = replay(fake_recording, fakefs("--change"))
    assert result.outcome is Outcome.COMPLETED
    assert [(d.opcode, d.field) for d in result.differences] == [("READ", "data")]
    assert "first difference at offset 6" in result.differences[0].live


def test_daemon_killed_mid_replay_reports_where(fake_recording: list[Frame]) -> None:
    result, _ = replay(fake_recording, fakefs("--die-on", "READDIRPLUS"))
    assert result.outcome is Outcome.DAEMON_GONE
    assert "SIGKILL" in result.reason
    assert result.died_on is not None and result.died_on[1] == "READDIRPLUS"
    assert result.compared > 5  # the partial results are kept
    assert result.differences == []


def test_daemon_that_stops_answering_is_timed_out(fake_recording: list[Frame]) -> None:
    result, _ = replay(fake_recording, fakefs("--hang-on", "STATFS"), timeout_ns=1_500_000_000)
    assert result.outcome is Outcome.DAEMON_HUNG
    assert result.died_on is not None and result.died_on[1] == "STATFS"


def test_retrieve_notification_is_answered(fake_recording: list[Frame]) -> None:
    result, frames = replay(fake_recording, fakefs("--retrieve"))
    assert result.live_notifications["RETRIEVE"] == 1
    answers = [d for direction, d in frames if direction is Direction.INBOUND
               and int.from_bytes(d[4:8], sys.byteorder) == Opcode.NOTIFY_REPLY]  # fmt: skip
    assert len(answers) == 1 and int.from_bytes(answers[0][8:16], sys.byteorder) == 77


def test_daemon_that_forks_into_the_background_is_served(fake_recording: list[Frame]) -> None:
    result, _ = replay(fake_recording, fakefs("--fork"))
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.differences == []


def test_daemon_argv_substitution() -> None:
    assert daemon_argv(["d", "-f", "{}"], None, 5) == ["d", "-f", "/dev/fd/5"]
    assert daemon_argv(["d", "/mnt/x"], "/mnt/x", 7) == ["d", "/dev/fd/7"]
    with pytest.raises(DaemonError, match="names the mountpoint"):
        daemon_argv(["d", "/elsewhere"], "/mnt/x", 7)


def test_missing_daemon_is_a_daemon_error(fake_recording: list[Frame]) -> None:
    with pytest.raises(DaemonError, match="not found"):
        replay(fake_recording, ["/nonexistent/daemon", "{}"])


# ---------------------------------------------------------------------------- squashfuse_ll

needs_squashfuse = pytest.mark.skipif(
    not (shutil.which("squashfuse_ll") and shutil.which("mksquashfs")),
    reason="squashfuse_ll or mksquashfs not installed",
)


def make_image(src: Path, image: Path, tail: str) -> None:
    (src / "d").mkdir(parents=True)
    (src / "hello.txt").write_text("hello\n")
    (src / "d" / "big").write_text("".join(f"{i}\n" for i in range(20000)) + tail)
    (src / "d" / "same").write_bytes(bytes(range(256)) * 64)
    subprocess.run(
        ["mksquashfs", str(src), str(image), "-noappend", "-quiet", "-no-progress"], check=True
    )


def squash_workload(image: Path) -> list[Frame]:
    k = Kernel(["squashfuse_ll", str(image), "{}"])
    k.init()
    k.listdir(1)
    hello = k.lookup(1, "hello.txt")
    fh = k.open(hello)
    k.call(Opcode.READ, {"fh": fh, "offset": 0, "size": 4096}, hello)
    k.call(Opcode.RELEASE, {"fh": fh}, hello)
    d = k.lookup(1, "d")
    k.listdir(d)
    for name in ("big", "same"):
        node = k.lookup(d, name)
        nfh = k.open(node)
        us = [
            k.send(Opcode.READ, {"fh": nfh, "offset": i * 32768, "size": 32768}, node)
            for i in range(4)
        ]
        for _ in us:
            k.recv()
        k.call(Opcode.GETATTR, {}, node)
        k.call(Opcode.RELEASE, {"fh": nfh}, node)
    k.call(Opcode.GETXATTR, {"size": 0, "name": "user.none"}, hello)
    k.call(Opcode.STATFS, {}, 1)
    import io

    return list(CaptureReader(io.BytesIO(k.capture())))


@pytest.fixture(scope="module")
def squash(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[Frame]]:
    base = tmp_path_factory.mktemp("squash")
    same, other = base / "same.sqfs", base / "other.sqfs"
    make_image(base / "a", same, "")
    make_image(base / "b", other, "tail\n")
    return same, other, squash_workload(same)


@needs_squashfuse
def test_squashfuse_same_image_no_differences(squash: tuple[Path, Path, list[Frame]]) -> None:
    same, _, records = squash
    result, _ = replay(records, ["squashfuse_ll", str(same), "{}"])
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.differences == []
    assert result.compared > 20


@needs_squashfuse
def test_squashfuse_one_file_differs(squash: tuple[Path, Path, list[Frame]]) -> None:
    _, other, records = squash
    result, _ = replay(records, ["squashfuse_ll", str(other), "{}"])
    assert result.outcome is Outcome.COMPLETED
    got = sorted({(d.opcode, d.field) for d in result.differences})
    # big grew by 5 bytes at its end: its size, in the LOOKUP and GETATTR replies, and the
    # length of the last READ; nothing about the other files
    assert got == [("GETATTR", "attr.attr.size"), ("LOOKUP", "entry.attr.size"),
                   ("READ", "data.length")]  # fmt: skip
    assert len(result.differences) == 3


# ---------------------------------------------------------------------------- fusetrace record

ROOT = Path(__file__).resolve().parent.parent.parent


def _record(
    daemon: list[str], mnt: Path, out: Path, workload: list[list[str]], *options: str
) -> None:
    """``fusetrace record`` the shell commands of ``workload`` on ``mnt``."""
    with recording(daemon, mnt, out, record_args=options) as rec:
        for cmd in workload:
            subprocess.run(cmd, check=True, timeout=30, capture_output=True)
    assert rec.returncode == 0, rec.stderr


@pytest.mark.mount
@needs_squashfuse
@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/fuse"), reason="needs root")
def test_recorded_mount_replays_against_fresh_squashfuse(tmp_path: Path) -> None:
    same, other = tmp_path / "same.sqfs", tmp_path / "other.sqfs"
    make_image(tmp_path / "a", same, "")
    # same size, one byte different near the end of big
    make_image(tmp_path / "b", other, "")
    big = (tmp_path / "b" / "d" / "big").read_bytes()
    (tmp_path / "b" / "d" / "big").write_bytes(big[:-3] + b"X" + big[-2:])
    subprocess.run(["mksquashfs", str(tmp_path / "b"), str(other), "-noappend", "-quiet",
                    "-no-progress"], check=True)  # fmt: skip
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    capture = tmp_path / "rec.pcapng"
    workload = [["ls", "-lR", str(mnt)], ["cat", str(mnt / "hello.txt")],
                ["md5sum", str(mnt / "d" / "big")]]  # fmt: skip
    _record(["squashfuse_ll", "-f", str(same), str(mnt)], mnt, capture, workload)
    with open(capture, "rb") as f:
        reader = CaptureReader(f)
        records = list(reader)
    assert len(records) > 20 and reader.info.meta["mountpoint"] == str(mnt)
    # the daemon named by the recorded mountpoint, as the user would type it again
    result, _ = replay(records, ["squashfuse_ll", "-f", str(same), str(mnt)], str(mnt))
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.differences == [], [d.line() for d in result.differences]
    result, _ = replay(records, ["squashfuse_ll", "-f", str(other), "{}"], str(mnt))
    assert result.outcome is Outcome.COMPLETED
    assert {d.opcode for d in result.differences} == {"READ"}
    assert all(d.field == "data" for d in result.differences)


def _overlay(base: Path) -> list[str]:
    lower, upper, work = base / "lower", base / "upper", base / "work"
    for d in (upper, work):
        d.mkdir(parents=True)
    return ["fuse-overlayfs", "-f", "-o", f"lowerdir={lower},upperdir={upper},workdir={work}"]


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() if p.is_file() and not p.is_symlink() else b""
        for p in sorted(root.rglob("*"))
    }


@pytest.mark.mount
@pytest.mark.skipif(shutil.which("fuse-overlayfs") is None, reason="fuse-overlayfs not installed")
@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/fuse"), reason="needs root")
def test_writable_fuse_overlayfs_session_replays_to_the_same_upper_dir(tmp_path: Path) -> None:
    for side in ("rec", "live"):
        lower = tmp_path / side / "lower"
        (lower / "dir").mkdir(parents=True)
        (lower / "base.txt").write_text("base\n")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    capture = tmp_path / "ov.pcapng"
    m = str(mnt)
    workload = [
        ["mkdir", "-p", f"{m}/new/deeper"],
        ["sh", "-c", f"seq 1 50000 > {m}/new/f.txt && echo more >> {m}/base.txt"],
        ["mv", f"{m}/new/f.txt", f"{m}/new/deeper/g.txt"],
        ["ln", "-s", "deeper/g.txt", f"{m}/new/link"],
        ["cat", f"{m}/new/link", f"{m}/base.txt"],
        ["ls", "-lR", m],
        ["rm", "-rf", f"{m}/dir"],
    ]
    _record([*_overlay(tmp_path / "rec"), m], mnt, capture, workload)
    with open(capture, "rb") as f:
        records = list(CaptureReader(f))
    result, _ = replay(records, [*_overlay(tmp_path / "live"), "{}"], m)
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.differences == [], [d.line() for d in result.differences]
    assert result.by_opcode["WRITE"].answered > 0 and result.by_opcode["RENAME2"].answered
    # the replay left the upper directory exactly as the recorded session did
    assert _tree(tmp_path / "live" / "upper") == _tree(tmp_path / "rec" / "upper")


@pytest.mark.mount
@pytest.mark.skipif(shutil.which("unionfs-fuse") is None, reason="unionfs-fuse not installed")
@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/fuse"), reason="needs root")
def test_libfuse2_daemon_replays_through_the_fusermount_handoff(tmp_path: Path) -> None:
    def branches(side: str) -> tuple[str, Path]:
        rw, ro, mnt = tmp_path / side / "rw", tmp_path / side / "ro", tmp_path / side / "mnt"
        for d in (rw, ro, mnt):
            d.mkdir(parents=True)
        (rw / "one.txt").write_text("one\n")
        (ro / "two.txt").write_text("two\n")
        return f"{rw}=RW:{ro}=RO", mnt

    rec_branches, rec_mnt = branches("rec")
    m = str(rec_mnt)
    workload = [
        ["ls", "-l", m],
        ["cat", f"{m}/one.txt", f"{m}/two.txt"],
        ["sh", "-c", f"echo three > {m}/three.txt"],
    ]
    capture = tmp_path / "un.pcapng"
    daemon = ["unionfs-fuse", "-f", rec_branches, m]
    _record(daemon, rec_mnt, capture, workload, "--handoff", "fusermount")
    with open(capture, "rb") as f:
        records = list(CaptureReader(f))
    live_branches, live_mnt = branches("live")
    frames: list[tuple[Direction, bytes]] = []
    engine = ReplayEngine(records, ProtocolCodec(sys.byteorder))
    result, _ = run(
        engine,
        ["unionfs-fuse", "-f", live_branches, str(live_mnt)],
        mountpoint=m,
        handoff="auto",  # unionfs-fuse links libfuse 2: the fusermount handoff
        sinks=[lambda d, t, data: frames.append((d, data))],
    )
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.differences == [], [d.line() for d in result.differences]
    assert (tmp_path / "live" / "rw" / "three.txt").read_text() == "three\n"
    assert not is_mounted(live_mnt)  # nothing was mounted


# ---------------------------------------------------------------------------- listing order


def test_listing_order_differs_per_run_without_differences_unless_strict(
    tmp_path: Path,
) -> None:
    # fakefs --shuffle lists each directory in an order drawn per run (three entries per
    # reply, so continuations are mapped too); the seeds give two different orders
    path = tmp_path / "shuffled.pcapng"
    record_fakefs_session(str(path), ["--shuffle", "--seed", "1"])
    with open(path, "rb") as f:
        records = list(CaptureReader(f))
    result, _ = replay(records, fakefs("--shuffle", "--seed", "2"))
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.differences == [], [d.line() for d in result.differences]
    assert result.not_sent == 0
    result, _ = replay(records, fakefs("--shuffle", "--seed", "2"), policy=MatchPolicy.build(
        strict=True, ignore=["atime", "ino", "generation", "bfree"]))  # fmt: skip
    assert {d.field for d in result.differences} == {"entries.order"}
    assert {d.opcode for d in result.differences} == {"READDIR", "READDIRPLUS"}


# ---------------------------------------------------------------------------- divergence
#
# The daemon answers differently from the recording: replay must act like the kernel (never
# send a request naming an id the live daemon did not give), the daemon must not abort, and
# the report must name the first differing frame and group every request not sent under it.

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/fuse"), reason="needs root"
)
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def diverged(
    records: list[Frame], argv: list[str], mountpoint: str, handoff: str = "fd"
) -> tuple[ReplayResult, str]:
    engine = ReplayEngine(records, ProtocolCodec(sys.byteorder))
    result, live = run(engine, argv, mountpoint=mountpoint, handoff=handoff)
    assert result.outcome is Outcome.COMPLETED, result.reason  # the daemon did not abort
    assert "SIG" not in live.daemon_status, live.daemon_status
    assert result.differences, "the changed data made no difference"
    # every request not sent is grouped under a difference
    assert sum(d.not_sent for d in result.differences) == result.not_sent
    return result, live.daemon_status


def root(result: ReplayResult, opcode: str, label: str) -> Any:
    """The difference of the first ``opcode`` request named ``label``."""
    return next(d for d in result.differences if d.opcode == opcode and d.label == label)


def _ext4(tree: Path, image: Path) -> None:
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(tree), str(image), "2M"], check=True,
                   capture_output=True)  # fmt: skip


@pytest.fixture(scope="module")
def fuse2fs_session() -> Iterator[tuple[Path, list[Frame], str]]:
    """fuse2fs (libfuse 2 high-level API) on a small ext4 image, recorded while user nobody
    reads a file, lists a directory and reads a file in it; plus three changed images."""
    # a directory user nobody can reach (pytest's tmp_path is private to root)
    base = Path(tempfile.mkdtemp(prefix="fusetrace-fuse2fs-"))
    base.chmod(0o755)
    try:
        yield _fuse2fs_session(base)
    finally:
        shutil.rmtree(base)


def _fuse2fs_session(base: Path) -> tuple[Path, list[Frame], str]:
    tree = base / "tree"
    (tree / "d").mkdir(parents=True)
    (tree / "one").write_text("one\n")
    (tree / "two").write_text("two\n")
    (tree / "d" / "f").write_text("".join(f"{i}\n" for i in range(2000)))
    subprocess.run(["chmod", "-R", "a+rX", str(tree)], check=True)
    _ext4(tree, base / "same.ext4")
    # one: removed; one: a directory now; d: mode 0700, so user nobody may not list it
    # (fuse2fs checks permissions itself, against the uid of each request)
    for name, change in (
        ("removed", lambda t: (t / "one").unlink()),
        ("isdir", lambda t: ((t / "one").unlink(), (t / "one").mkdir())),
        ("closed", lambda t: (t / "d").chmod(0o700)),
    ):
        variant = base / name
        shutil.copytree(tree, variant)
        change(variant)
        _ext4(variant, base / f"{name}.ext4")
    mnt = base / "mnt"
    mnt.mkdir()
    capture = base / "fuse2fs.pcapng"
    m = str(mnt)
    with recording(["fuse2fs", str(base / "same.ext4"), m, "-f"], mnt, capture,
                   options=["allow_other"]) as rec:  # fmt: skip
        for cmd in (["cat", f"{m}/one"], ["ls", "-l", f"{m}/d"], ["cat", f"{m}/d/f"],
                    ["stat", f"{m}/two"]):  # fmt: skip
            subprocess.run([*NOBODY, *cmd], check=True, capture_output=True, timeout=30)
    assert rec.returncode == 0, rec.stderr
    with open(capture, "rb") as f:
        return base, list(CaptureReader(f)), m


@pytest.mark.mount
@needs_root
@pytest.mark.skipif(shutil.which("fuse2fs") is None, reason="fuse2fs not installed")
def test_fuse2fs_removed_file_is_one_difference_and_its_dependents(
    fuse2fs_session: tuple[Path, list[Frame], str],
) -> None:
    base, records, m = fuse2fs_session
    argv = ["fuse2fs", str(base / "removed.ext4"), m, "-f"]
    result, _ = diverged(records, argv, m, handoff="auto")
    first = result.differences[0]
    assert (first.opcode, first.label, first.field) == ("LOOKUP", '"one"', "error")
    assert first.recorded.startswith("entry nodeid ") and first.live == "-2 ENOENT"
    # what the kernel did with the file it found: none of it reaches the daemon
    assert {"OPEN", "READ", "FLUSH", "RELEASE"} <= set(first.dependents)
    assert len(result.differences) == 1, [d.line() for d in result.differences]


@pytest.mark.mount
@needs_root
@pytest.mark.skipif(shutil.which("fuse2fs") is None, reason="fuse2fs not installed")
def test_fuse2fs_file_that_became_a_directory(
    fuse2fs_session: tuple[Path, list[Frame], str],
) -> None:
    base, records, m = fuse2fs_session
    result, _ = diverged(records, ["fuse2fs", str(base / "isdir.ext4"), m, "-f"], m, "auto")
    # the root directory gained a subdirectory (nlink) before anything else differs
    assert (result.differences[0].opcode, result.differences[0].field) == (
        "GETATTR", "attr.attr.nlink")  # fmt: skip
    lookup = root(result, "LOOKUP", '"one"')
    assert lookup.field == "entry.attr.mode"
    assert any(d.opcode == "READ" for d in result.differences)  # a directory's bytes
    assert result.not_sent == 0  # the node exists live: everything was sent


@pytest.mark.mount
@needs_root
@pytest.mark.skipif(shutil.which("fuse2fs") is None, reason="fuse2fs not installed")
def test_fuse2fs_unreadable_directory(fuse2fs_session: tuple[Path, list[Frame], str]) -> None:
    base, records, m = fuse2fs_session
    result, _ = diverged(records, ["fuse2fs", str(base / "closed.ext4"), m, "-f"], m, "auto")
    assert (result.differences[0].opcode, result.differences[0].label) == ("LOOKUP", '"d"')
    opendir = root(result, "OPENDIR", "")
    assert opendir.field == "error" and opendir.live == "-13 EACCES"
    assert opendir.dependents == {"READDIR": 2, "RELEASEDIR": 1}


def _squash_variant(base: Path, name: str, change: Any) -> Path:
    src, image = base / name, base / f"{name}.sqfs"
    (src / "d").mkdir(parents=True)
    (src / "hello.txt").write_text("hello\n")
    (src / "d" / "big").write_text("".join(f"{i}\n" for i in range(20000)))
    (src / "d" / "same").write_bytes(bytes(range(256)) * 64)
    change(src)
    subprocess.run(["mksquashfs", str(src), str(image), "-noappend", "-quiet", "-no-progress"],
                   check=True)  # fmt: skip
    return image


@needs_squashfuse
def test_squashfuse_removed_file_and_file_that_became_a_directory(
    squash: tuple[Path, Path, list[Frame]], tmp_path: Path
) -> None:
    _, _, records = squash
    removed = _squash_variant(tmp_path, "removed", lambda t: (t / "hello.txt").unlink())
    result, _ = diverged(records, ["squashfuse_ll", str(removed), "{}"], MOUNTPOINT)
    first = result.differences[0]
    # the root listing lacks hello.txt, then its LOOKUP fails: OPEN, READ, RELEASE and the
    # GETXATTR on it are not sent
    assert (first.opcode, first.field) == ("READDIR", "entries")
    lookup = root(result, "LOOKUP", '"hello.txt"')
    assert lookup.live == "0 (negative entry)"  # squashfuse_ll answers a missing name so
    assert lookup.dependents == {"OPEN": 1, "READ": 1, "RELEASE": 1, "GETXATTR": 1}

    def big_is_a_dir(t: Path) -> None:
        (t / "d" / "big").unlink()
        (t / "d" / "big").mkdir()

    isdir = _squash_variant(tmp_path, "isdir", big_is_a_dir)
    result, _ = diverged(records, ["squashfuse_ll", str(isdir), "{}"], MOUNTPOINT)
    assert root(result, "LOOKUP", '"big"').field == "entry.attr.mode"
    # squashfuse_ll refuses to open a directory as a file: its four READs and its RELEASE
    # are not sent
    opened = root(result, "OPEN", "")
    assert opened.field == "error" and opened.live == "-21 EISDIR"
    assert opened.dependents == {"READ": 4, "RELEASE": 1}


# ---------------------------------------------------------------------------- fuse-overlayfs


@pytest.mark.mount
@needs_root
@pytest.mark.skipif(shutil.which("fuse-overlayfs") is None, reason="fuse-overlayfs not installed")
def test_fuse_overlayfs_create_that_fails_live_skips_its_write_flush_release(
    tmp_path: Path,
) -> None:
    (tmp_path / "rec" / "lower").mkdir(parents=True)
    (tmp_path / "rec" / "lower" / "base.txt").write_text("base\n")
    # live: the name the session creates is taken by a directory in the lower layer
    (tmp_path / "live" / "lower" / "new.txt").mkdir(parents=True)
    (tmp_path / "live" / "lower" / "base.txt").write_text("base\n")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    m = str(mnt)
    capture = tmp_path / "create.pcapng"
    _record([*_overlay(tmp_path / "rec"), m], mnt, capture,
            [["sh", "-c", f"echo hello > {m}/new.txt"], ["cat", f"{m}/base.txt"]])  # fmt: skip
    with open(capture, "rb") as f:
        records = list(CaptureReader(f))
    result, _ = diverged(records, [*_overlay(tmp_path / "live"), "{}"], m)
    lookup = root(result, "LOOKUP", '"new.txt"')
    assert lookup.field == "entry.nodeid" and lookup.recorded == "0 (negative entry)"
    create = root(result, "CREATE", '"new.txt"')
    assert create.field == "error" and create.recorded.startswith("entry nodeid ")
    assert {"WRITE", "FLUSH", "RELEASE"} <= set(create.dependents)
    assert not (tmp_path / "live" / "upper" / "new.txt").is_file()


@pytest.mark.mount
@needs_root
@pytest.mark.skipif(shutil.which("fuse-overlayfs") is None, reason="fuse-overlayfs not installed")
@pytest.mark.skipif(shutil.which("stress-ng") is None, reason="stress-ng not installed")
def test_concurrent_stress_ng_session_replays_on_a_fresh_fuse_overlayfs(tmp_path: Path) -> None:
    for side in ("rec", "live"):
        (tmp_path / side / "lower").mkdir(parents=True)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    capture = tmp_path / "stress.pcapng"
    # writers, renames, hard links, xattrs and fallocate at once, for a few seconds
    stress = ["stress-ng", "--temp-path", str(mnt), "-t", "2",
              "--hdd", "2", "--hdd-ops", "4", "--hdd-bytes", "1m", "--hdd-write-size", "64k",
              "--rename", "1", "--rename-ops", "50", "--link", "1", "--link-ops", "20",
              "--xattr", "1", "--xattr-ops", "20",
              "--fallocate", "1", "--fallocate-ops", "20"]  # fmt: skip
    _record([*_overlay(tmp_path / "rec"), str(mnt)], mnt, capture, [stress])
    with open(capture, "rb") as f:
        records = list(CaptureReader(f))
    engine = ReplayEngine(records, ProtocolCodec(sys.byteorder))
    result, _ = run(engine, [*_overlay(tmp_path / "live"), "{}"], mountpoint=str(mnt))
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.differences == [], [d.line() for d in result.differences[:20]]
    assert result.not_sent == 0
    for op in ("WRITE", "RENAME", "LINK", "SETXATTR", "FALLOCATE"):
        assert result.by_opcode[op].answered > 0 or result.by_opcode[f"{op}2"].answered > 0, op


def _collector() -> tuple[FrameSink, Any]:
    got: list[tuple[Direction, int, bytes]] = []
    return (lambda d, t, data: got.append((d, t, data))), (lambda: (os.getpid(), got))


def test_child_sink_hands_every_frame_in_order_and_returns_the_child_result() -> None:
    frames = [(Direction.INBOUND if i % 3 else Direction.OUTBOUND, 10**18 + i, bytes([i % 256]) * i)
              for i in range(3000)]  # fmt: skip
    child = ChildSink(_collector)
    for f in frames:
        child(*f)
    pid, got = child.finish()
    assert pid == child.pid != os.getpid()
    assert got == frames
    child.abandon()  # after finish: nothing left to end
    with pytest.raises(ChildProcessError):
        os.waitpid(child.pid, os.WNOHANG)  # reaped


def test_child_sink_failure_is_told_and_an_abandoned_child_is_reaped() -> None:
    def broken() -> tuple[FrameSink, Any]:
        def feed(d: Direction, t: int, data: bytes) -> None:
            raise ValueError("no such frame")

        return feed, list

    child = ChildSink(broken)
    child(Direction.INBOUND, 1, b"x")
    with pytest.raises(RuntimeError, match="ValueError: no such frame"):
        child.finish()
    child = ChildSink(_collector)
    child(Direction.INBOUND, 1, b"x" * 100_000)
    child.abandon()
    with pytest.raises(ChildProcessError):
        os.waitpid(child.pid, os.WNOHANG)
