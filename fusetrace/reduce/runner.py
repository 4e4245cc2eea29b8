"""Running a reduction: find the target, test candidates in parallel, stop on time.

The search, in order: the closure of the unit that shows the finding or difference alone;
if that does not reproduce it, ddmin over groups of units (one group per node id), then over
single units, always keeping the target unit and every dependency. Every candidate is closed
before it is tested, and results are cached by the closed set, so dropping a unit some kept
unit needs costs no test.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field

from fusetrace.frame import Frame
from fusetrace.protocol.abi import Opcode
from fusetrace.reduce.closure import Graph, build
from fusetrace.reduce.ddmin import ddmin

Oracle = Callable[[Sequence[Frame]], bool]
_DESTROY = int(Opcode.DESTROY)
_TIMES = "\u00d7"  # the multiplication sign of "FORGET ×2"  # noqa: RUF003


#: the graph and oracle of a worker process, set once when the pool starts (forked: the
#: capture is not copied per task, only the unit ids of each candidate are)
_WORKER: tuple[Graph, Oracle] | None = None


def _start_worker(graph: Graph, oracle: Oracle) -> None:
    global _WORKER
    _WORKER = (graph, oracle)


def _test_in_worker(kept: list[int]) -> bool:
    assert _WORKER is not None
    graph, oracle = _WORKER
    return oracle(graph.records_for(kept)[0])


@dataclass
class Progress:
    """What the search has done so far, for a progress display."""

    tests: int = 0
    cached: int = 0
    frames: int = 0
    phase: str = ""
    elapsed: float = 0.0


@dataclass
class Reduction:
    """The result: the records to write and how they came about."""

    records: list[Frame]
    #: original index of each kept record
    origin: list[int]
    kept: frozenset[int]
    graph: Graph
    target: int | None
    tests: int = 0
    elapsed: float = 0.0
    #: the time budget ran out before the search ended
    timed_out: bool = False
    phases: list[str] = field(default_factory=list)

    def reasons(self, what: str) -> dict[int, str]:
        """Why each kept frame is there, by original frame index."""
        g = self.graph
        why: dict[int, str] = {}
        for u in self.kept:
            unit = g.units[u]
            if u == self.target:
                text = what
            elif u in g.fixed:
                text = "the session's start" if unit.opcode != _DESTROY else "the session's end"
            else:
                users = sorted(v for v in self.kept if u in g.units[v].deps and v not in g.fixed)
                closes = sorted(v for v in self.kept if u in g.units[v].companions)
                if users:
                    v = g.units[users[0]]
                    text = f"{v.label} (frame {v.first + 1}) uses the id it gives"
                elif closes:
                    v = g.units[closes[0]]
                    text = f"the kernel sends it after {v.label} (frame {v.first + 1})"
                else:
                    text = f"without it the result no longer shows {what}"
            for i in unit.frames:
                why[i] = text if i == unit.first else "the reply"
        for i in self.origin:
            why.setdefault(i, "forgets the lookups kept, where the recording forgot them")
        return why

    def summary(self, what: str) -> str:
        """``14 frames: INIT, LOOKUP a → LOOKUP b → OPEN → READ (the difference), ...``."""
        g = self.graph
        parts: list[str] = []
        fixed = sorted(u for u in self.kept if u in g.fixed)
        listed: set[int] = set(fixed)
        parts.extend(g.units[u].label for u in fixed if g.units[u].opcode != _DESTROY)
        if self.target is not None:
            chain = [u for u in g.chain(self.target) if u not in g.fixed]
            words = [g.units[u].label for u in chain]
            words[-1] += f" ({what})"
            parts.append(" → ".join(words))
            listed.update(chain)
        rest: Counter[str] = Counter()
        for u in sorted(self.kept - listed):
            rest[g.units[u].label] += 1
        for rec_i, rec in zip(self.origin, self.records, strict=True):
            if rec_i not in g.unit_of:
                rest[Opcode(int.from_bytes(rec.data[4:8], g.byte_order)).name] += 1  # type: ignore[arg-type]
        parts.extend(k if n == 1 else f"{k} {_TIMES}{n}" for k, n in rest.items())
        parts.extend(g.units[u].label for u in fixed if g.units[u].opcode == _DESTROY)
        return f"{len(self.records)} frames: " + ", ".join(parts)


class Search:
    """One reduction of ``records`` for ``oracle``."""

    def __init__(
        self,
        records: list[Frame],
        oracle: Oracle,
        *,
        byte_order: str = "little",
        jobs: int = 1,
        max_time: float | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        graph: Graph | None = None,
    ) -> None:
        self.graph = graph or build(records, byte_order)
        self.oracle = oracle
        self.jobs = max(1, jobs)
        self.started = time.monotonic()
        self.deadline = None if max_time is None else self.started + max_time
        self.progress = Progress()
        self.on_progress = on_progress
        self._cache: dict[frozenset[int], bool] = {}
        self._pool: Executor | None = None

    # ---- plumbing -------------------------------------------------------------------------
    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _report(self) -> None:
        self.progress.elapsed = time.monotonic() - self.started
        if self.on_progress is not None:
            self.on_progress(self.progress)

    def test_sets(self, sets: list[frozenset[int]]) -> list[bool]:
        """Verdicts for closed sets; new ones run in parallel, known ones from the cache."""
        todo = [s for s in dict.fromkeys(sets) if s not in self._cache]
        self.progress.cached += len(sets) - len(todo)
        if todo:
            if self.jobs > 1 and len(todo) > 1:
                if self._pool is None:
                    self._pool = ProcessPoolExecutor(
                        max_workers=self.jobs,
                        mp_context=multiprocessing.get_context("fork"),
                        initializer=_start_worker,
                        initargs=(self.graph, self.oracle),
                    )
                verdicts = list(self._pool.map(_test_in_worker, [sorted(s) for s in todo]))
            else:
                verdicts = [self.oracle(self.graph.records_for(sorted(s))[0]) for s in todo]
            for s, v in zip(todo, verdicts, strict=True):
                self._cache[s] = v
            self.progress.tests += len(todo)
            self._report()
        return [self._cache[s] for s in sets]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    # ---- the search -----------------------------------------------------------------------
    def run(self, target_frame: int | None) -> Reduction:
        g = self.graph
        target = g.unit_of.get(target_frame) if target_frame is not None else None
        core: set[int] = set() if target is None else {target}
        # a finding about a FORGET itself: that FORGET stays as recorded
        pinned = target_frame is not None and target is None and g.pin_forget(target_frame)
        phases: list[str] = []
        try:
            best = g.close(core)
            self._set(best, "closure of the target")
            ok = self.test_sets([best])[0] if core or pinned else False
            if ok:
                phases.append("closure")
            else:
                # every unit up to the target (all of them for an end-of-capture finding)
                limit = len(g.records)
                if target is not None:
                    limit = g.units[target].frames[-1]
                elif pinned and target_frame is not None:
                    limit = target_frame
                cands = [
                    u.id
                    for u in g.units
                    if u.id not in best and u.first <= limit and u.id not in g.fixed
                ]
                whole = g.close(core | set(cands))
                if not self.test_sets([whole])[0]:
                    cands = [u.id for u in g.units if u.id not in best and u.id not in g.fixed]
                    whole = g.close(core | set(cands))
                    if not self.test_sets([whole])[0]:
                        raise LookupError("the capture itself does not pass the test")
                best = whole
                self._set(best, "by node")
                groups: dict[int, list[int]] = {}
                for u in cands:
                    groups.setdefault(g.units[u].node, []).append(u)

                def test_groups(batch: list[list[list[int]]]) -> list[bool]:
                    sets = [g.close(core | {u for grp in c for u in grp}) for c in batch]
                    return self.test_sets(sets)

                kept_groups = ddmin(
                    list(groups.values()),
                    test_groups,
                    stop=self.out_of_time,
                    on_step=lambda c: self._set(g.close(core | {u for x in c for u in x}), None),
                )
                cands = [u for grp in kept_groups for u in grp]
                phases.append("ddmin by node")
                best = g.close(core | set(cands))
                if not self.out_of_time():
                    self._set(best, "by request")

                    def test_units(batch: list[list[int]]) -> list[bool]:
                        return self.test_sets([g.close(core | set(c)) for c in batch])

                    cands = ddmin(
                        cands,
                        test_units,
                        stop=self.out_of_time,
                        on_step=lambda c: self._set(g.close(core | set(c)), None),
                    )
                    phases.append("ddmin by request")
                    best = g.close(core | set(cands))
        finally:
            self.close()
        records, origin = g.records_for(sorted(best))
        return Reduction(
            records,
            origin,
            best,
            g,
            target,
            tests=self.progress.tests,
            elapsed=time.monotonic() - self.started,
            timed_out=self.out_of_time(),
            phases=phases,
        )

    def _set(self, kept: frozenset[int], phase: str | None) -> None:
        self.progress.frames = len(self.graph.frames(kept))
        if phase is not None:
            self.progress.phase = phase
        self._report()
