"""The reference capture library under captures/: every capture decodes, passes the tracker
without an error finding, and still decodes to the summary pinned next to it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from fusetrace.capture.files import open_capture
from fusetrace.conform.library import build_reference_tree, summarize
from fusetrace.conform.report import analyze_capture
from fusetrace.conform.steps import CATALOGUE as STEPS
from fusetrace.conform.steps import LARGE_DIR_ENTRIES, data_pattern
from fusetrace.tracker import Severity, Tracker
from tests.conform.helpers import build_image, have

CAPTURES = Path(__file__).resolve().parents[2] / "captures"
FILES = sorted(CAPTURES.glob("*.pcapng"))


def test_the_library_has_the_reference_captures() -> None:
    names = {p.stem for p in FILES}
    assert {"squashfuse_ll", "fuse-overlayfs", "pyfuse3-passthrough"} <= names
    for path in FILES:
        assert path.stat().st_size < 1_000_000, path.name
        assert (CAPTURES / f"{path.stem}.summary.json").exists(), path.name
    assert (CAPTURES / "README.md").exists()


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_capture_decodes_checks_clean_and_matches_its_golden_summary(path: Path) -> None:
    with open_capture(str(path)) as reader:
        records = list(reader)
        info = reader.info
    assert not info.truncated
    tracker = Tracker(byte_order=info.byte_order)
    findings = tracker.feed_all(records) + tracker.finish()
    errors = [
        f"{f.rule} frame {f.frame}: {f.message}" for f in findings if f.severity >= Severity.ERROR
    ]
    assert errors == []
    analysis = analyze_capture(records, info.byte_order)
    assert analysis.undecodable == 0
    summary = analysis.summary()
    summary["error_findings"] = []
    golden = json.loads((CAPTURES / f"{path.stem}.summary.json").read_text())
    assert summary == golden
    # the steps that ran left their markers, in workload order
    order = [s.name for s in STEPS]
    positions = [order.index(name) for name in summary["steps"]]
    assert positions == sorted(positions) and summary["steps"][0] == "statfs"


def test_summarize_counts_requests_errors_and_unanswered() -> None:
    got = summarize([("LOOKUP", 0), ("LOOKUP", 2), ("FORGET", None), ("READ", 0)], ["a"])
    assert got == {
        "requests": 4,
        "opcodes": {"FORGET": 1, "LOOKUP": 2, "READ": 1},
        "errors": {"LOOKUP ENOENT": 1},
        "unanswered": {"FORGET": 1},
        "steps": ["a"],
    }


def test_reference_tree_is_fixed(tmp_path: Path) -> None:
    root = build_reference_tree(tmp_path / "t")
    work = root / "reference"
    assert (work / "data.bin").read_bytes() == data_pattern()
    assert len(list((work / "large").iterdir())) == LARGE_DIR_ENTRIES
    assert (work / "link").readlink() == Path("data.bin")
    assert {p.stat(follow_symlinks=False).st_mtime_ns for p in work.rglob("*")} == {
        1_600_000_000_987_654_321
    }


@pytest.mark.skipif(not have("mksquashfs"), reason="squashfs-tools not installed")
def test_reference_image_is_byte_for_byte_reproducible(tmp_path: Path) -> None:
    a = build_image(tmp_path / "a").read_bytes()
    b = build_image(tmp_path / "b").read_bytes()
    assert a == b


def test_captures_are_readable_by_tshark() -> None:
    if not have("capinfos"):
        pytest.skip("capinfos not installed")
    for path in FILES:
        out = subprocess.run(["capinfos", "-c", str(path)], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
