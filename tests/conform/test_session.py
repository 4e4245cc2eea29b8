"""``run_conform`` on real daemons, compared with a native run of the same daemon."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusetrace.conform.runner import run_workload
from fusetrace.conform.session import ConformConfig, find_mount, run_conform
from fusetrace.conform.steps import Status
from fusetrace.errors import DaemonError, EnvironmentProblem
from tests.conform.helpers import (
    build_image,
    have,
    have_pyfuse3,
    needs_fuse,
    overlay_argv,
    passthrough_argv,
    squashfuse_argv,
)
from tests.support.mount import native_mount

pytestmark = needs_fuse


def native_statuses(argv: list[str], mnt: Path, large: int) -> dict[str, Status]:
    with native_mount(argv, mnt):
        _, results = run_workload(mnt, large_entries=large, timeout=20)
    return {r.name: r.status for r in results}


def assert_matches_native(report, native: dict[str, Status]) -> None:  # type: ignore[no-untyped-def]
    """Same verdict as natively, except that the capture may reveal an op the daemon refused
    with ENOSYS while the kernel emulated the call or reported another error (EPERM for LINK):
    the native run cannot see that."""
    for step in report.steps:
        want = native[step.name]
        if step.status is want:
            continue
        assert want in (Status.SUPPORTED, Status.FAILED), (step.name, want, step.status)
        assert step.status is Status.UNSUPPORTED, (
            step.name, want, step.status, step.detail,
        )  # fmt: skip
        assert "daemon answered" in step.detail, (step.name, step.detail)


def run(mnt: Path, argv: list[str], tmp: Path, large: int, **kw) -> object:  # type: ignore[no-untyped-def]
    config = ConformConfig(
        mountpoint=str(mnt), daemon=argv, capture=str(tmp / "run.pcapng"), large_entries=large,
        timeout=20, **kw,
    )  # fmt: skip
    try:
        return run_conform(config)
    finally:
        assert find_mount(str(mnt)) is None, "conform left the filesystem mounted"


@pytest.mark.skipif(not have("fuse-overlayfs"), reason="fuse-overlayfs not installed")
def test_fuse_overlayfs_matches_its_native_run(tmp_path: Path, mountpoint: Path) -> None:
    native = native_statuses(overlay_argv(tmp_path / "native", mountpoint), mountpoint, 1000)
    report = run(mountpoint, overlay_argv(tmp_path / "traced", mountpoint), tmp_path, 1000)
    assert_matches_native(report, native)
    got = {s.name: s for s in report.steps}
    assert not report.read_only
    assert report.failed_steps == [] and report.error_findings == []
    assert report.ok
    # what the capture shows that the system calls hide: LSEEK refused, kernel emulates
    assert got["lseek-data-hole"].status is Status.UNSUPPORTED
    assert got["lseek-data-hole"].seen["LSEEK"].errors == {"ENOSYS": 1}
    assert got["tmpfile"].status is Status.UNSUPPORTED
    assert got["readdir-large"].detail == "1000 entries"
    assert got["populate-large"].seen["CREATE"].requests == 1000
    assert got["write"].seen["WRITE"].ok >= 1
    assert (tmp_path / "run.pcapng").stat().st_size > 0


@pytest.mark.skipif(not have("squashfuse_ll"), reason="squashfuse_ll not installed")
def test_squashfuse_is_detected_read_only(tmp_path: Path, mountpoint: Path) -> None:
    image = build_image(tmp_path / "img")
    native = native_statuses(squashfuse_argv(image, mountpoint), mountpoint, 1000)
    report = run(mountpoint, squashfuse_argv(image, mountpoint), tmp_path, 1000)
    assert report.read_only and "mkdir: ENOSYS" in report.read_only_reason
    assert_matches_native(report, native)
    got = {s.name: s for s in report.steps}
    assert got["write"].status is Status.SKIPPED
    assert got["read"].status is Status.SUPPORTED
    assert got["readdir-large"].detail == "1000 entries"
    assert got["getxattr"].status is Status.SUPPORTED
    assert got["ioctl"].status is Status.UNSUPPORTED
    assert report.failed_steps == [] and report.error_findings == []


@pytest.mark.skipif(not have_pyfuse3(), reason="pyfuse3 passthrough not available")
def test_pyfuse3_passthrough_matches_its_native_run(tmp_path: Path, mountpoint: Path) -> None:
    native = native_statuses(passthrough_argv(tmp_path / "src1", mountpoint), mountpoint, 100)
    report = run(mountpoint, passthrough_argv(tmp_path / "src2", mountpoint), tmp_path, 100)
    assert_matches_native(report, native)
    assert report.error_findings == []
    native_failed = {n for n, st in native.items() if st is Status.FAILED}
    assert {s.name for s in report.failed_steps} <= native_failed
    got = {s.name: s for s in report.steps}
    assert got["link"].status is Status.UNSUPPORTED  # LINK ENOSYS, the kernel says EPERM
    assert got["link"].seen["LINK"].errors == {"ENOSYS": 1}


def test_a_daemon_that_does_not_start_is_an_environment_failure(
    tmp_path: Path, mountpoint: Path
) -> None:
    with pytest.raises((DaemonError, EnvironmentProblem)) as e:
        run(mountpoint, ["/nonexistent/daemon", str(mountpoint)], tmp_path, 10)
    assert e.value.exit_code == 4


def test_an_existing_mount_is_refused(tmp_path: Path, mountpoint: Path) -> None:
    import subprocess

    subprocess.run(["mount", "-t", "tmpfs", "none", str(mountpoint)], check=True)
    try:
        config = ConformConfig(mountpoint=str(mountpoint), daemon=["true", str(mountpoint)])
        with pytest.raises(EnvironmentProblem, match="already a mount point"):
            run_conform(config)
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_the_recorder_can_be_stopped_for_a_moment() -> None:
    import subprocess
    import sys

    from fusetrace.conform.session import stopped

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with stopped(proc):
            assert _state(proc.pid) == "T"
        assert _state(proc.pid) in ("S", "R")
    finally:
        proc.kill()
        proc.wait()
