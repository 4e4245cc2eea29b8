"""Shared fixtures. Helpers live in tests/support (importable as ``tests.support``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from fusetrace.proxy import mount as mounts

ROOT = Path(__file__).resolve().parent.parent
# this checkout first, so that `tests.support` and `fusetrace` are the ones under test
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CAN_MOUNT = os.geteuid() == 0 and os.path.exists("/dev/fuse")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason="needs root and /dev/fuse")
    for item in items:
        if "mount" in item.keywords and not CAN_MOUNT:
            item.add_marker(skip)


@pytest.fixture
def mountpoint(tmp_path: Path) -> Path:
    """An empty directory to mount on."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    return mnt


def _fuse_mounts_under(base: str) -> list[str]:
    """FUSE mounts whose mount point lies under ``base``."""
    return [
        f"{m.mountpoint} ({m.fstype})"
        for m in mounts.fuse_mounts()
        if m.mountpoint.startswith(base)
    ]


def _children(pid: int) -> list[str]:
    """Live (non-zombie) processes whose parent is ``pid``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name_end = stat.rindex(")")
        state, ppid = stat[name_end + 2 :].split()[:2]
        if int(ppid) == pid and state != "Z":
            out.append(f"{entry} {stat[stat.index('(') + 1 : name_end]}")
    return out


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No test may leave a mount or a process behind, even a failing one: the run fails
    if any FUSE mount under pytest's temporary tree, or any child of this process, is
    still there at the end."""
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None or getattr(session.config, "workerinput", None) is not None:
        return
    base = str(factory.getbasetemp())
    leftovers = _fuse_mounts_under(base) + [f"process {p}" for p in _children(os.getpid())]
    if leftovers:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("left behind by the tests: " + ", ".join(leftovers), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
