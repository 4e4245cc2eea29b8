"""Shrinking a capture to the frames that show one finding or one replay difference.

:mod:`~fusetrace.reduce.closure` (pure) cuts a capture into units and keeps a set of them
closed under the protocol's dependencies; :mod:`~fusetrace.reduce.ddmin` (pure) is delta
debugging; :mod:`~fusetrace.reduce.oracle` holds the tests (the tracker, a replay) and
:mod:`~fusetrace.reduce.runner` runs the search: in parallel, against a time budget.
"""
