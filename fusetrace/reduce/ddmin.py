"""Delta debugging (Zeller and Hildebrandt's ddmin), testing candidates a batch at a time.

Pure: the test is a function from a batch of candidates to a batch of verdicts, so the
caller decides how they run (in parallel, cached, against a clock). ``stop`` ends the search
early; the result is then the smallest passing configuration found so far, which is always
one the test passed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

Tester = Callable[[list[list[T]]], list[bool]]


def _split(items: list[T], n: int) -> list[list[T]]:
    size, extra = divmod(len(items), n)
    out: list[list[T]] = []
    start = 0
    for k in range(n):
        stop = start + size + (1 if k < extra else 0)
        out.append(items[start:stop])
        start = stop
    return [c for c in out if c]


def ddmin(
    items: Sequence[T],
    test: Tester[T],
    *,
    stop: Callable[[], bool] = lambda: False,
    on_step: Callable[[list[T]], None] | None = None,
) -> list[T]:
    """A 1-minimal sublist of ``items`` that still passes ``test`` (``items`` must pass).

    Each round tests all n chunks in one batch, then all n complements in one batch, and
    keeps the first that passes, in order.
    """
    current = list(items)
    n = 2
    while len(current) >= 2 and not stop():
        n = min(n, len(current))
        chunks = _split(current, n)
        verdicts = test(chunks)
        found = next((c for c, ok in zip(chunks, verdicts, strict=True) if ok), None)
        if found is not None:
            current, n = found, 2
            if on_step is not None:
                on_step(current)
            continue
        if stop():
            break
        if n > 2:
            complements = [
                [x for j, c in enumerate(chunks) if j != k for x in c] for k in range(len(chunks))
            ]
            verdicts = test(complements)
            found = next((c for c, ok in zip(complements, verdicts, strict=True) if ok), None)
            if found is not None:
                current, n = found, max(n - 1, 2)
                if on_step is not None:
                    on_step(current)
                continue
        if n >= len(current):
            break
        n = min(2 * n, len(current))
    if len(current) == 1 and not stop() and test([[]])[0]:
        current = []
        if on_step is not None:
            on_step(current)
    return current
