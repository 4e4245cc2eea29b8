"""The state tracker: a pure, sans-IO checker of FUSE connections (design.md §5).

It is fed :class:`~fusetrace.frame.Frame` objects, the unit every part of fusetrace passes
around, in the order frames crossed /dev/fuse, and decodes the few body fields its rules need
itself (struct readers derived from the protocol schemas), so the same object works over a
capture, live inside the recorder and over a replay::

    tracker = Tracker(byte_order="little")          # header_only=True: cheaper, fewer rules
    for record in reader:                            # or each frame as the proxy forwards it
        for finding in tracker.feed(record):         # -> list[Finding], often empty
            print(finding.describe())
    for finding in tracker.finish():                 # end: unanswered requests, held state
        ...
    tracker.summary                                  # counts for the report

``feed`` never raises on bad input (a bug in a rule is counted in
``summary.internal_errors``, unless ``strict=True``); memory is bounded by the connection's
outstanding state, not by the capture's length. ``RULES`` is the catalogue ``fusetrace
explain`` prints.
"""

from fusetrace.tracker.findings import Culprit, Finding, Severity
from fusetrace.tracker.machine import Tracker
from fusetrace.tracker.rules import FAMILIES, RULES, Rule, select_rules
from fusetrace.tracker.state import SESSION_TRANSITIONS, SessionState, Summary

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
