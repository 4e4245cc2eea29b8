"""``fusetrace conform`` as a user runs it: usage errors, exit statuses, report files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from tests.conform.helpers import build_image, have, overlay_argv, squashfuse_argv
from tests.support.mount import fusetrace_cmd, fusetrace_env, is_mounted, one_line_error

ROOT = Path(__file__).resolve().parents[2]
MISBEHAVE = ROOT / "tests" / "tracker" / "misbehave.py"


def conform(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        fusetrace_cmd("conform", *args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=fusetrace_env(),
        cwd="/",
    )


def test_help_teaches_with_an_example() -> None:
    out = conform("--help")
    assert out.returncode == 0
    assert "fusetrace conform /mnt -- squashfuse_ll image.sqfs /mnt" in out.stdout
    assert "--format" in out.stdout and "--output" in out.stdout and "--baseline" in out.stdout
    assert "--report" not in out.stdout  # deprecated: still accepted, no longer shown


def test_missing_daemon_is_a_usage_error(tmp_path: Path) -> None:
    out = conform(str(tmp_path))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr


def test_bad_timeout_is_a_usage_error(tmp_path: Path) -> None:
    out = conform("--timeout", "0", str(tmp_path), "--", "true")
    assert out.returncode == 2


@pytest.mark.mount
def test_missing_mountpoint_is_an_environment_error(tmp_path: Path) -> None:
    out = conform(str(tmp_path / "nope"), "--", "squashfuse_ll", "x", "{}")
    assert out.returncode == 4
    assert "not a directory" in one_line_error(out.stderr)


@pytest.mark.mount
def test_missing_baseline_is_an_environment_error(mountpoint: Path, tmp_path: Path) -> None:
    out = conform("--baseline", str(tmp_path / "nope.pcapng"), str(mountpoint), "--", "true")
    assert out.returncode == 4
    assert "no such baseline capture" in one_line_error(out.stderr)


@pytest.mark.mount
def test_a_daemon_that_cannot_start_exits_4_and_leaves_nothing(mountpoint: Path) -> None:
    out = conform(str(mountpoint), "--", "/nonexistent/daemon", "{}")
    assert out.returncode == 4, out.stderr
    assert "fusetrace: error:" in out.stderr
    assert not is_mounted(mountpoint)


@pytest.mark.mount
@pytest.mark.skipif(not have("squashfuse_ll"), reason="squashfuse_ll not installed")
def test_squashfuse_passes_with_junit_and_json(mountpoint: Path, tmp_path: Path) -> None:
    image = build_image(tmp_path / "img")
    junit, js, cap = tmp_path / "j.xml", tmp_path / "r.json", tmp_path / "c.pcapng"
    out = conform(
        "--report", str(junit), "--json", str(js), "-w", str(cap), str(mountpoint), "--",
        *squashfuse_argv(image, "{}"),
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    # the old spellings still work for one release, with a note each
    assert "--report is deprecated" in out.stderr and "--json is deprecated" in out.stderr
    assert not is_mounted(mountpoint)
    assert "read-only filesystem: mkdir: ENOSYS" in out.stdout
    assert out.stdout.rstrip().endswith("result: pass")
    doc = json.loads(js.read_text())
    assert doc["ok"] is True and doc["read_only"] is True
    assert doc["counts"]["failed"] == 0 and doc["counts"]["supported"] > 10
    assert doc["capture_summary"]["opcodes"]["READDIR"] >= 2
    suites = {s.get("name"): s for s in ET.parse(junit).getroot().iter("testsuite")}
    assert suites["conform.workload"].get("failures") == "0"
    assert suites["conform.findings"].get("failures") == "0"
    assert cap.stat().st_size > 0


@pytest.mark.mount
@pytest.mark.skipif(not have("fuse-overlayfs"), reason="fuse-overlayfs not installed")
def test_baseline_replay_is_reported(mountpoint: Path, tmp_path: Path) -> None:
    base = ROOT / "captures" / "fuse-overlayfs.pcapng"
    js = tmp_path / "r.json"
    out = conform(
        "--large-dir", "20", "--format", "json", "--output", str(js), "--baseline", str(base),
        "-q",
        str(mountpoint), "--", *overlay_argv(tmp_path / "ov", "{}"),
    )  # fmt: skip
    assert not is_mounted(mountpoint)
    doc = json.loads(js.read_text())
    assert doc["baseline"]["capture"] == str(base)
    assert "exit" in doc["baseline"]
    # the verdict follows the replay: differences fail the run
    assert out.returncode == (1 if doc["baseline"]["differences"] else 0), out.stderr


@pytest.mark.mount
@pytest.mark.skipif(not have("fuse-overlayfs"), reason="fuse-overlayfs not installed")
def test_overlay_is_sent_every_opcode_a_plain_mount_can_carry(
    mountpoint: Path, tmp_path: Path
) -> None:
    js, junit = tmp_path / "r.json", tmp_path / "j.xml"
    out = conform(
        "--large-dir", "20", "--json", str(js), "--report", str(junit),
        str(mountpoint), "--", *overlay_argv(tmp_path / "ov", "{}"),
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert not is_mounted(mountpoint)
    doc = json.loads(js.read_text())
    status = {c["opcode"]: c["status"] for c in doc["coverage"]}
    assert [op for op, st in status.items() if st == "not sent"] == []
    for op in (
        "FSYNCDIR",
        "INTERRUPT",
        "BATCH_FORGET",
        "FORGET",
        "TMPFILE",
        "STATX",
        "POLL",
        "COPY_FILE_RANGE_64",
        "COPY_FILE_RANGE",
        "RENAME2",
        "READDIRPLUS",
        "IOCTL",
    ):
        assert status[op] == "sent", op  # fmt: skip
    unreachable = {c["opcode"]: c["reason"] for c in doc["coverage"] if c["status"] != "sent"}
    assert set(unreachable) == {
        "GETLK", "SETLK", "SETLKW", "ACCESS", "BMAP", "DESTROY", "NOTIFY_REPLY",
        "SETUPMAPPING", "REMOVEMAPPING", "SYNCFS", "CUSE_INIT",
    }  # fmt: skip
    assert unreachable["GETLK"] == "the daemon does not grant POSIX_LOCKS"
    assert unreachable["ACCESS"] == "the daemon grants POSIX_ACL"
    assert "opcodes: " in out.stdout and "not reachable: SYNCFS (virtiofs only" in out.stdout
    suites = {s.get("name"): s for s in ET.parse(junit).getroot().iter("testsuite")}
    assert suites["conform.coverage"].get("skipped") == str(len(unreachable))


@pytest.mark.mount
@pytest.mark.skipif(not MISBEHAVE.exists(), reason="tests/tracker/misbehave.py not available")
def test_a_misbehaving_daemon_fails_with_its_faults_named(mountpoint: Path, tmp_path: Path) -> None:
    junit = tmp_path / "j.xml"
    faults = tmp_path / "faults.json"
    out = conform(
        "--timeout", "10", "--format", "junit", "--output", str(junit), str(mountpoint), "--",
        sys.executable, str(MISBEHAVE), "{}", str(faults),
    )  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    assert not is_mounted(mountpoint)
    committed = {f["rule"] for f in json.loads(faults.read_text())["faults"].values()}
    assert committed  # the daemon says which faults it committed
    root = ET.parse(junit).getroot()
    findings = root.find("testsuite[@name='conform.findings']")
    messages = " ".join((f.get("message") or "") + (f.text or "") for f in findings.iter("failure"))
    for rule in committed:
        assert rule in messages, (rule, messages)


@pytest.mark.mount
@pytest.mark.skipif(not have("fuse-overlayfs"), reason="fuse-overlayfs not installed")
def test_ctrl_c_unmounts_and_exits_130(mountpoint: Path, tmp_path: Path) -> None:
    import signal
    import time

    # a large directory of 50,000 entries keeps the workload busy long past the signal
    proc = subprocess.Popen(
        fusetrace_cmd("conform", "--large-dir", "50000", str(mountpoint), "--",
                      *overlay_argv(tmp_path / "ov", "{}")),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=fusetrace_env(), cwd="/",
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not is_mounted(mountpoint) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert is_mounted(mountpoint)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "fusetrace: interrupted" in err
    assert not is_mounted(mountpoint)


@pytest.mark.mount
@pytest.mark.skipif(not MISBEHAVE.exists(), reason="tests/tracker/misbehave.py not available")
def test_a_step_that_hangs_is_abandoned_and_the_mount_cleaned_up(
    mountpoint: Path, tmp_path: Path
) -> None:
    js = tmp_path / "r.json"
    hang = ROOT / "tests" / "conform" / "hangfs.py"
    out = conform("--timeout", "2", "--format", "json", "--output", str(js), str(mountpoint), "--",
                  sys.executable, str(hang), "{}")  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    assert not is_mounted(mountpoint)
    steps = {s["step"]: s for s in json.loads(js.read_text())["steps"]}
    assert steps["statfs"]["status"] == "failed"
    assert "did not answer its first request in 2 s" in steps["statfs"]["detail"]
    assert steps["mkdir"]["status"] == "skipped"
    assert "hung and the connection was aborted" in steps["mkdir"]["detail"]


@pytest.mark.mount
@pytest.mark.skipif(not MISBEHAVE.exists(), reason="tests/tracker/misbehave.py not available")
def test_a_hanging_mkdir_fails_its_step_and_skips_the_rest(
    mountpoint: Path, tmp_path: Path
) -> None:
    js = tmp_path / "r.json"
    hang = ROOT / "tests" / "conform" / "hangfs.py"
    out = conform("--timeout", "2", "--format", "json", "--output", str(js), str(mountpoint), "--",
                  sys.executable, str(hang), "{}", "MKDIR")  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    assert not is_mounted(mountpoint)
    doc = json.loads(js.read_text())
    steps = {s["step"]: s for s in doc["steps"]}
    assert steps["statfs"]["status"] == "not supported"  # STATFS refused with ENOSYS
    assert steps["mkdir"]["status"] == "failed"
    assert steps["mkdir"]["detail"].startswith("timed out after 2 s")
    assert steps["mkdir"]["seen"]["MKDIR"]["requests"] == 1
    assert steps["read"]["status"] == "skipped"
    assert "step mkdir hung and the connection was aborted" in steps["read"]["detail"]


@pytest.mark.mount
@pytest.mark.skipif(not have("squashfuse_ll"), reason="squashfuse_ll not installed")
def test_a_cut_baseline_is_reported_then_exits_3(mountpoint: Path, tmp_path: Path) -> None:
    image = build_image(tmp_path / "img")
    base, js = tmp_path / "base.pcapng", tmp_path / "r.json"
    out = conform("-w", str(base), str(mountpoint), "--", *squashfuse_argv(image, "{}"))
    assert out.returncode == 0, out.stdout + out.stderr
    base.write_bytes(base.read_bytes()[:-40])  # the last block cut in half
    out = conform(
        "--format", "json", "--output", str(js), "--baseline", str(base), str(mountpoint),
        "--", *squashfuse_argv(image, "{}"),
    )  # fmt: skip
    assert out.returncode == 3, out.stdout + out.stderr
    assert not is_mounted(mountpoint)
    assert out.stdout.rstrip().endswith("result: pass")  # the report is all there
    doc = json.loads(js.read_text())
    assert doc["baseline"]["exit"] == 3 and doc["baseline"]["summary"]["replies_compared"] > 10
