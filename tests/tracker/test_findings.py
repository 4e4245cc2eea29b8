"""Findings as data: one line, a dict, ordered severities."""

from __future__ import annotations

from fusetrace.tracker.findings import Culprit, Finding, Severity


def test_a_finding_describes_itself() -> None:
    f = Finding("FT102", Severity.ERROR, Culprit.DAEMON, 4, "second reply", 6, "GETATTR", (3,))
    assert f.describe().startswith("FT102 error [daemon] frame 5 GETATTR unique=6")
    assert "second reply" in f.describe()
    d = f.to_dict()
    # frames as Wireshark numbers them, from 1: index 4 is frame 5, index 3 frame 4
    assert d["frame"] == 5 and d["related"] == [4]
    assert d["rule"] == "FT102" and d["culprit"] == "daemon"
    end = Finding("FT213", Severity.INFO, Culprit.CAPTURE, None, "held")
    assert "end of capture" in end.describe()


def test_severities_are_ordered() -> None:
    assert Severity.INFO < Severity.WARNING < Severity.ERROR
    assert Severity.parse("warning") is Severity.WARNING
