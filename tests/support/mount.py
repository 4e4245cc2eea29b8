"""Mounting real daemons in tests, under ``fusetrace record`` or natively, and cleaning up.

Typical use::

    from tests.support.mount import recording

    with recording(["squashfuse_ll", "-f", str(image), "{}"], mnt, tmp / "t.pcapng") as rec:
        assert (mnt / "a.txt").read_text() == "hello\\n"
    assert rec.returncode == 0          # ended by the unmount the helper did
    frames = rec.frames()               # read back with fusetrace.capture
    assert not rec.warnings             # the tracker's warnings on the capture

Every capture is checked by the tracker after a clean end (``check_clean=True``, the
default): an ERROR finding fails the test, WARNING findings land in ``rec.warnings``. A test
that means to record a broken session (a fault, a kill, a hang, Ctrl-C, a misbehaving
daemon) passes ``check_clean=False``. A finding that is a real daemon's or the kernel's own
doing is allowed by rule, for that test only, with the evidence: ``allow={"FT2xx": "why"}``.

On leaving the block the helper unmounts (``umount``), waits for the recorder to finish,
and, if anything is stuck, aborts the connection (/sys/fs/fuse/connections/N/abort),
detaches the mount and kills the processes it started (the recorder and its descendants,
never anything else). It then asserts that nothing is left: no mount, no process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from fusetrace.capture.files import open_capture
from fusetrace.frame import Frame
from fusetrace.proxy import mount as mounts
from fusetrace.tracker import Finding, Severity

ROOT = Path(__file__).resolve().parent.parent.parent


def fusetrace_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """An environment in which ``python -m fusetrace`` runs this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    env.pop("FUSETRACE_DEBUG", None)
    if extra:
        env.update(extra)
    return env


def fusetrace_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "fusetrace", *args]


# ---- processes -------------------------------------------------------------------------
def one_line_error(stderr: str) -> str:
    """The single ``fusetrace: error:`` line a failing command prints (and no traceback)."""
    lines = [ln for ln in stderr.splitlines() if ln.startswith("fusetrace: error:")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def descendants(pid: int) -> dict[int, str]:
    """pid → start time of every living descendant of ``pid`` (read from /proc)."""
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        p = todo.pop()
        for task in _listdir(f"/proc/{p}/task"):
            try:
                with open(f"/proc/{p}/task/{task}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            for kid in kids:
                if kid not in found:
                    st = _start_time(kid)
                    if st is not None:
                        found[kid] = st
                        todo.append(kid)
    return found


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def alive(pids: dict[int, str]) -> list[int]:
    """The pids still running as the same process (same start time) and not zombies."""
    out = []
    for pid, start in pids.items():
        if _start_time(pid) != start:
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.append(pid)
    return out


def kill_all(pids: dict[int, str]) -> None:
    for pid in alive(pids):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# ---- mounts ----------------------------------------------------------------------------
def is_mounted(mountpoint: Path | str) -> bool:
    return mounts.find_mount(os.path.realpath(mountpoint)) is not None


def stat_with_timeout(path: Path | str, timeout: float) -> bool:
    """``os.stat`` in a thread: True if it returned (whatever it said) within ``timeout``."""
    done = threading.Event()

    def probe() -> None:
        with contextlib.suppress(OSError):
            os.stat(path)
        done.set()

    threading.Thread(target=probe, daemon=True).start()
    return done.wait(timeout)


def force_release(mountpoint: Path | str) -> None:
    """Abort the connection and detach the mount, whatever state it is in."""
    entry = mounts.find_mount(os.path.realpath(mountpoint))
    if entry is None:
        return
    mounts.abort_connection(entry.conn)
    with contextlib.suppress(OSError):
        mounts.sys_umount(entry.mountpoint, mounts.MNT_DETACH)


def unmount(mountpoint: Path | str) -> None:
    """A plain umount(2); if busy, detach and abort."""
    entry = mounts.find_mount(os.path.realpath(mountpoint))
    if entry is not None:
        mounts.release(entry.mountpoint, entry.conn)


# ---- recording -------------------------------------------------------------------------
@dataclass
class Recording:
    """A ``fusetrace record`` run started by :func:`recording`."""

    mountpoint: Path
    capture: Path
    proc: subprocess.Popen[bytes]
    log: Path
    conn: int | None = None
    pids: dict[int, str] = field(default_factory=dict)
    returncode: int | None = None
    #: the tracker's WARNING findings on the capture (filled by ``check_clean``)
    warnings: list[Finding] = field(default_factory=list)
    #: the tracker's findings of the rules the test allowed (``allow``), any severity
    allowed: list[Finding] = field(default_factory=list)
    #: every finding of the check, INFO included
    findings: list[Finding] = field(default_factory=list)

    @property
    def stderr(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def daemon_pids(self) -> list[int]:
        """The recorder's living descendants (the daemon, normally)."""
        return list(descendants(self.proc.pid))

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the recorder to end by itself; returns its exit status."""
        self.returncode = self.proc.wait(timeout)
        return self.returncode

    def frames(self) -> list[Frame]:
        with open_capture(str(self.capture)) as reader:
            return list(reader)


def wait_live(
    mountpoint: Path, proc: subprocess.Popen[bytes], timeout: float, log: Path
) -> mounts.MountEntry:
    """Wait until the FUSE mount on ``mountpoint`` exists and has answered INIT."""
    deadline = time.monotonic() + timeout
    real = os.path.realpath(mountpoint)
    entry = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"fusetrace record exited ({proc.returncode}) before the mount was live:\n"
                + log.read_text(errors="replace")
            )
        entry = mounts.find_mount(real)
        if entry is not None:
            break
        time.sleep(0.02)
    else:
        raise AssertionError(f"no mount on {mountpoint} after {timeout} s")
    # stat blocks until INIT is answered
    if not stat_with_timeout(mountpoint, max(0.1, deadline - time.monotonic())):
        raise AssertionError(f"{mountpoint} did not answer INIT within {timeout} s")
    if proc.poll() is not None:
        raise AssertionError(
            f"fusetrace record exited ({proc.returncode}):\n" + log.read_text(errors="replace")
        )
    return entry


@contextlib.contextmanager
def recording(
    daemon: Sequence[str],
    mountpoint: Path | str,
    capture: Path | str,
    *,
    options: Sequence[str] = (),
    record_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    ready_timeout: float = 20.0,
    end_timeout: float = 30.0,
    wait_ready: bool = True,
    stdout: int | IO[bytes] | None = None,
    log: Path | None = None,
    check_clean: bool = True,
    clean_status: int = 0,
    allow: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
) -> Iterator[Recording]:
    """Run ``fusetrace record -w CAPTURE [-o OPT]... [RECORD_ARGS] MOUNTPOINT -- DAEMON...``.

    Yields once the mount is live (unless ``wait_ready`` is false). On exit: unmounts if
    still mounted, waits up to ``end_timeout`` for the recorder, then cleans up by force
    and asserts no mount and no process is left. ``Recording.returncode`` holds the
    recorder's exit status (``None`` if it had to be killed). For ``-w -`` pass
    ``capture="-"``, the pipe or file in ``stdout`` and a ``log`` path for its stderr.

    With ``check_clean`` (the default), once the block ended without an exception the
    recorder must have exited with ``clean_status`` and the capture is checked with
    ``fusetrace check``'s own code: an ERROR finding fails the test (each one is printed),
    WARNING findings go to ``Recording.warnings``. ``allow`` maps rule codes to the reason
    they are expected from this daemon (the daemon's or the kernel's doing, not ours); their
    findings go to ``Recording.allowed`` instead. Pass ``check_clean=False`` for sessions
    broken on purpose. ``stdin`` is written to the recorder's standard input (which its
    daemon shares), then closed; without it, stdin is /dev/null.
    """
    if check_clean and str(capture) == "-":
        raise ValueError("check_clean needs a capture file; pass check_clean=False with -w -")
    mountpoint = Path(mountpoint)
    capture = Path(capture)
    if log is None:
        log = capture.with_name(capture.name + ".stderr")
    cmd = fusetrace_cmd("record", "-w", str(capture))
    for opt in options:
        cmd += ["-o", opt]
    cmd += [*record_args, str(mountpoint), "--", *daemon]
    with open(log, "wb") as logf:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
            stdout=logf if stdout is None else stdout,
            stderr=logf,
            env=fusetrace_env(env),
        )
    if proc.stdin is not None and stdin is not None:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(stdin)
        proc.stdin.close()
    rec = Recording(mountpoint, capture, proc, log)
    rec.pids = {proc.pid: _start_time(proc.pid) or ""}
    try:
        if wait_ready:
            entry = wait_live(mountpoint, proc, ready_timeout, log)
            rec.conn = entry.conn
            rec.pids.update(descendants(proc.pid))
        yield rec
    finally:
        rec.pids.update(descendants(proc.pid))
        _finish(rec, end_timeout)
    if check_clean:
        check_recording(rec, clean_status, allow or {})


def check_recording(rec: Recording, clean_status: int, allow: Mapping[str, str]) -> None:
    """The recorder ended cleanly and the tracker finds no error in what it captured."""
    from fusetrace.cli.check import check_capture

    assert rec.returncode == clean_status, (
        f"fusetrace record exited {rec.returncode}, expected {clean_status}\n{rec.stderr}"
    )
    result = check_capture(str(rec.capture))
    rec.findings = list(result.findings)
    errors = []
    for finding in rec.findings:
        if finding.rule in allow:
            rec.allowed.append(finding)
        elif finding.severity is Severity.ERROR:
            errors.append(finding)
        elif finding.severity is Severity.WARNING:
            rec.warnings.append(finding)
    print(
        f"fusetrace check: {rec.capture.name}: {result.summary.frames} frames, "
        f"{len(errors)} errors, {len(rec.warnings)} warnings, {len(rec.allowed)} allowed, "
        f"{len(rec.findings)} findings in all"
    )
    for finding in rec.warnings + rec.allowed:
        print(f"fusetrace check: {rec.capture.name}: {finding.describe()}")  # shown with -rP
    assert not result.truncated, f"{rec.capture} is cut short"
    if errors:
        shown = "\n".join(f.describe() for f in errors[:50])
        more = f"\n... and {len(errors) - 50} more" if len(errors) > 50 else ""
        raise AssertionError(
            f"fusetrace check finds {len(errors)} error(s) in {rec.capture}:\n{shown}{more}"
        )


def _finish(rec: Recording, end_timeout: float) -> None:
    proc = rec.proc
    if proc.poll() is None and is_mounted(rec.mountpoint):
        with contextlib.suppress(OSError):
            unmount(rec.mountpoint)
    try:
        rec.returncode = proc.wait(end_timeout)
    except subprocess.TimeoutExpired:
        force_release(rec.mountpoint)
        try:
            rec.returncode = proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rec.returncode = None
    force_release(rec.mountpoint)
    # the recorder reaps its daemon; give an orphan a moment to see end of file, then kill
    deadline = time.monotonic() + 10
    while alive(rec.pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = alive(rec.pids)
    kill_all(rec.pids)
    assert not is_mounted(rec.mountpoint), f"{rec.mountpoint} is still mounted"
    assert not left, f"processes left running: {left}\n{rec.stderr}"


# ---- native mounts (no fusetrace), for comparisons and benchmarks ----------------------
@dataclass
class NativeMount:
    mountpoint: Path
    proc: subprocess.Popen[bytes]
    pids: dict[int, str] = field(default_factory=dict)


@contextlib.contextmanager
def native_mount(
    daemon: Sequence[str],
    mountpoint: Path | str,
    *,
    env: dict[str, str] | None = None,
    ready_timeout: float = 20.0,
    stderr: int | None = subprocess.DEVNULL,
) -> Iterator[NativeMount]:
    """Run a daemon that mounts ``mountpoint`` itself (keep it in the foreground: -f)."""
    mountpoint = Path(mountpoint)
    proc = subprocess.Popen(
        list(daemon),
        stdin=subprocess.DEVNULL,
        stdout=stderr,
        stderr=stderr,
        env=None if env is None else {**os.environ, **env},
    )
    nm = NativeMount(mountpoint, proc, {proc.pid: _start_time(proc.pid) or ""})
    try:
        deadline = time.monotonic() + ready_timeout
        while not is_mounted(mountpoint):
            if proc.poll() is not None:
                raise AssertionError(f"{daemon[0]} exited ({proc.returncode}) before mounting")
            if time.monotonic() > deadline:
                raise AssertionError(f"{daemon[0]} did not mount {mountpoint}")
            time.sleep(0.02)
        if not stat_with_timeout(mountpoint, ready_timeout):
            raise AssertionError(f"{mountpoint} did not answer INIT")
        nm.pids.update(descendants(proc.pid))
        yield nm
    finally:
        nm.pids.update(descendants(proc.pid))
        with contextlib.suppress(OSError):
            unmount(mountpoint)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            force_release(mountpoint)
        deadline = time.monotonic() + 10
        while alive(nm.pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        kill_all(nm.pids)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        assert not is_mounted(mountpoint), f"{mountpoint} is still mounted"
