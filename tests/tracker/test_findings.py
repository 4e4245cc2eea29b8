"""Findings as data: one line, a dict, ordered severities."""

from __future__ import annotations

from fusetrace.tracker.findings import Culprit, Finding, Severity


def test_a_finding_describes_itself() -> None:
    f = Finding("FT102", Severity.ERROR, Culprit.DAEMON, 4, "second reply", 6, "GETATTR", (3,))
    assert f.describe().startswith("FT102 error [daemon]")
    assert "GETATTR" in f.describe() and "second reply" in f.describe()
    d = f.to_dict()
    assert d["rule"] == "FT102" and d["related"] == [3] and d["culprit"] == "daemon"
    end = Finding("FT213", Severity.INFO, Culprit.CAPTURE, None, "held")
    assert "end of capture" in end.describe()


def test_severities_are_ordered() -> None:
    assert Severity.INFO < Severity.WARNING < Severity.ERROR
    assert Severity.parse("warning") is Severity.WARNING
