"""libfuse's own source tree, examples and test suite, at the version installed here.

The source comes from Debian's source package (``apt-get source fuse3=VERSION``), fetched at
test time with a ``deb-src`` entry for bookworm given to apt for that command only (a
temporary sources file and lists directory; nothing is left in /etc/apt or /var/lib/apt), and
is built with meson and ninja. Both are cached under :data:`CACHE` (outside the checkout),
so a machine fetches and builds once. Nothing of it is ever committed.

:func:`traced_tree` makes a copy of the build's test layout in which every example daemon
is a wrapper that starts the real one through ``fusetrace record`` (see :func:`wrapper_main`),
so that libfuse's unmodified test suite runs against traced daemons.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
#: where the source and its build are kept between runs
CACHE = Path(os.environ.get("FUSETRACE_TEST_CACHE", "/var/cache/fusetrace-tests"))
#: Debian's archive, as a deb-src line for apt-get source only
DEB_SRC = "deb-src http://deb.debian.org/debian bookworm main"
#: the example daemons that mount a FUSE filesystem, and so are started through fusetrace
#: (cuse serves a character device; printcap, hello_ll_uds and the clients mount nothing
#: or mount by themselves in ways fusetrace does not take over)
TRACED_EXAMPLES = (
    "hello",
    "hello_ll",
    "invalidate_path",
    "ioctl",
    "notify_inval_entry",
    "notify_inval_inode",
    "notify_store_retrieve",
    "null",
    "passthrough",
    "passthrough_fh",
    "passthrough_hp",
    "passthrough_ll",
    "poll",
)


#: examples that must be handed their socket through fusermount: null checks that its
#: mountpoint argument is a regular file, which /dev/fd/N is not
class Unavailable(Exception):
    """The source cannot be had here (no network, no deb-src, no build tools)."""


def installed_version() -> str:
    """The version of the installed libfuse3 package, e.g. ``3.14.0-4``."""
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", "libfuse3-3"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as e:
        raise Unavailable(f"no libfuse3-3 package: {e}") from None
    if not out:
        raise Unavailable("libfuse3-3 is not installed")
    return out


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _run(cmd: list[str], cwd: Path, log: Path) -> None:
    with open(log, "ab") as out:
        out.write(f"$ {' '.join(cmd)}\n".encode())
        out.flush()
        rc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise Unavailable(f"{' '.join(cmd[:3])}... failed ({rc}):\n" + "\n".join(tail))


def fetch_source(version: str, dest: Path) -> Path:
    """``apt-get source fuse3=VERSION`` into ``dest`` (unpacked: dest/src)."""
    tree = dest / "src"
    if (tree / "meson.build").exists():
        return tree
    if shutil.which("apt-get") is None or shutil.which("dpkg-source") is None:
        raise Unavailable("apt-get source needs apt-get and dpkg-dev")
    dest.mkdir(parents=True, exist_ok=True)
    log = dest / "fetch.log"
    with tempfile.TemporaryDirectory(prefix="fusetrace-apt-") as tmp:
        apt = Path(tmp)
        (apt / "lists" / "partial").mkdir(parents=True)
        (apt / "sources.list").write_text(DEB_SRC + "\n")
        opts = [
            "-o", f"Dir::Etc::sourcelist={apt / 'sources.list'}",
            "-o", "Dir::Etc::sourceparts=-",
            "-o", f"Dir::State::Lists={apt / 'lists'}",
            "-o", "APT::Get::List-Cleanup=0",
            "-o", "APT::Sandbox::User=root",
        ]  # fmt: skip
        _run(["apt-get", *opts, "update"], dest, log)
        _run(["apt-get", *opts, "source", "--download-only", f"fuse3={version}"], dest, log)
    (dsc,) = dest.glob("fuse3_*.dsc")
    shutil.rmtree(tree, ignore_errors=True)
    _run(["dpkg-source", "-x", dsc.name, "src"], dest, log)
    return tree


def build(tree: Path) -> Path:
    """meson + ninja: the library, utils, examples and test helpers; returns the build dir."""
    out = tree / "build"
    done = out / ".fusetrace-built"
    if done.exists():
        return out
    for tool in ("meson", "ninja"):
        if shutil.which(tool) is None:
            raise Unavailable(f"{tool} is not installed")
    log = tree.parent / "build.log"
    shutil.rmtree(out, ignore_errors=True)
    # a udev rules directory given, so that the utils need no udev development files
    # (nothing is installed)
    setup = ["meson", "setup", str(out), "-Dexamples=true", "-Dutils=true", "-Dtests=true"]
    _run([*setup, "-Dudevrulesdir=/nonexistent"], tree, log)
    _run(["ninja", "-C", str(out)], tree, log)
    done.write_text("")
    return out


def libfuse_build() -> Path:
    """The cached build directory of the installed libfuse version (fetched and built on
    first use); raises :class:`Unavailable` when the source cannot be had."""
    version = installed_version()
    base = CACHE / f"fuse3-{version}"
    try:
        with _locked(CACHE / ".lock"):
            return build(fetch_source(version, base))
    except OSError as e:
        raise Unavailable(f"cannot fetch or build libfuse {version}: {e}") from None


# ---- the traced copy of the test layout -------------------------------------------------
WRAPPER = """#!/bin/sh
exec {python} {script} {real} {captures} "$@"
"""


def traced_tree(build_dir: Path, dest: Path, captures: Path) -> Path:
    """A directory laid out like the build (test/, util/, example/) in which every daemon
    of :data:`TRACED_EXAMPLES` is a wrapper starting the real one through fusetrace record
    (captures go to ``captures``); everything else is a symlink into the build."""
    dest.mkdir(parents=True)
    captures.mkdir(parents=True, exist_ok=True)
    for entry in build_dir.iterdir():
        if entry.name not in ("example", "test"):
            (dest / entry.name).symlink_to(entry)
    for sub in ("example", "test"):
        (dest / sub).mkdir()
        for entry in (build_dir / sub).iterdir():
            (dest / sub / entry.name).symlink_to(entry)
    for name in TRACED_EXAMPLES:
        link = dest / "example" / name
        link.unlink()
        link.write_text(
            WRAPPER.format(
                python=sys.executable,
                script=Path(__file__).resolve(),
                real=build_dir / "example" / name,
                captures=captures,
            )
        )
        link.chmod(0o755)
    return dest


def _mountpoint(args: list[str]) -> int | None:
    """The index of the daemon argument naming its mountpoint: the last existing path
    among its non-option arguments (the examples take it last, passthrough_hp after its
    source directory; null mounts on a file)."""
    for i in range(len(args) - 1, -1, -1):
        arg = args[i]
        if arg.startswith("-") or (i > 0 and args[i - 1] == "-o"):
            continue
        if os.path.exists(arg):
            return i
    return None


def wrapper_main(argv: list[str]) -> int:
    """``libfuse.py REAL CAPTURES ARGS...``: run REAL ARGS through ``fusetrace record``, or
    directly when fusetrace cannot take the mount over (the mountpoint is a /dev/fd/N some
    other program opened, as mount.fuse3's drop_privileges does).

    The daemon's output reaches this process's stderr as it comes; fusetrace's own lines
    (``fusetrace: ...``) go to a log beside the capture instead, since libfuse's tests
    judge the daemon's output. Signals are passed on; the exit status is fusetrace's."""
    real, captures, args = argv[0], Path(argv[1]), argv[2:]
    at = _mountpoint(args)
    if at is None or args[at].startswith("/dev/fd/"):
        os.execv(real, [real, *args])
    name = os.path.basename(real)
    fd, capture = tempfile.mkstemp(prefix=f"{name}-", suffix=".pcapng", dir=captures)
    os.close(fd)
    mountpoint = args[at]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if "PYTHONPATH" in env else "")
    # the daemon's own command line: it opens /dev/fuse and mounts as it does natively
    # (the seccomp hand-off), and each of its writes returns the kernel's own answer
    cmd = [sys.executable, "-m", "fusetrace", "record", "-w", capture, "--sync-writes"]
    cmd += [mountpoint, "--", real]
    proc = subprocess.Popen([*cmd, *args], env=env, stderr=subprocess.PIPE)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: proc.send_signal(signum))
    assert proc.stderr is not None
    with open(capture + ".log", "wb") as log:
        for line in proc.stderr:
            if line.startswith(b"fusetrace: "):
                log.write(line)
            else:
                sys.stderr.buffer.write(line)
                sys.stderr.buffer.flush()
    status = proc.wait()
    return 128 - status if status < 0 else status


# ---- running the suite ------------------------------------------------------------------
def run_suite(
    tree: Path, junit: Path, basetemp: Path, selection: list[str], timeout: float
) -> dict[str, str]:
    """libfuse's pytest suite in ``tree`` (the build, or a traced copy of it): test id →
    ``passed``, ``failed`` or ``skipped``. ``selection``: test files or ids under test/."""
    cmd = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=",
        "--basetemp", str(basetemp), "--junitxml", str(junit), "-q",
        *(str(tree / "test" / s) for s in selection),
    ]  # fmt: skip
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    subprocess.run(
        cmd,
        cwd=tree / "test",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )
    outcomes: dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        test_id = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag for child in case}
        if kinds & {"failure", "error"}:
            outcomes[test_id] = "failed"
        elif "skipped" in kinds:
            outcomes[test_id] = "skipped"
        else:
            outcomes[test_id] = "passed"
    return outcomes


if __name__ == "__main__":
    raise SystemExit(wrapper_main(sys.argv[1:]))
