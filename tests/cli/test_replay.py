"""``fusetrace replay`` end to end: exit statuses, report formats, the live capture, and a
replay run as user nobody (no root, no /dev/fuse)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fusetrace.capture import CaptureReader
from fusetrace.frame import Direction
from fusetrace.protocol.abi import Opcode
from fusetrace.tracker import Tracker
from tests.replay.kernel import FAKEFS, Kernel, record_fakefs_session

ROOT = Path(__file__).resolve().parent.parent.parent


def fusetrace(
    *args: str, user: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "fusetrace", *args]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def world() -> Iterator[Path]:
    """A directory every user can read (pytest's tmp_path is private to root)."""
    d = Path(tempfile.mkdtemp(prefix="fusetrace-replay-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d)


@pytest.fixture(scope="module")
def recording(world: Path) -> Path:
    path = world / "fake.pcapng"
    record_fakefs_session(str(path))
    path.chmod(0o644)
    return path


def fake(*flags: str) -> list[str]:
    return [sys.executable, FAKEFS, *flags, "{}"]


def test_clean_replay_exits_0_and_summarises(recording: Path) -> None:
    r = fusetrace("replay", str(recording), "--", *fake())
    assert r.returncode == 0, r.stderr
    assert "0 differences" in r.stdout
    assert "requests/s" in r.stdout  # --speed 0: the benchmark figures
    assert "READ" in r.stdout


def test_difference_exits_1_with_one_line_per_difference(recording: Path) -> None:
    r = fusetrace("replay", str(recording), "--", *fake("--change"))
    assert r.returncode == 1, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("frame ")]
    assert len(lines) == 1
    assert lines[0].startswith("frame 9 READ: data: recorded 12 bytes")  # counted from 1
    assert "offset 6" in lines[0]
    assert "differences by opcode: READ 1" in r.stdout


def test_ignore_and_strict_switch_fields(recording: Path) -> None:
    r = fusetrace("replay", "--strict", str(recording), "--", *fake())
    assert r.returncode == 1
    fields = {ln.split(": ")[1] for ln in r.stdout.splitlines() if ln.startswith("frame ")}
    fields.discard("entries.order")  # fakefs lists in one order; kept in case it changes
    # fakefs draws atime and statfs bfree at random on every call, and derives inode
    # numbers and generations from its per-run base
    assert {"entry.attr.atime", "statfs.st.bfree", "entry.attr.ino", "entry.generation"} <= fields
    assert not any(f.endswith(("nodeid", ".fh")) for f in fields)  # mapped, never compared
    r = fusetrace(
        "replay",
        "--strict",
        "--ignore-field",
        "atime,bfree",
        "--ignore-field",
        "ino,generation",
        str(recording),
        "--",
        *fake(),
    )
    assert r.returncode == 0, r.stdout
    # the old name still works, with a note (check's --ignore takes rule codes)
    r = fusetrace("replay", "--strict", "--ignore", "atime,bfree,ino,generation",
                  str(recording), "--", *fake())  # fmt: skip
    assert r.returncode == 0, r.stdout
    assert "--ignore-field" in r.stderr


def test_speed_keeps_pacing_and_serial_works(recording: Path) -> None:
    r = fusetrace("replay", "--speed", "2", "--serial", str(recording), "--", *fake())
    assert r.returncode == 0, r.stderr
    assert "0 differences" in r.stdout
    assert "requests/s" not in r.stdout  # benchmark figures only at --speed 0
    r = fusetrace("replay", "--speed", "-1", str(recording), "--", *fake())
    assert r.returncode == 2


def test_json_report(recording: Path) -> None:
    r = fusetrace("replay", "--format", "json", str(recording), "--", *fake("--change"))
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert doc["summary"]["differences"] == 1
    assert doc["summary"]["by_opcode"]["READ"]["differences"] == 1
    (d,) = doc["differences"]
    assert d["opcode"] == "READ" and d["field"] == "data" and d["frame"] == 9
    assert "latency" in doc["summary"]


def test_notifications_are_counted(recording: Path) -> None:
    r = fusetrace("replay", str(recording), "--", *fake("--retrieve"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "notifications: recorded none; live RETRIEVE 1" in r.stdout


def test_daemon_killed_exits_4_with_partial_results(recording: Path) -> None:
    r = fusetrace("replay", str(recording), "--", *fake("--die-on", "READDIRPLUS"))
    assert r.returncode == 4
    assert "died on frame" in r.stdout and "READDIRPLUS" in r.stdout
    assert "replies compared" in r.stdout
    assert "SIGKILL" in r.stderr


def test_daemon_not_starting_exits_4(recording: Path) -> None:
    r = fusetrace("replay", str(recording), "--", "/nonexistent/daemon", "{}")
    assert r.returncode == 4 and "not found" in r.stderr
    r = fusetrace("replay", str(recording), "--", sys.executable, "-c", "pass", "{}")
    assert r.returncode == 4
    assert "died on frame 1 INIT" in r.stdout


def test_json_stays_valid_when_the_daemon_prints_to_stdout(recording: Path) -> None:
    daemon = ["sh", "-c", 'echo "daemon banner"; exec "$0" "$@"', *fake()]
    r = fusetrace("replay", "--format", "json", str(recording), "--", *daemon)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["summary"]["differences"] == 0
    assert "daemon banner" in r.stderr


def _processes_with(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            continue
    return found


def test_the_whole_daemon_group_ends_with_replay(recording: Path) -> None:
    # a daemon that never answers, with a child in its group
    r = fusetrace("replay", "--timeout", "1", str(recording), "--",
                  "sh", "-c", "sleep 31.25; :", "sh", "{}")  # fmt: skip
    assert r.returncode == 4 and "no reply to frame 1 INIT" in r.stderr
    assert _processes_with("31.25") == []


def test_a_daemon_that_forks_into_the_background_is_followed(recording: Path) -> None:
    # the parent exits 0 at once; a child in a new session keeps the socket and is killed
    # by SIGABRT when the INIT comes in: the report names that, not "exit status 0"
    script = "setsid sh -c 'read -t 5 x < /dev/null; sleep 0.5; kill -ABRT $$' &"
    r = fusetrace("replay", "--timeout", "10", str(recording), "--",
                  "sh", "-c", script, "sh", "{}")  # fmt: skip
    assert r.returncode == 4
    assert "background process" in r.stderr and "SIGABRT" in r.stderr, r.stderr
    assert "exit status 0" not in r.stderr


def test_unreadable_capture_exits_3(world: Path) -> None:
    bad = world / "bad.pcapng"
    bad.write_bytes(b"not a capture at all")
    r = fusetrace("replay", str(bad), "--", *fake())
    assert r.returncode == 3 and "Traceback" not in r.stderr
    r = fusetrace("replay", str(world / "missing.pcapng"), "--", *fake())
    assert r.returncode == 3


def test_write_live_run_as_capture(recording: Path, world: Path) -> None:
    out = world / "live.pcapng"
    r = fusetrace("replay", "-w", str(out), str(recording), "--", *fake())
    assert r.returncode == 0, r.stderr
    assert (out.stat().st_mode & 0o777) == 0o600
    with open(out, "rb") as f:
        frames = list(CaptureReader(f))
    with open(recording, "rb") as f:
        recorded = list(CaptureReader(f))
    assert len(frames) == len(recorded)
    assert [fr.direction for fr in frames].count(Direction.INBOUND) == [
        fr.direction for fr in recorded
    ].count(Direction.INBOUND)
    tracker = Tracker(byte_order=sys.byteorder)
    findings = tracker.feed_all(frames) + tracker.finish()
    assert not [f for f in findings if f.severity.label == "error"]
    # the live run is itself a recording: replaying it finds nothing either
    again = fusetrace("replay", str(out), "--", *fake())
    assert again.returncode == 0 and "0 differences" in again.stdout, again.stdout
    check = fusetrace("check", str(out))
    if "No such command" not in check.stderr:
        assert check.returncode in (0, 1), check.stderr  # read fine; exit reflects findings


def test_help_teaches_with_an_example() -> None:
    r = fusetrace("replay", "--help")
    assert r.returncode == 0
    assert "fusetrace replay trace.pcapng -- squashfuse_ll image.sqfs {}" in r.stdout


@pytest.mark.skipif(shutil.which("squashfuse_ll") is None or shutil.which("mksquashfs") is None,
                    reason="squashfuse_ll or mksquashfs not installed")  # fmt: skip
def test_replay_as_nobody_without_dev_fuse(world: Path) -> None:
    src = world / "tree"
    (src / "d").mkdir(parents=True)
    (src / "a.txt").write_text("alpha\n")
    (src / "d" / "b.txt").write_text("beta\n" * 1000)
    image = world / "img.sqfs"
    subprocess.run(["mksquashfs", str(src), str(image), "-noappend", "-quiet", "-no-progress"],
                   check=True)  # fmt: skip
    image.chmod(0o644)
    k = Kernel(["squashfuse_ll", str(image), "{}"])
    k.init()
    k.listdir(1)
    d = k.lookup(1, "d")
    b = k.lookup(d, "b.txt")
    fh = k.open(b)
    k.call(Opcode.READ, {"fh": fh, "offset": 0, "size": 8192}, b)
    k.call(Opcode.RELEASE, {"fh": fh}, b)
    capture = world / "sq.pcapng"
    capture.write_bytes(k.capture())
    capture.chmod(0o644)
    # nobody really cannot use /dev/fuse here
    probe = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable,
         "-c", "open('/dev/fuse', 'rb')"], capture_output=True, text=True,
    )  # fmt: skip
    assert probe.returncode != 0 and "Permission" in probe.stderr
    r = fusetrace("replay", str(capture), "--", "squashfuse_ll", str(image), "{}",
                  user="nobody")  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 differences" in r.stdout


def test_fusermount_handoff_needs_root(recording: Path) -> None:
    # (a system binary: nobody cannot resolve this virtualenv's python)
    r = fusetrace("replay", "--handoff", "fusermount", str(recording), "--", "squashfuse_ll",
                  "x.sqfs", "{}", user="nobody")  # fmt: skip
    assert r.returncode == 4 and "needs root" in r.stderr, r.stderr
    # auto without any argument naming the mountpoint: say how to name it
    r = fusetrace("replay", str(recording), "--", "squashfuse_ll", "x.sqfs", "/elsewhere",
                  user="nobody")  # fmt: skip
    assert r.returncode == 4 and "no daemon argument names the mountpoint" in r.stderr


def test_a_removed_file_reads_as_one_diagnosis(recording: Path) -> None:
    r = fusetrace("replay", str(recording), "--", *fake("--remove", "hello.txt"))
    assert r.returncode == 1, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("frame ")]
    root = next(ln for ln in lines if 'LOOKUP "hello.txt"' in ln)
    assert "recorded entry nodeid" in root and "live -2 ENOENT" in root
    assert "later requests not sent (" in root and "OPEN" in root and "RELEASE" in root
    # the session looks the name up twice: one root cause, one line
    assert " (again at frame " in root and len([ln for ln in lines if "hello.txt" in ln]) == 2
    r = fusetrace("replay", "--format", "json", str(recording), "--",
                  *fake("--remove", "hello.txt"))  # fmt: skip
    doc = json.loads(r.stdout)
    d = next(d for d in doc["differences"] if d["label"] == '"hello.txt"')
    assert d["opcode"] == "LOOKUP" and d["field"] == "error" and d["not_sent"] > 3
    assert {"OPEN", "READ", "FLUSH", "RELEASE"} <= set(d["dependents"])
    assert doc["summary"]["not_sent"] == sum(x["not_sent"] for x in doc["differences"])


@pytest.mark.skipif(os.geteuid() != 0, reason="auto picks seccomp only as root")
def test_braces_ask_for_the_fd_handoff_even_after_a_seccomp_recording(
    recording: Path, world: Path
) -> None:
    """A capture recorded through the seccomp hand-off, replayed with {} on the command line:
    the daemon gets /dev/fd/N, not a seccomp supervisor and a literal {} (the benchmark's
    case: record squashfuse_ll natively, replay it with {})."""
    from fusetrace.capture.files import host_writer

    path = world / "seccomp.pcapng"
    with open(recording, "rb") as f:
        reader = CaptureReader(f)
        records = list(reader)
        meta = {**reader.info.meta, "handoff": "seccomp"}
    with open(path, "wb") as out:
        writer = host_writer(out, meta)
        for rec in records:
            writer.write(rec.direction, rec.t_ns, rec.data)
    path.chmod(0o644)
    r = fusetrace("replay", str(path), "--", *fake())
    assert r.returncode == 0, r.stderr
    assert "0 differences" in r.stdout
