"""``fusetrace reduce`` end to end: a misbehaving daemon's capture reduced per rule, and a
squashfuse_ll recording reduced to the READ that differs on a changed image."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fusetrace.capture.files import host_writer, open_capture
from fusetrace.tracker import Tracker
from tests.support.mount import fusetrace_cmd, fusetrace_env, recording
from tests.tracker.misbehave import Misbehaving
from tests.tracker.test_rules import in_thread, needs_fuse


def fusetrace(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        fusetrace_cmd(*args), capture_output=True, text=True, env=fusetrace_env(),
        timeout=timeout,
    )  # fmt: skip


@pytest.fixture(scope="module")
def misbehaving_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real session with a daemon that breaks rules on purpose, plus clean traffic
    around the faults (other names looked up, the root stat'ed) for reduce to drop."""
    root = tmp_path_factory.mktemp("misbehave")
    mnt = root / "mnt"
    mnt.mkdir()
    fs = Misbehaving(mnt)
    fs.mount()
    try:
        for k in range(6):
            in_thread(lambda k=k: os.stat(mnt / f"plain-{k}"))
            in_thread(lambda: os.stat(mnt))
        for name in ("duplicate", "positive-error", "plain-a", "bad-out-len", "plain-b"):
            in_thread(lambda n=name: os.stat(mnt / n))
    except BaseException:
        fs.unmount(abort=True)
        raise
    fs.unmount()
    assert not fs.errors, fs.errors
    capture = root / "misbehave.pcapng"
    with open(capture, "wb") as f:
        w = host_writer(f, {"daemon": ["misbehave.py"], "mountpoint": str(mnt)})
        for r in fs.records:
            w.write(r.direction, r.t_ns, r.data)
    return capture


@pytest.mark.mount
@needs_fuse
@pytest.mark.parametrize("rule", ["FT102", "FT305", "FT302"])
def test_rule_kept_in_ten_frames(misbehaving_capture: Path, tmp_path: Path, rule: str) -> None:
    small = tmp_path / "small.pcapng"
    r = fusetrace("reduce", str(misbehaving_capture), "-w", str(small), "--rule", rule,
                  "--format", "json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    with open_capture(str(small)) as reader:
        records = list(reader)
    assert len(records) == doc["frames_out"] <= 10
    with open_capture(str(misbehaving_capture)) as reader:
        assert len(list(reader)) > 3 * len(records)
    t = Tracker()
    found = [f for rec in records for f in t.feed(rec)] + t.finish()
    assert rule in {f.rule for f in found}, [f.describe() for f in found]
    assert doc["summary"].startswith(f"{len(records)} frames: INIT")
