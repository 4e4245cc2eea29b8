"""The rule catalogue, and the kernel behaviour its documentation claims, checked live.

The live test mounts :mod:`misbehave` (a daemon that breaks the protocol on purpose,
talking to /dev/fuse itself), provokes each fault from a caller thread, and asserts three
things per fault: what the daemon's write() returned, what the caller saw, and that the
tracker fed the same frames reports the fault's rule at the faulty frame.
"""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fusetrace.tracker import FAMILIES, RULES, Culprit, Severity, Tracker, select_rules
from fusetrace.tracker.rules import matches
from tests.tracker.misbehave import FAULTS, MKDIR_FAULTS, NOTIFY_FAULTS, Misbehaving


def test_codes_are_stable_and_grouped() -> None:
    for code, rule in RULES.items():
        assert re.fullmatch(r"FT[1-5]\d\d", code)
        assert rule.code == code and rule.family in FAMILIES
        assert re.fullmatch(r"[a-z0-9-]+", rule.name)
        assert len(rule.doc) > 100, code
        assert "protocol.md" in rule.doc or "design.md" in rule.doc, code
    assert len({r.name for r in RULES.values()}) == len(RULES)


def test_select_and_ignore_by_code_or_prefix() -> None:
    assert select_rules() == frozenset(RULES)
    ft1 = select_rules(["FT1"])
    assert ft1 and all(c.startswith("FT1") for c in ft1)
    assert "FT102" not in select_rules(["ft1"], ["FT102"])
    assert select_rules(None, ["FT"]) == frozenset()
    with pytest.raises(ValueError, match="FT9"):
        select_rules(["FT9"])
    assert matches("FT203", ["FT2"]) and not matches("FT203", ["FT3"])


def test_end_of_capture_rules_are_information() -> None:
    for code in ("FT111", "FT213", "FT214"):
        assert RULES[code].severity is Severity.INFO
    assert RULES["FT101"].culprit is Culprit.DAEMON
    assert RULES["FT203"].culprit is Culprit.KERNEL


# ---- live ------------------------------------------------------------------------------
needs_fuse = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/fuse"), reason="needs root and /dev/fuse"
)


def in_thread(fn: Callable[[], object], timeout: float = 10) -> BaseException | None:
    """Run a caller's syscall; returns the exception it raised (None if it succeeded)."""
    out: list[BaseException | None] = [None]

    def run() -> None:
        try:
            fn()
        except BaseException as e:
            out[0] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "the caller is still blocked"
    return out[0]


def caller_errno(e: BaseException | None) -> int:
    assert isinstance(e, OSError), e
    return e.errno or 0


@pytest.mark.mount
@needs_fuse
def test_faults_against_the_real_kernel(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    fs = Misbehaving(mnt)
    fs.mount()
    seen: dict[str, int] = {}
    try:
        for name in FAULTS:
            if name == "forget-me":
                continue
            seen[name] = caller_errno(in_thread(lambda n=name: os.stat(mnt / n)))
        for name in MKDIR_FAULTS:
            seen[name] = caller_errno(in_thread(lambda n=name: os.mkdir(mnt / n)))
        # a looked-up node the kernel then forgets; the daemon answers the FORGET
        assert in_thread(lambda: os.stat(mnt / "forget-me")) is None
        Path("/proc/sys/vm/drop_caches").write_text("2")
        assert fs.forget_seen.wait(10), "no FORGET after drop_caches"
    except BaseException:
        fs.unmount(abort=True)
        raise
    fs.unmount()
    assert not fs.errors, fs.errors
    assert str(mnt) not in Path("/proc/mounts").read_text()

    # evidence: what the kernel did with each faulty write, and what the caller saw
    w = {k: f.write_errno for k, f in fs.faults.items()}
    assert w == {
        "unknown-code": errno.EINVAL,  # W4: unknown notification code
        "short-poll": errno.EINVAL,  # W4: POLL payload must be 8 bytes
        "never-looked-up": errno.ENOENT,  # INVAL_INODE: inode not cached
        "unknown-unique": errno.ENOENT,  # W6: no such request
        "duplicate": errno.ENOENT,  # W6: already answered
        "positive-error": errno.EINVAL,  # W5: error out of range
        "error-with-body": errno.EINVAL,  # W8: error reply must be header-only
        "header-only-entry": errno.EINVAL,  # W8: entry_out missing
        "bad-out-len": errno.EINVAL,  # W3: out.len != bytes written
        "root-id": 0,  # accepted by the transport, rejected above it
        "wrong-type": 0,
        "forget-me": errno.ENOENT,  # W6: FORGET is never in the processing table
    }
    assert seen == {
        "unknown-unique": errno.ENOENT,  # the proper reply that followed
        "duplicate": errno.ENOENT,
        "positive-error": errno.ENOENT,  # the request stayed pending for the real reply
        "error-with-body": errno.EIO,  # the request completed with EIO
        "header-only-entry": errno.EIO,
        "bad-out-len": errno.ENOENT,
        "root-id": errno.EIO,
        "wrong-type": errno.EIO,
    }

    # the tracker, fed the same frames, names each fault at its frame
    t = Tracker(strict=True)
    found = [f for r in fs.records for f in t.feed(r)] + t.finish()
    at = {(f.rule, f.frame) for f in found if f.frame is not None}
    want = {(fault.rule, fault.frame) for fault in fs.faults.values()}
    assert want == at, sorted(at ^ want)
    assert len(want) == len(FAULTS) + len(MKDIR_FAULTS) + len(NOTIFY_FAULTS)


ROOT = Path(__file__).resolve().parents[2]


def _wait_mounted(mnt: Path, proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if f" {mnt} " in Path("/proc/mounts").read_text():
            return
        if proc.poll() is not None:
            raise AssertionError(f"fusetrace record exited early ({proc.returncode})")
        time.sleep(0.05)
    raise AssertionError("the mount did not appear")


def _abort(mnt: Path) -> None:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        parts = line.split()
        if parts[4] == str(mnt):
            conn = parts[2].split(":")[1]
            try:
                Path(f"/sys/fs/fuse/connections/{conn}/abort").write_text("1")
            except OSError:
                pass
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.mount
@needs_fuse
def test_faults_recorded_then_checked(tmp_path: Path) -> None:
    """The same daemon behind `fusetrace record`; `fusetrace check` finds each fault at the
    frame holding the exact bytes the daemon wrote."""
    from fusetrace.capture.files import open_capture
    from fusetrace.cli.check import check_capture

    mnt = tmp_path / "mnt"
    mnt.mkdir()
    cap, report = tmp_path / "faults.pcapng", tmp_path / "faults.json"
    # bad-out-len is left out: the recorder reads on to out.len to reassemble spliced replies
    daemon = [sys.executable, str(Path(__file__).with_name("misbehave.py")), "{}",
              str(report), "bad-out-len"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fusetrace",
            "record",
            "--handoff",
            "fd",
            "-w",
            str(cap),
            str(mnt),
            "--",
            *daemon,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_mounted(mnt, proc)
        for name in FAULTS:
            if name not in ("forget-me", "bad-out-len"):
                in_thread(lambda n=name: os.stat(mnt / n))
        for name in MKDIR_FAULTS:
            in_thread(lambda n=name: os.mkdir(mnt / n))
        assert in_thread(lambda: os.stat(mnt / "forget-me")) is None
        Path("/proc/sys/vm/drop_caches").write_text("2")
        time.sleep(0.5)
        subprocess.run(["umount", str(mnt)], check=True, timeout=20)
        proc.wait(timeout=20)
    except BaseException:
        _abort(mnt)
        proc.kill()
        proc.wait(timeout=10)
        raise
    assert str(mnt) not in Path("/proc/mounts").read_text()
    doc = json.loads(report.read_text())
    assert doc["errors"] == []
    faults = doc["faults"]
    assert "bad-out-len" not in faults and len(faults) == 11

    result = check_capture(str(cap))
    with open_capture(str(cap)) as reader:
        written = {r.data: r.index for r in reader if r.direction.name == "OUTBOUND"}
    at = {(f.rule, f.frame) for f in result.findings}
    for key, fault in faults.items():
        frame = written[bytes.fromhex(fault["data"])]
        assert (fault["rule"], frame) in at, (key, fault["rule"], frame, sorted(at))
    assert {f.rule for f in result.findings if f.frame is not None} == {
        fault["rule"] for fault in faults.values()
    }


# ---- each code raised in exactly one place ----------------------------------------------
def _emits_by_function() -> dict[str, tuple[set[str], set[str]]]:
    """qualname -> (codes its @checks declares, codes its _emit calls name), over the
    tracker's modules, read from the source."""
    import ast
    import importlib
    import pkgutil

    import fusetrace.tracker as pkg

    out: dict[str, tuple[set[str], set[str]]] = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        mod = importlib.import_module(f"fusetrace.tracker.{info.name}")
        tree = ast.parse(Path(mod.__file__ or "").read_text())

        def visit(node: ast.AST, prefix: str, mod_name: str = mod.__name__) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.ClassDef):
                    visit(child, f"{prefix}{child.name}.")
                elif isinstance(child, ast.FunctionDef):
                    declared = {
                        a.value
                        for d in child.decorator_list
                        if isinstance(d, ast.Call) and getattr(d.func, "id", "") == "checks"
                        for a in d.args
                        if isinstance(a, ast.Constant)
                    }
                    emitted = set()
                    for c in ast.walk(child):
                        if (
                            isinstance(c, ast.Call)
                            and getattr(c.func, "attr", "") == "_emit"
                            and c.args
                        ):
                            first = c.args[0]
                            assert isinstance(first, ast.Constant), (
                                f"{child.name}: _emit with a computed code"
                            )
                            emitted.add(first.value)
                    if declared or emitted:
                        out[f"{mod_name}.{prefix}{child.name}"] = (declared, emitted)

        visit(tree, "")
    return out


def test_every_code_is_raised_in_exactly_one_place() -> None:
    from fusetrace.tracker.rules import RAISED_BY

    functions = _emits_by_function()
    where: dict[str, list[str]] = {}
    for name, (declared, emitted) in functions.items():
        assert declared == emitted, f"{name} declares {declared} but emits {emitted}"
        for code in emitted:
            where.setdefault(code, []).append(name)
    assert set(where) == set(RULES), sorted(set(RULES) ^ set(where))
    for code, names in where.items():
        assert len(names) == 1, f"{code} is raised in {names}"
        assert RAISED_BY[code] == names[0]


def test_explain_names_where_a_rule_is_checked() -> None:
    from click.testing import CliRunner

    from fusetrace.cli.check import explain
    from fusetrace.tracker.rules import RAISED_BY

    out = CliRunner().invoke(explain, ["FT310"], catch_exceptions=False).output
    assert f"checked in: {RAISED_BY['FT310']}\n" in out
    assert RAISED_BY["FT310"].startswith("fusetrace.tracker.")


def test_checks_refuses_a_second_place_or_an_unknown_code() -> None:
    from fusetrace.tracker.rules import checks

    with pytest.raises(ValueError, match="raised by"):
        checks("FT310")(lambda: None)
    with pytest.raises(ValueError, match="not in the catalogue"):
        checks("FT999")(lambda: None)
