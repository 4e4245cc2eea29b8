"""The protocol reference (docs/protocol.md) as ``fusetrace explain`` quotes it.

The text has one source, docs/protocol.md. A built package carries a copy made at build time
(setup.py puts it in fusetrace/data/protocol.md); a checkout reads docs/protocol.md itself.

Rule docs cite it as ``protocol.md §5.3 (W6), §10 (13)``: :func:`citations` finds those, and
:func:`quote` returns the cited text. A qualifier narrows the quote to one row of a table
(``W6``) or one item of a numbered list (``13``) when the section has it; otherwise the whole
section is quoted, its subsections included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from fusetrace.errors import EnvironmentProblem

#: where a built package keeps its copy, inside the package
PACKAGED = ("data", "protocol.md")
#: where a checkout keeps the source, relative to the directory holding the package
CHECKOUT = ("docs", "protocol.md")

_CITE = re.compile(r"§(\d+(?:\.\d+)*)(?:\s*\(([^)]*)\))?")
_HEADING = re.compile(r"^(#{1,6})\s+(\d+(?:\.\d+)*)\.?\s+(.*)$")


@dataclass(frozen=True)
class Citation:
    section: str
    #: "W6", "13", "ENOSYS list"... or "" for the whole section
    qualifier: str = ""

    def __str__(self) -> str:
        return f"§{self.section}" + (f" ({self.qualifier})" if self.qualifier else "")


@cache
def protocol_text() -> str:
    """The text of protocol.md, from the installed package or from the checkout."""
    packaged = resources.files("fusetrace").joinpath(*PACKAGED)
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    source = Path(__file__).resolve().parent.parent.joinpath(*CHECKOUT)
    if source.is_file():
        return source.read_text(encoding="utf-8")
    raise EnvironmentProblem(
        "the protocol reference is missing from this installation", hint="reinstall fusetrace"
    )


def citations(doc: str) -> list[Citation]:
    """The protocol.md sections a rule's doc cites, in order, each once."""
    at = doc.find("protocol.md")
    if at < 0:
        return []
    out: list[Citation] = []
    for m in _CITE.finditer(doc, at):
        cite = Citation(m.group(1), (m.group(2) or "").strip())
        if cite not in out:
            out.append(cite)
    return out


def section(text: str, number: str) -> tuple[str, list[str]] | None:
    """(heading title, body lines) of section ``number``, or None if there is none."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _HEADING.match(line)
        if m and m.group(2) == number:
            level = len(m.group(1))
            body: list[str] = []
            for nxt in lines[i + 1 :]:
                h = _HEADING.match(nxt) or re.match(r"^(#{1,6})\s", nxt)
                if h and len(h.group(1)) <= level:
                    break
                body.append(nxt)
            while body and not body[-1].strip():
                body.pop()
            while body and not body[0].strip():
                body.pop(0)
            return m.group(3).strip(), body
    return None


def _narrow(body: list[str], qualifier: str) -> list[str] | None:
    """The table row or numbered item ``qualifier`` names, with its continuation lines."""
    key = qualifier.split(",")[0].strip()
    if not key:
        return None
    row = re.compile(rf"^\|\s*{re.escape(key)}\s*\|")
    item = re.compile(rf"^{re.escape(key)}\.\s")
    for i, line in enumerate(body):
        if row.match(line):
            start = i
            while start > 0 and body[start - 1].startswith("|"):
                start -= 1
            head = body[start : min(start + 2, i)]  # the table's header and rule line
            return [*head, line]
        if item.match(line):
            out = [line]
            for nxt in body[i + 1 :]:
                if not nxt.startswith((" ", "\t")) or not nxt.strip():
                    break
                out.append(nxt)
            return out
    return None


def quote(cite: Citation, text: str | None = None) -> tuple[str, list[str]] | None:
    """(title, lines) of the cited text; None when protocol.md has no such section."""
    found = section(protocol_text() if text is None else text, cite.section)
    if found is None:
        return None
    title, body = found
    if cite.qualifier:
        narrowed = _narrow(body, cite.qualifier)
        if narrowed is not None:
            return title, narrowed
    return title, body
