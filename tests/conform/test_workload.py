"""The workload on plain directories and on a native FUSE mount (no fusetrace): the reference
for which steps each filesystem supports."""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

import pytest

from fusetrace.conform import runner
from fusetrace.conform import steps as catalogue
from fusetrace.conform import workload as w
from fusetrace.conform.runner import run_workload
from fusetrace.conform.steps import Status, StepSpec
from fusetrace.conform.workload import STEPS
from fusetrace.protocol.abi import Opcode
from tests.conform.helpers import have, needs_fuse, overlay_argv
from tests.support.mount import native_mount


def statuses(results: list[catalogue.StepResult]) -> dict[str, str]:
    return {r.name: r.status.value for r in results}


def test_every_catalogue_step_has_its_system_calls() -> None:
    assert [s.spec for s in STEPS] == list(catalogue.CATALOGUE)
    assert set(w.ACTIONS) == {s.name for s in catalogue.CATALOGUE}


@pytest.mark.parametrize("base", ["/dev/shm", "/tmp"], ids=["tmpfs", "disk"])
def test_every_step_is_supported_on_a_local_filesystem(base: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory(dir=base) as d:
        ctx, results = run_workload(d, large_entries=1000)
        assert not ctx.read_only
        got = statuses(results)
        assert got == {s.name: "supported" for s in STEPS}
        assert next(r for r in results if r.name == "readdir-large").detail == "1000 entries"
        assert next(r for r in results if r.name == "read").detail == f"{catalogue.DATA_SIZE} bytes"
        # the workload cleans up after itself, markers leave nothing behind
        assert sorted(Path(d).iterdir()) == []


def test_the_workload_is_deterministic(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    ra = [(r.name, r.status, r.detail) for r in run_workload(a, large_entries=10)[1]]
    rb = [(r.name, r.status, r.detail) for r in run_workload(b, large_entries=10)[1]]
    assert ra == rb


def test_a_leftover_work_directory_is_removed_first(tmp_path: Path) -> None:
    (tmp_path / catalogue.WORKDIR / "old").mkdir(parents=True)
    _, results = run_workload(tmp_path, large_entries=5)
    assert all(r.status is Status.SUPPORTED for r in results)


@needs_fuse
def test_read_only_bind_mount_skips_every_write_step(tmp_path: Path) -> None:
    src, mnt = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    mnt.mkdir()
    (src / "d").mkdir()
    (src / "d" / "file").write_bytes(b"x" * 5000)
    (src / "link").symlink_to("d/file")
    subprocess.run(["mount", "--bind", "-o", "ro", str(src), str(mnt)], check=True)
    try:
        ctx, results = run_workload(mnt)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    assert ctx.read_only and "ST_RDONLY" in ctx.read_only_reason
    got = statuses(results)
    for step in STEPS:
        if step.writes:
            assert got[step.name] == "skipped", step.name
    assert got["read"] == got["readlink"] == got["readdir-large"] == "supported"
    assert ctx.targets["file"] == mnt / "d" / "file"


def test_a_hanging_step_is_abandoned_and_the_rest_skipped(tmp_path: Path) -> None:
    import threading

    release = threading.Event()
    hung: list[bool] = []

    def stuck(ctx: w.Context) -> None:
        release.wait(10)

    steps = (
        STEPS[0],
        w.Step(StepSpec("stuck", (Opcode.GETATTR,)), stuck),
        w.Step(StepSpec("after", (Opcode.GETATTR,)), lambda ctx: None),
    )
    _, results = run_workload(tmp_path, steps=steps, timeout=0.2, on_hang=lambda: hung.append(True))
    release.set()
    assert [r.status for r in results] == [Status.SUPPORTED, Status.FAILED, Status.SKIPPED]
    assert "timed out" in results[1].detail
    assert hung == [True]


def test_classify_tells_unsupported_from_failed() -> None:
    assert runner.classify(OSError(errno.ENOSYS, "x"))[0] is Status.UNSUPPORTED
    assert runner.classify(OSError(errno.EOPNOTSUPP, "x"))[:2] == (Status.UNSUPPORTED, 95)
    assert runner.classify(OSError(errno.ENOTTY, "x"))[0] is Status.UNSUPPORTED
    assert runner.classify(OSError(errno.EIO, "x"))[0] is Status.FAILED
    assert runner.classify(w.StepFailed("wrong data")) == (Status.FAILED, None, "wrong data")
    assert catalogue.errno_name(95) == "EOPNOTSUPP"


@needs_fuse
@pytest.mark.skipif(not have("fuse-overlayfs"), reason="fuse-overlayfs not installed")
def test_native_fuse_overlayfs(tmp_path: Path, mountpoint: Path) -> None:
    mnt = mountpoint
    with native_mount(overlay_argv(tmp_path, mnt), mnt):
        ctx, results = run_workload(mnt, large_entries=50, timeout=20)
    got = statuses(results)
    assert not ctx.read_only
    assert got["tmpfile"] == "not supported"  # fuse-overlayfs has no TMPFILE
    assert [n for n, s in got.items() if s == "failed"] == []
    assert got["rename-exchange"] == got["copy-file-range"] == got["setxattr"] == "supported"
