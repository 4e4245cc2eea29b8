"""The FT1 family (ids and reply pairing) lives in fusetrace/tracker/ids.py, and nowhere else."""

from __future__ import annotations

from fusetrace.tracker import RULES
from fusetrace.tracker.rules import RAISED_BY


def test_the_family_is_raised_here_and_only_here() -> None:
    here = {c for c, where in RAISED_BY.items() if where.startswith("fusetrace.tracker.ids.")}
    assert here == {c for c in RULES if c.startswith("FT1")}
