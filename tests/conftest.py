"""Shared fixtures. Helpers live in tests/support (importable as ``tests.support``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

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
