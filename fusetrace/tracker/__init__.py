"""The state tracker: a pure, sans-IO checker of FUSE connections (design.md §5).

``Tracker(...).feed(record) -> list[Finding]`` judges frames one by one, ``finish()`` reports
what is left at the end; ``RULES`` is the catalogue ``fusetrace explain`` prints.
"""

from fusetrace.tracker.findings import Culprit, Finding, Severity
from fusetrace.tracker.machine import SESSION_TRANSITIONS, SessionState, Summary, Tracker
from fusetrace.tracker.rules import FAMILIES, RULES, Rule, select_rules

__all__ = [
    "FAMILIES",
    "RULES",
    "SESSION_TRANSITIONS",
    "Culprit",
    "Finding",
    "Rule",
    "SessionState",
    "Severity",
    "Summary",
    "Tracker",
    "select_rules",
]
