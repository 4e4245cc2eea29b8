"""``fusetrace record`` as a user runs it: options, errors, exit statuses, messages."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fusetrace.cli import cli, commands
from tests.support.mount import fusetrace_cmd, fusetrace_env, is_mounted, one_line_error, recording
from tests.support.trees import make_squashfs, make_tree


def run_record(
    *args: str, timeout: float = 60, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, *fusetrace_cmd("record", *args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=fusetrace_env(),
        cwd="/",
    )


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("img")
    return make_squashfs(make_tree(base / "src", big=10_000), base / "small.sqfs")


def test_help_teaches_with_an_example() -> None:
    commands.load()
    out = subprocess.run(
        fusetrace_cmd("record", "--help"), capture_output=True, text=True, env=fusetrace_env()
    ).stdout
    assert "fusetrace record -w trace.pcapng /mnt -- squashfuse_ll" in out
    for option in ("--write", "--options", "--snaplen", "--timeout", "--live", "--handoff"):
        assert option in out
    assert cli is not None


@pytest.mark.mount
def test_missing_daemon(mountpoint: Path, tmp_path: Path) -> None:
    r = run_record(
        "-w",
        str(tmp_path / "t.pcapng"),
        str(mountpoint),
        "--",
        "no-such-fuse-daemon",
        str(mountpoint),
    )
    assert r.returncode == 4
    assert "no-such-fuse-daemon not found" in one_line_error(r.stderr)
    assert not is_mounted(mountpoint)


@pytest.mark.mount
def test_missing_mountpoint(tmp_path: Path, image: Path) -> None:
    mnt = tmp_path / "nowhere"
    r = run_record(
        "-w", str(tmp_path / "t.pcapng"), str(mnt), "--", "squashfuse_ll", str(image), str(mnt)
    )
    assert r.returncode == 4
    line = one_line_error(r.stderr)
    assert "does not exist" in line and "mkdir" in line
    assert not mnt.exists()


@pytest.mark.mount
def test_mountpoint_is_a_fifo(tmp_path: Path, image: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    r = run_record(
        "-w", str(tmp_path / "t.pcapng"), str(fifo), "--", "squashfuse_ll", str(image), "{}"
    )
    assert r.returncode == 4
    assert "neither a directory nor a regular file" in one_line_error(r.stderr)


@pytest.mark.mount
def test_a_regular_file_is_a_mountpoint(tmp_path: Path) -> None:
    """The kernel mounts FUSE on a regular file when the root is one (libfuse's null
    example does): recorded, the file reads as the daemon serves it."""
    target = tmp_path / "target"
    target.write_text("the file underneath\n")
    daemon = [sys.executable, str(Path(__file__).parents[1] / "support" / "filefs.py"), "{}"]
    with recording(daemon, target, tmp_path / "file.pcapng") as rec:
        assert is_mounted(target)
        assert target.read_text() == "a file mounted on a file\n"
    assert rec.returncode == 0, rec.stderr
    assert target.read_text() == "the file underneath\n"
    assert any(r.data[4:8] == b"\x0f\0\0\0" for r in rec.frames())  # a READ (15) went by


@pytest.mark.mount
def test_not_root(mountpoint: Path, tmp_path: Path, image: Path) -> None:
    os.chmod(tmp_path, 0o777)
    r = run_record(
        "-w",
        str(tmp_path / "t.pcapng"),
        str(mountpoint),
        "--",
        "squashfuse_ll",
        str(image),
        "{}",
        prefix=("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"),
    )
    assert r.returncode == 4, r.stderr
    assert "must run as root" in one_line_error(r.stderr)
    assert not is_mounted(mountpoint)


@pytest.mark.mount
def test_daemon_fails_before_init(mountpoint: Path, tmp_path: Path) -> None:
    r = run_record(
        "-w",
        str(tmp_path / "t.pcapng"),
        str(mountpoint),
        "--",
        "squashfuse_ll",
        "-f",
        str(tmp_path / "no-such.sqfs"),
        "{}",
    )
    assert r.returncode == 4
    line = one_line_error(r.stderr)
    assert "ended before answering INIT" in line
    assert "exit status" in line
    assert not is_mounted(mountpoint)


@pytest.mark.mount
def test_daemon_arguments_must_name_the_mountpoint(
    mountpoint: Path, tmp_path: Path, image: Path
) -> None:
    cap = str(tmp_path / "t.pcapng")
    daemon = ("squashfuse_ll", str(image), "/somewhere/else")
    r = run_record("-w", cap, "--handoff", "fd", str(mountpoint), "--", *daemon)
    assert r.returncode == 4
    assert "{}" in one_line_error(r.stderr)
    assert not is_mounted(mountpoint)
    # auto: no argument names the mountpoint, so the daemon mounts through fusermount,
    # where it fails on its own mountpoint before asking
    r = run_record("-w", cap, str(mountpoint), "--", *daemon)
    assert r.returncode == 4
    assert "ended without mounting" in one_line_error(r.stderr)
    assert not is_mounted(mountpoint)


@pytest.mark.mount
def test_capture_cannot_be_created(mountpoint: Path, tmp_path: Path, image: Path) -> None:
    r = run_record(
        "-w",
        str(tmp_path / "no" / "dir" / "t.pcapng"),
        str(mountpoint),
        "--",
        "squashfuse_ll",
        str(image),
        "{}",
    )
    assert r.returncode == 4
    line = one_line_error(r.stderr)
    assert "cannot create" in line and "writable" in line
    assert not is_mounted(mountpoint)


def test_unknown_mount_option_is_a_usage_error(tmp_path: Path) -> None:
    r = run_record(
        "-w", str(tmp_path / "t.pcapng"), "-o", "ro,frobnicate", str(tmp_path), "--", "true", "{}"
    )
    assert r.returncode == 2
    assert "frobnicate" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.mount
def test_write_to_stdout_streams_pcapng_to_tshark(
    mountpoint: Path, tmp_path: Path, image: Path
) -> None:
    tshark = subprocess.Popen(
        ["tshark", "-r", "-", "-T", "fields", "-e", "frame.number"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert tshark.stdin is not None
    log = tmp_path / "stdout.log"
    with recording(
        ["squashfuse_ll", "-f", str(image), "{}"],
        mountpoint,
        "-",
        stdout=tshark.stdin,
        log=log,
        check_clean=False,  # -w -: the capture went to tshark, there is no file to check
    ) as rec:
        assert (mountpoint / "hello.txt").read_text() == "hello, fuse\n"
    tshark.stdin.close()
    assert tshark.stdout is not None
    out = tshark.stdout.read()
    tshark.wait(60)
    assert rec.returncode == 0, rec.stderr
    m = re.search(r"(\d+) frames captured to standard output", rec.stderr)
    assert m, rec.stderr
    assert len(out.split()) == int(m.group(1)) > 5


@pytest.mark.mount
def test_snaplen_cuts_payloads_and_keeps_lengths(
    mountpoint: Path, tmp_path: Path, image: Path
) -> None:
    with recording(
        ["squashfuse_ll", "-f", str(image), "{}"],
        mountpoint,
        tmp_path / "s.pcapng",
        record_args=["--snaplen", "64"],
    ) as rec:
        assert (mountpoint / "big.bin").read_bytes()
    frames = rec.frames()
    assert all(len(f.data) <= 64 for f in frames)
    assert max(f.orig_len for f in frames) > 4096
    assert any(f.truncated for f in frames)


@pytest.mark.mount
def test_live_prints_a_line_per_frame(mountpoint: Path, tmp_path: Path, image: Path) -> None:
    with recording(
        ["squashfuse_ll", "-f", str(image), "{}"],
        mountpoint,
        tmp_path / "l.pcapng",
        record_args=["--live"],
    ) as rec:
        os.listdir(mountpoint)
    frames = rec.frames()
    lines = [ln for ln in rec.stderr.splitlines() if " K>D " in ln or " D>K " in ln]
    assert len(lines) == len(frames)
    # the lines fusetrace decode prints: frame number, time, direction, unique, opcode, ...
    assert re.match(r"\s*1 0\.000000 K>D 2 INIT 7\.\d+", lines[0]), lines[0]
    assert any(" D>K 2 INIT ok" in ln for ln in lines), lines[:3]


FINDING = re.compile(r"^fusetrace: (FT\d{3}) (error|warning|info) \[(\w+)\] frame (\d+)", re.M)


@pytest.mark.mount
def test_check_on_a_real_daemon_finds_no_errors(
    mountpoint: Path, tmp_path: Path, image: Path
) -> None:
    cap = tmp_path / "t.pcapng"
    with recording(
        ["squashfuse_ll", str(image), "{}"], mountpoint, cap, record_args=["--check"]
    ) as rec:
        for path in sorted(mountpoint.rglob("*")):
            if path.is_file() and not path.is_symlink():
                path.read_bytes()
    assert rec.returncode == 0, rec.stderr
    assert "fusetrace: check: 0 errors, 0 warnings" in rec.stderr
    assert not [m for m in FINDING.findall(rec.stderr) if m[1] != "info"]


@pytest.mark.mount
def test_check_reports_each_fault_live_at_its_capture_frame(
    mountpoint: Path, tmp_path: Path
) -> None:
    """The misbehaving daemon of the tracker tests, run live under `record --check`: every
    fault is reported while recording, at the frame `fusetrace check` finds in the file, and
    the exit status is 1."""
    from fusetrace.cli.check import check_capture
    from tests.tracker.misbehave import FAULTS, MKDIR_FAULTS
    from tests.tracker.test_rules import in_thread

    cap, report = tmp_path / "faults.pcapng", tmp_path / "faults.json"
    daemon = [sys.executable, str(Path(__file__).parents[1] / "tracker" / "misbehave.py"), "{}",
              str(report), "bad-out-len"]  # fmt: skip
    with recording(
        daemon,
        mountpoint,
        cap,
        record_args=["--check", "--handoff", "fd"],
        check_clean=False,  # a misbehaving daemon: the findings are the point
    ) as rec:
        for name in FAULTS:
            if name not in ("forget-me", "bad-out-len"):
                in_thread(lambda n=name: os.stat(mountpoint / n))  # type: ignore[misc]
        for name in MKDIR_FAULTS:
            in_thread(lambda n=name: os.mkdir(mountpoint / n))  # type: ignore[misc]
    assert rec.returncode == 1, rec.stderr
    live = {(rule, int(frame)) for rule, sev, _who, frame in FINDING.findall(rec.stderr)}
    # both cite frames as Wireshark numbers them
    offline = {(f.rule, f.number) for f in check_capture(str(cap)).findings if f.number}
    assert live == offline
    wanted = {FAULTS[n] for n in FAULTS if n not in ("forget-me", "bad-out-len")}
    assert wanted | set(MKDIR_FAULTS.values()) <= {rule for rule, _ in live}
