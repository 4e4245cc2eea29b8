"""The check reporters render one result object: text (plain and rich), JSON, JUnit XML."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET

from rich.console import Console

from fusetrace.report.findings import (
    REPORTERS,
    CaptureResult,
    CheckResult,
    JsonReporter,
    JunitReporter,
    TextReporter,
)
from fusetrace.tracker import Culprit, Finding, Severity, Summary


def result(fail_on: Severity = Severity.ERROR) -> CheckResult:
    findings = [
        Finding("FT102", Severity.ERROR, Culprit.DAEMON, 7, "second reply", 4, None, (5,)),
        Finding("FT314", Severity.WARNING, Culprit.DAEMON, 9, "short read", 6, "READ", (8,)),
        Finding("FT213", Severity.INFO, Culprit.CAPTURE, None, "2 node ids held"),
    ]
    s = Summary(frames=10, requests=5, replies=5)
    return CheckResult(
        [CaptureResult("a.pcapng", findings, s), CaptureResult("b.pcapng", [], Summary(frames=2))],
        fail_on,
    )


def render(reporter: object, r: CheckResult) -> str:
    buf = io.StringIO()
    reporter.render(r, buf)  # type: ignore[attr-defined]
    return buf.getvalue()


def test_plain_text_lines() -> None:
    # frames as Wireshark numbers them (the 0-based index + 1), ids in decimal
    out = render(TextReporter(), result()).splitlines()
    assert out[0] == "a.pcapng:8: FT102 error [daemon] unique=4: second reply"
    assert out[1] == "a.pcapng:10: FT314 warning [daemon] READ unique=6: short read"
    assert out[2] == "a.pcapng:end: FT213 info [capture]: 2 node ids held"
    assert out[3].startswith(
        "a.pcapng: 10 frames, 5 requests, 5 replies, 0 notifications: 1 error, 1 warning, 1 info"
    )
    assert "b.pcapng: 2 frames" in out[4] and "no findings" in out[4]


def test_rich_text_is_a_table() -> None:
    buf = io.StringIO()
    console = Console(file=buf, width=160, color_system=None)
    TextReporter(console).render(result(), io.StringIO())
    text = buf.getvalue()
    row = next(line for line in text.splitlines() if "FT102" in line)
    cells = [c.strip() for c in row.split("│")[1:-1]]
    assert cells[:2] == ["8", "FT102"] and cells[5] == "4"
    assert "rule" in text and "message" in text
    assert "second reply" in text


def test_failed_follows_fail_on() -> None:
    assert result().failed
    r = result()
    r.captures[0].findings = r.captures[0].findings[1:]
    assert not r.failed
    r.fail_on = Severity.WARNING
    assert r.failed


def test_json_document() -> None:
    doc = json.loads(render(JsonReporter(), result()))
    a, b = doc["captures"]
    assert (a["file"], a["frames"], b["findings"]) == ("a.pcapng", 10, [])
    assert a["findings"][0] == {
        "rule": "FT102",
        "severity": "error",
        "culprit": "daemon",
        "frame": 8,
        "unique": 4,
        "opcode": None,
        "message": "second reply",
        "related": [6],
        "title": "second reply to the same request",
    }
    assert doc["summary"]["findings"] == {"error": 1, "warning": 1, "info": 1}
    assert doc["summary"]["frames"] == 12


def test_junit_document() -> None:
    root = ET.fromstring(render(JunitReporter(), result(Severity.WARNING)))
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["a.pcapng", "b.pcapng"]
    cases = {c.get("name"): c for c in suites[0].findall("testcase")}
    failure = cases["FT1xx ids and reply pairing"].find("failure")
    assert failure is not None
    assert failure.text == "FT102 error [daemon] frame 8 unique=4: second reply"
    assert cases["FT3xx framing and sizes"].find("failure") is not None
    life = cases["FT2xx lifecycle: lookup counts and file handles"]
    assert life.find("failure") is None and "FT213" in (life.findtext("system-out") or "")
    assert root.get("failures") == "2" and root.get("tests") == "10"
    assert all(c.find("failure") is None for c in suites[1].findall("testcase"))


def test_reporter_names() -> None:
    assert set(REPORTERS) == {"text", "json", "junit"}
