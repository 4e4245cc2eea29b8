"""The runner: the interrupt step's signal handler, and the new steps on a plain directory."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from fusetrace.conform import runner, workload
from fusetrace.conform.steps import BY_NAME, Status


def _only(*names: str) -> tuple[workload.Step, ...]:
    return tuple(s for s in workload.STEPS if s.name in ("statfs", "mkdir", *names))


def test_the_handler_is_installed_for_the_run_and_restored() -> None:
    before = signal.getsignal(workload.INTERRUPT_SIGNAL)
    seen: list[object] = []

    def probe(ctx: workload.Context) -> None:
        seen.append(signal.getsignal(workload.INTERRUPT_SIGNAL))

    steps = (workload.Step(BY_NAME["statfs"], probe),)
    runner.run_workload("/", steps=steps)
    assert callable(seen[0]) and seen[0] is not before
    assert signal.getsignal(workload.INTERRUPT_SIGNAL) == before


def test_without_a_handler_the_interrupt_step_is_skipped(tmp_path: Path) -> None:
    got: list[object] = []

    def run() -> None:  # not the main thread: no handler can be installed
        got.append(runner.run_workload(tmp_path, steps=_only("interrupt"))[1])

    t = threading.Thread(target=run)
    t.start()
    t.join(30)
    results = {r.name: r for r in got[0]}  # type: ignore[attr-defined]
    assert results["interrupt"].status is Status.SKIPPED
    assert "SIGUSR1" in results["interrupt"].detail


def test_new_steps_work_on_a_plain_directory(tmp_path: Path) -> None:
    steps = _only("create", "populate-large", "fsyncdir", "syncfs", "ofd-locks", "interrupt")
    steps += tuple(s for s in workload.STEPS if s.name in ("drop-caches", "cleanup"))
    _, results = runner.run_workload(tmp_path, steps=steps, large_entries=5)
    got = {r.name: (r.status, r.detail) for r in results}
    assert {n: s for n, (s, _) in got.items()} == {n.name: Status.SUPPORTED for n in steps}
    assert got["interrupt"][1] == "not a FUSE mount: no request to interrupt"
    assert got["drop-caches"][1] == "5 names cached, then dropped, 6 times"
    assert not workload.is_fuse(tmp_path)
