"""One conformance run: mount through ``fusetrace record``, run the workload, unmount, judge.

The recorder runs as a child process (``python -m fusetrace record``) in its own process
group, so the mount, the daemon and the capture are handled exactly as ``fusetrace record``
handles them, and so Ctrl-C reaches this process only: it then unmounts, which ends the
recorder and the daemon, before the interruption is reported. A step that hangs is abandoned:
the FUSE connection is aborted through /sys/fs/fuse/connections/N/abort, which fails the stuck
system call, and the mountpoint is still unmounted.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fusetrace
from fusetrace.capture.files import open_capture
from fusetrace.conform.report import ConformReport, analyze_capture, build_report
from fusetrace.conform.runner import run_workload
from fusetrace.conform.steps import DEFAULT_TIMEOUT, LARGE_DIR_ENTRIES, StepResult
from fusetrace.errors import DaemonError, EnvironmentProblem, FusetraceError
from fusetrace.frame import Frame
from fusetrace.proxy import mount as mounts
from fusetrace.tracker import Finding, Tracker

#: how long the filesystem may take to appear after the recorder starts, seconds
MOUNT_WAIT = 20.0
#: how long the recorder may take to finish after the unmount, seconds
RECORDER_WAIT = 30.0


@dataclass
class ConformConfig:
    mountpoint: str
    daemon: list[str]
    #: keep the capture here (``-w``); None: a temporary file, removed afterwards
    capture: str | None = None
    options: list[str] = field(default_factory=list)
    baseline: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    snaplen: int | None = None
    large_entries: int = LARGE_DIR_ENTRIES


# ---- mounts ---------------------------------------------------------------------------------


def _real(path: str) -> str:
    """The absolute path of ``path`` with only its parent resolved: touching the mount
    itself could block on a daemon that does not answer."""
    path = os.path.abspath(path)
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def find_mount(path: str) -> mounts.MountEntry | None:
    """The FUSE mount on top of ``path``, if any."""
    return mounts.find_mount(_real(path))


def abort_connection(mountpoint: str) -> bool:
    """Abort the FUSE connection mounted on ``mountpoint``; False if there is none."""
    mount = find_mount(mountpoint)
    return mount is not None and mounts.abort_connection(mount.conn)


def unmount(mountpoint: str) -> None:
    """Unmount; if still busy after a few tries, detach it and abort the connection."""
    target = _real(mountpoint)
    for _ in range(10):
        mount = find_mount(mountpoint)
        if mount is None:
            return
        try:
            mounts.sys_umount(target)
            return
        except OSError as e:
            if e.errno != errno.EBUSY:
                break
        time.sleep(0.2)
    mount = find_mount(mountpoint)
    if mount is not None:
        mounts.release(target, mount.conn)


# ---- the recorder ---------------------------------------------------------------------------


def _fusetrace_env() -> dict[str, str]:
    """Environment for a child ``python -m fusetrace``: the same fusetrace as this one."""
    env = dict(os.environ)
    top = str(Path(fusetrace.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (top, env.get("PYTHONPATH")) if p)
    return env


def recorder_argv(config: ConformConfig, capture: str) -> list[str]:
    argv = [sys.executable, "-m", "fusetrace", "record", "-w", capture]
    for opt in config.options:
        argv += ["-o", opt]
    if config.snaplen is not None:
        argv += ["--snaplen", str(config.snaplen)]
    return [*argv, config.mountpoint, "--", *config.daemon]


@contextlib.contextmanager
def recording(config: ConformConfig, capture: str) -> Iterator[subprocess.Popen[bytes]]:
    """Run the recorder until the filesystem is mounted; unmount and reap it on the way out."""
    proc = subprocess.Popen(
        recorder_argv(config, capture),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        env=_fusetrace_env(),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + MOUNT_WAIT
        while True:
            mount = find_mount(config.mountpoint)
            if mount is not None:
                break
            status = proc.poll()
            if status is not None:
                raise DaemonError(
                    f"fusetrace record ended with exit status {status} before "
                    f"{config.mountpoint} was mounted (see its messages above)"
                )
            if time.monotonic() > deadline:
                raise DaemonError(f"{config.mountpoint} was not mounted within {MOUNT_WAIT:g} s")
            time.sleep(0.05)
        yield proc
    finally:
        _finish_recorder(proc, config.mountpoint)


def _finish_recorder(proc: subprocess.Popen[bytes], mountpoint: str) -> None:
    with _no_sigint():
        unmount(mountpoint)
        try:
            proc.wait(RECORDER_WAIT)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGINT)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        unmount(mountpoint)


#: the longest the recorder stays stopped, seconds (should the kernel need it meanwhile)
STOP_AT_MOST = 2.0


@contextlib.contextmanager
def stopped(proc: subprocess.Popen[bytes]) -> Iterator[None]:
    """The recorder stopped (SIGSTOP) for the time of the block, and at most STOP_AT_MOST
    seconds: nothing reads /dev/fuse meanwhile, so what the kernel queues waits there."""
    if proc.poll() is not None:
        yield
        return
    os.kill(proc.pid, signal.SIGSTOP)
    timer = threading.Timer(STOP_AT_MOST, _resume, (proc,))
    timer.start()
    try:
        deadline = time.monotonic() + STOP_AT_MOST / 2
        while _state(proc.pid) not in ("T", "") and time.monotonic() < deadline:
            time.sleep(0.0005)  # SIGSTOP takes effect when the process is next scheduled
        yield
    finally:
        timer.cancel()
        _resume(proc)


def _state(pid: int) -> str:
    """The one-letter state of a process (``T`` stopped), "" if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def _resume(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGCONT)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)  # the group this run created for the recorder


@contextlib.contextmanager
def _no_sigint() -> Iterator[None]:
    """Let cleanup finish before a second Ctrl-C is acted upon."""
    try:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


# ---- checking -------------------------------------------------------------------------------


def _mount_option_map(options: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for group in options:
        for opt in group.split(","):
            if opt:
                key, eq, value = opt.partition("=")
                out[key] = value if eq else None
    return out


def check_capture(
    path: str, results: list[StepResult], options: list[str] | None = None
) -> tuple[Any, list[Finding], str]:
    """Decode and check a capture: (analysis, findings, kernel release)."""
    with open_capture(path) as reader:
        records: list[Frame] = list(reader)
        info = reader.info
    tracker = Tracker(
        byte_order=info.byte_order, mount_options=_mount_option_map(options or []) or None
    )
    findings = tracker.feed_all(records)
    findings.extend(tracker.finish())
    analysis = analyze_capture(records, info.byte_order, info.meta)
    return analysis, findings, info.os


def replay_baseline(baseline: str, config: ConformConfig) -> dict[str, Any]:
    """Replay ``baseline`` against the daemon command (``fusetrace replay --format json``)."""
    real = _real(config.mountpoint)
    daemon = [
        "{}" if a == config.mountpoint or (a.startswith("/") and _real(a) == real) else a
        for a in config.daemon
    ]
    daemon[0] = config.daemon[0]
    argv = [
        sys.executable, "-m", "fusetrace", "replay", "--format", "json", baseline, "--", *daemon,
    ]  # fmt: skip
    proc = subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, env=_fusetrace_env(), timeout=600
    )
    out: dict[str, Any] = {"capture": baseline, "exit": proc.returncode, "differences": []}
    try:
        data = json.loads(proc.stdout or b"null")
    except json.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        out["differences"] = data.get("differences") or data.get("diffs") or []
        out["findings"] = data.get("findings") or []
        out["summary"] = data.get("summary")
        out["notes"] = data.get("notes") or []
    if proc.returncode not in (0, 1) or data is None:
        tail = (proc.stderr or b"").decode(errors="replace").strip().splitlines()
        out["error"] = tail[-1] if tail else f"exit status {proc.returncode}"
    return out


# ---- the run --------------------------------------------------------------------------------


def preflight(config: ConformConfig) -> None:
    if not os.path.isdir(config.mountpoint):
        raise EnvironmentProblem(f"{config.mountpoint}: not a directory")
    # a FUSE mount is looked up in the mount table (stat on a hung one would block); any
    # other kind can be asked about directly
    if find_mount(config.mountpoint) is not None or os.path.ismount(config.mountpoint):
        raise EnvironmentProblem(
            f"{config.mountpoint} is already a mount point", hint="unmount it or pick another"
        )
    if os.geteuid() != 0:
        raise EnvironmentProblem("fusetrace conform mounts the filesystem: run it as root")
    if not os.path.exists("/dev/fuse"):
        raise EnvironmentProblem("/dev/fuse does not exist", hint="modprobe fuse")
    if config.baseline is not None and not os.path.isfile(config.baseline):
        raise EnvironmentProblem(f"{config.baseline}: no such baseline capture")


def run_conform(
    config: ConformConfig, progress: Callable[[StepResult], None] | None = None
) -> ConformReport:
    """The whole run; raises FusetraceError (exit 4) when the daemon cannot be mounted."""
    preflight(config)
    with tempfile.TemporaryDirectory(prefix="fusetrace-conform.") as tmp:
        capture = config.capture or os.path.join(tmp, "conform.pcapng")
        with recording(config, capture) as proc:
            ctx, results = run_workload(
                config.mountpoint,
                timeout=config.timeout,
                on_hang=lambda: abort_connection(config.mountpoint),
                progress=progress,
                large_entries=config.large_entries,
                pause_reader=lambda: stopped(proc),
            )
        notes = []
        if proc.returncode not in (0, None):
            notes.append(f"fusetrace record ended with exit status {proc.returncode}")
        try:
            analysis, findings, kernel = check_capture(capture, results, config.options)
        except FusetraceError as e:
            raise DaemonError(f"the capture of this run cannot be read: {e}") from None
        baseline = replay_baseline(config.baseline, config) if config.baseline else None
    return build_report(
        results,
        analysis,
        findings,
        daemon=list(config.daemon),
        mountpoint=config.mountpoint,
        read_only=ctx.read_only,
        read_only_reason=ctx.read_only_reason + (f"; found {ctx.found}" if ctx.found else ""),
        capture=config.capture,
        kernel=kernel or platform.release(),
        baseline=baseline,
        notes=notes,
    )
