"""Runs the conformance workload: each step in a thread with a time limit, verdicts from
the system calls, read-only detection and discovery of a read-only tree.

A read-only filesystem is detected (``ST_RDONLY`` from statvfs, or EROFS/ENOSYS/EOPNOTSUPP
from the first write step); the runner then skips every step that writes and runs the
others on the tree that is there, picking a regular file, the largest directory, a symlink.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from fusetrace.conform.steps import (
    CONNECTION_GONE,
    DEFAULT_TIMEOUT,
    LARGE_DIR_ENTRIES,
    MARKER_PREFIX,
    READ_ONLY_ERRNOS,
    UNSUPPORTED_ERRNOS,
    WORKDIR,
    Status,
    StepResult,
    errno_name,
    marker_name,
)
from fusetrace.conform.workload import (
    INTERRUPT_SIGNAL,
    STEPS,
    Context,
    Step,
    StepFailed,
    StepSkipped,
    StepUnsupported,
)

# ---- read-only discovery --------------------------------------------------------------------


def _walk(root: Path, limit: int = 20000, depth: int = 6) -> Iterator[tuple[Path, str]]:
    """(path, kind) under root, depth first in name order, bounded; kind from readdir alone
    ("dir", "file", "link", "other"), so the walk makes no request per entry."""
    seen = 0
    stack: list[tuple[Path, int]] = [(root, 0)]
    while stack and seen < limit:
        path, level = stack.pop()
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        subdirs = []
        for entry in entries:
            if path == root and entry.name.startswith(MARKER_PREFIX):
                continue
            try:
                if entry.is_symlink():
                    kind = "link"
                elif entry.is_dir(follow_symlinks=False):
                    kind = "dir"
                elif entry.is_file(follow_symlinks=False):
                    kind = "file"
                else:
                    kind = "other"
            except OSError:
                continue
            seen += 1
            child = path / entry.name
            yield child, kind
            if kind == "dir" and level + 1 < depth:
                subdirs.append((child, level + 1))
            if seen >= limit:
                return
        stack.extend(reversed(subdirs))


def discover(ctx: Context) -> str:
    """Find what read-only steps work on: a file with data, the largest directory, a link."""
    sizes: dict[Path, int] = {ctx.root: 0}
    for path, kind in _walk(ctx.root):
        sizes[path.parent] = sizes.get(path.parent, 0) + 1
        if kind == "file" and "file" not in ctx.targets:
            try:
                if os.lstat(path).st_size > 0:
                    ctx.targets["file"] = path
            except OSError:
                pass
        elif kind == "link" and "symlink" not in ctx.targets:
            ctx.targets["symlink"] = path
        elif kind == "dir":
            sizes.setdefault(path, 0)
    ranked = sorted(sizes.items(), key=lambda kv: (-kv[1], str(kv[0])))
    ctx.targets["large_dir"] = ranked[0][0]
    small = [p for p, n in sorted(sizes.items(), key=lambda kv: (kv[1], str(kv[0]))) if n > 0]
    ctx.targets["small_dir"] = small[0] if small else ctx.root
    found = ", ".join(
        f"{role} {os.path.relpath(path, ctx.root)}" for role, path in sorted(ctx.targets.items())
    )
    return found or "nothing"


@contextlib.contextmanager
def _interrupt_handler() -> Iterator[None]:
    """A handler that does nothing for the interrupt step's signal, while the workload runs
    (only the main thread may install one; elsewhere the interrupt step is skipped)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(INTERRUPT_SIGNAL, lambda signum, frame: None)
    try:
        yield
    finally:
        signal.signal(INTERRUPT_SIGNAL, old)


# ---- running --------------------------------------------------------------------------------


def classify(
    exc: BaseException, unsupported: frozenset[int] = frozenset()
) -> tuple[Status, int | None, str]:
    """The verdict for a step that raised."""
    if isinstance(exc, StepSkipped):
        return Status.SKIPPED, None, str(exc)
    if isinstance(exc, StepUnsupported):
        return Status.UNSUPPORTED, None, str(exc)
    if isinstance(exc, StepFailed):
        return Status.FAILED, None, str(exc)
    if isinstance(exc, OSError) and exc.errno is not None:
        text = f"{errno_name(exc.errno)}: {exc.strerror}"
        if exc.errno in UNSUPPORTED_ERRNOS or exc.errno in unsupported:
            return Status.UNSUPPORTED, exc.errno, text
        return Status.FAILED, exc.errno, text
    return Status.FAILED, None, f"{type(exc).__name__}: {exc}"


def _call_with_timeout(
    fn: Callable[[], str | None], timeout: float
) -> tuple[bool, str | None, BaseException | None]:
    """Run fn in a thread; (finished, result, exception). A hung thread is left behind."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as e:  # reported as the step outcome
            box["error"] = e

    thread = threading.Thread(target=target, name="fusetrace-conform-step", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return False, None, None
    err = box.get("error")
    return True, box.get("result"), err if isinstance(err, BaseException) else None  # type: ignore[return-value]


def _mark(ctx: Context, name: str) -> None:
    """Look up a name that does not exist: in a capture, a LOOKUP that starts a section."""
    if not name.startswith(MARKER_PREFIX):
        name = MARKER_PREFIX + name
    try:
        os.lstat(ctx.root / name)
    except OSError:
        pass


def _prepare(ctx: Context) -> None:
    """Tell a read-only filesystem; remove what an earlier run left behind."""
    try:
        if os.statvfs(ctx.root).f_flag & os.ST_RDONLY:
            ctx.read_only, ctx.read_only_reason = True, "statvfs reports ST_RDONLY"
    except OSError:
        pass
    if not ctx.read_only and os.path.lexists(ctx.work):
        # left over from an earlier run: remove it, which also tells a read-only tree
        _mark(ctx, "setup")
        try:
            shutil.rmtree(ctx.work)
        except OSError as e:
            if e.errno in READ_ONLY_ERRNOS:
                ctx.read_only = True
                ctx.read_only_reason = f"removing {WORKDIR}: {errno_name(e.errno)}"


def run_workload(
    root: str | os.PathLike[str],
    *,
    steps: tuple[Step, ...] = STEPS,
    timeout: float = DEFAULT_TIMEOUT,
    on_hang: Callable[[], object] | None = None,
    progress: Callable[[StepResult], None] | None = None,
    large_entries: int = LARGE_DIR_ENTRIES,
    pause_reader: Callable[[], contextlib.AbstractContextManager[object]] | None = None,
) -> tuple[Context, list[StepResult]]:
    """Run every step against ``root``; returns the context and one result per step.

    ``on_hang`` is called when a step exceeds ``timeout`` (for a FUSE mount: abort the
    connection, which makes the stuck system call fail); the remaining steps are skipped.
    ``pause_reader``, when the caller has one, stops whatever reads /dev/fuse for the time of
    its ``with`` block (see :attr:`Context.pause_reader`).
    """
    ctx = Context(Path(root), large_entries=large_entries, pause_reader=pause_reader)
    with _interrupt_handler():
        return _run(ctx, steps, timeout, on_hang, progress)


def _run(
    ctx: Context,
    steps: tuple[Step, ...],
    timeout: float,
    on_hang: Callable[[], object] | None,
    progress: Callable[[StepResult], None] | None,
) -> tuple[Context, list[StepResult]]:
    results: list[StepResult] = []
    hung: str | None = None
    finished, _, _ = _call_with_timeout(functools.partial(_prepare, ctx), timeout)
    if not finished:
        hung = "the first access hung and the connection was aborted"
        if on_hang is not None:
            on_hang()
    first_write = True
    for index, step in enumerate(steps):
        result = StepResult(index, step.name, step.ops, Status.SKIPPED)
        if hung is not None and not results and not finished:
            # the first access (statvfs) hung before any step: the run fails with the first step
            result.status = Status.FAILED
            result.detail = f"the filesystem did not answer its first request in {timeout:g} s"
        elif hung is not None:
            result.detail = f"not run: {hung}"
        elif step.writes and ctx.read_only:
            result.detail = f"read-only filesystem ({ctx.read_only_reason})"
        else:
            if ctx.read_only and not ctx.targets:
                _mark(ctx, "discover")
                ctx.found = discover(ctx)
            _mark(ctx, marker_name(index, step.name))
            finished, note, exc = _call_with_timeout(functools.partial(step.run, ctx), timeout)
            if not finished:
                hung = f"step {step.name} hung and the connection was aborted"
                result.status, result.detail = Status.FAILED, f"timed out after {timeout:g} s"
                if on_hang is not None:
                    on_hang()
            elif exc is None:
                result.status, result.detail = Status.SUPPORTED, note or ""
            else:
                result.status, result.errno, result.detail = classify(exc, step.unsupported)
                if isinstance(exc, OSError) and exc.errno in CONNECTION_GONE:
                    hung = f"the connection ended in step {step.name} ({errno_name(exc.errno)})"
                if (
                    step.writes
                    and first_write
                    and isinstance(exc, OSError)
                    and exc.errno in READ_ONLY_ERRNOS
                ):
                    ctx.read_only = True
                    ctx.read_only_reason = f"{step.name}: {result.error}"
                    result.status = Status.SKIPPED
                    result.detail = f"read-only filesystem ({result.detail})"
            if step.writes:
                first_write = False
        results.append(result)
        if progress is not None:
            progress(result)
    return ctx, results
