"""`fusetrace report`: the page opens in headless Chromium with no console error and no
network request, and every plot has data."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.mount import ROOT, fusetrace_cmd, fusetrace_env

pytest.importorskip("plotly")

CHROMIUM = "/usr/bin/chromium"

#: each plot's id, number of traces, and the points of its emptiest trace
PLOTS_JS = """
Array.from(document.querySelectorAll('.js-plotly-plot')).map(e => ({
  id: e.id,
  traces: e.data.length,
  fewest: Math.min(...e.data.map(t => (t.y || []).length)),
  nonzero: e.data.some(t => (t.y || []).some(v => v > 0)),
}))
"""


def report(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        fusetrace_cmd("report", *args),
        capture_output=True,
        text=True,
        env=fusetrace_env(),
        check=False,
    )


@pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason="needs chromium")
def test_report_renders_offline_in_chromium(tmp_path: Path) -> None:
    from tests.support.chromium import open_page

    page = tmp_path / "report.html"
    r = report(str(ROOT / "captures" / "fuse-overlayfs.pcapng"), "--output", str(page))
    assert r.returncode == 0, r.stderr
    result = open_page(page, PLOTS_JS)
    (tmp_path / "report.png").write_bytes(result.screenshot)
    assert result.screenshot.startswith(b"\x89PNG")
    assert not result.console_errors, result.console_errors
    assert not result.exceptions, result.exceptions
    assert result.requests == [page.resolve().as_uri()]
    plots = {p["id"]: p for p in result.value}
    assert set(plots) == {"plot-latency", "plot-in-flight", "plot-throughput", "plot-errors"}
    for p in plots.values():
        assert p["traces"] > 0 and p["fewest"] > 0 and p["nonzero"], p


def test_findings_and_bad_input(tmp_path: Path) -> None:
    page = tmp_path / "r.html"
    r = report(str(ROOT / "captures" / "squashfuse_ll.pcapng"), "--output", str(page))
    assert r.returncode == 0, r.stderr
    text = page.read_text()
    assert "Checker findings" in text and "squashfuse_ll" in text
    bad = tmp_path / "bad.pcapng"
    bad.write_bytes(b"nothing")
    r = report(str(bad), "--output", str(page))
    assert r.returncode == 3 and r.stderr.startswith("fusetrace: error:")
    assert report(str(bad)).returncode == 2
