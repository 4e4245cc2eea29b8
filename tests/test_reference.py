"""The protocol reference as explain quotes it (fusetrace/reference.py)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from fusetrace.cli.check import explain
from fusetrace.reference import Citation, citations, protocol_text, quote, section
from fusetrace.tracker import RULES

ROOT = Path(__file__).resolve().parent.parent
SOURCE = (ROOT / "docs" / "protocol.md").read_text()


def test_a_checkout_reads_the_single_source() -> None:
    assert protocol_text() == SOURCE


def test_every_cited_section_exists() -> None:
    missing = [
        f"{code} {cite}"
        for code, rule in RULES.items()
        for cite in citations(rule.doc)
        if quote(cite) is None
    ]
    assert not missing
    assert sum(bool(citations(r.doc)) for r in RULES.values()) >= len(RULES) - 2


def test_citations_keep_their_qualifiers_in_order() -> None:
    doc = "Kernel text. docs/protocol.md §5.3 (W6), §10 (13), §5.3 (W6), §7.1."
    assert citations(doc) == [Citation("5.3", "W6"), Citation("10", "13"), Citation("7.1")]
    assert citations("no reference here §5.3") == []


def test_a_table_row_is_quoted_with_the_table_header() -> None:
    title, lines = quote(Citation("5.3", "W6"), SOURCE) or ("", [])
    assert title.startswith("Validation of a D→K write")
    assert lines[0].startswith("| step |") and lines[-1].startswith("| W6 |")
    assert len(lines) == 3


def test_a_numbered_item_is_quoted_with_its_continuation_lines() -> None:
    title, lines = quote(Citation("10", "9"), SOURCE) or ("", [])
    assert title.startswith("Checker rule catalogue")
    assert lines[0].startswith("9. V: any D→K message before the INIT reply")
    assert len(lines) > 1 and all(ln.startswith(" ") for ln in lines[1:])


def test_a_section_stops_at_the_next_heading_of_its_level() -> None:
    text = "## 1. One\na\n### 1.1 Sub\nb\n## 2. Two\nc\n"
    assert section(text, "1") == ("One", ["a", "### 1.1 Sub", "b"])
    assert section(text, "1.1") == ("Sub", ["b"])
    assert section(text, "3") is None


def test_explain_prints_the_doc_and_the_quoted_text() -> None:
    out = CliRunner().invoke(explain, ["FT101"])
    assert out.exit_code == 0, out.output
    w6 = next(ln for ln in SOURCE.splitlines() if ln.startswith("| W6 |"))
    assert "protocol.md §5.3 (W6): Validation of a D→K write" in out.output
    assert f"  {w6}" in out.output


def test_explain_of_an_unknown_code_is_a_usage_error() -> None:
    out = CliRunner().invoke(explain, ["FT999"])
    assert out.exit_code == 2
