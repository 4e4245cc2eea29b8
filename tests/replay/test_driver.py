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
from pathlib import Path

import pytest

from fusetrace.capture import CaptureReader
from fusetrace.errors import DaemonError
from fusetrace.protocol.abi import Opcode
from fusetrace.record import Direction, Record
from fusetrace.replay.codec import ProtocolCodec
from fusetrace.replay.driver import daemon_argv, run
from fusetrace.replay.engine import Outcome, ReplayEngine, ReplayOptions, ReplayResult
from tests.replay.kernel import FAKEFS, MOUNTPOINT, Kernel, record_fakefs_session
from tests.support.mount import is_mounted, recording


@pytest.fixture(scope="module")
def fake_recording(tmp_path_factory: pytest.TempPathFactory) -> list[Record]:
    path = tmp_path_factory.mktemp("rec") / "fake.pcapng"
    record_fakefs_session(str(path))
    with open(path, "rb") as f:
        return list(CaptureReader(f))


def replay(
    records: list[Record], argv: list[str], mountpoint: str = MOUNTPOINT, **opts: object
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
    fake_recording: list[Record],
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


def test_serial_replay_also_matches(fake_recording: list[Record]) -> None:
    result, _ = replay(fake_recording, fakefs(), serial=True)
    assert result.outcome is Outcome.COMPLETED and result.differences == []


def test_one_behaviour_change_gives_exactly_that_difference(
    fake_recording: list[Record],
) -> None:
    result, _ = replay(fake_recording, fakefs("--change"))
    assert result.outcome is Outcome.COMPLETED
    assert [(d.opcode, d.field) for d in result.differences] == [("READ", "data")]
    assert "first difference at offset 6" in result.differences[0].live


def test_daemon_killed_mid_replay_reports_where(fake_recording: list[Record]) -> None:
    result, _ = replay(fake_recording, fakefs("--die-on", "READDIRPLUS"))
    assert result.outcome is Outcome.DAEMON_GONE
    assert "SIGKILL" in result.reason
    assert result.died_on is not None and result.died_on[1] == "READDIRPLUS"
    assert result.compared > 5  # the partial results are kept
    assert result.differences == []


def test_daemon_that_stops_answering_is_timed_out(fake_recording: list[Record]) -> None:
    result, _ = replay(fake_recording, fakefs("--hang-on", "STATFS"), timeout_ns=1_500_000_000)
    assert result.outcome is Outcome.DAEMON_HUNG
    assert result.died_on is not None and result.died_on[1] == "STATFS"


def test_retrieve_notification_is_answered(fake_recording: list[Record]) -> None:
    result, frames = replay(fake_recording, fakefs("--retrieve"))
    assert result.live_notifications["RETRIEVE"] == 1
    answers = [d for direction, d in frames if direction is Direction.INBOUND
               and int.from_bytes(d[4:8], sys.byteorder) == Opcode.NOTIFY_REPLY]  # fmt: skip
    assert len(answers) == 1 and int.from_bytes(answers[0][8:16], sys.byteorder) == 77


def test_daemon_that_forks_into_the_background_is_served(fake_recording: list[Record]) -> None:
    result, _ = replay(fake_recording, fakefs("--fork"))
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.differences == []


def test_daemon_argv_substitution() -> None:
    assert daemon_argv(["d", "-f", "{}"], None, 5) == ["d", "-f", "/dev/fd/5"]
    assert daemon_argv(["d", "/mnt/x"], "/mnt/x", 7) == ["d", "/dev/fd/7"]
    with pytest.raises(DaemonError, match="names the mountpoint"):
        daemon_argv(["d", "/elsewhere"], "/mnt/x", 7)


def test_missing_daemon_is_a_daemon_error(fake_recording: list[Record]) -> None:
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


def squash_workload(image: Path) -> list[Record]:
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
def squash(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[Record]]:
    base = tmp_path_factory.mktemp("squash")
    same, other = base / "same.sqfs", base / "other.sqfs"
    make_image(base / "a", same, "")
    make_image(base / "b", other, "tail\n")
    return same, other, squash_workload(same)


@needs_squashfuse
def test_squashfuse_same_image_no_differences(squash: tuple[Path, Path, list[Record]]) -> None:
    same, _, records = squash
    result, _ = replay(records, ["squashfuse_ll", str(same), "{}"])
    assert result.outcome is Outcome.COMPLETED, result.reason
    assert result.differences == []
    assert result.compared > 20


@needs_squashfuse
def test_squashfuse_one_file_differs(squash: tuple[Path, Path, list[Record]]) -> None:
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
