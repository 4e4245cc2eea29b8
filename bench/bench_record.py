"""Benchmark ``fusetrace record`` against the same daemon mounted natively.

Daemon: fuse-overlayfs (multithreaded, writable) over a fresh upper directory per run;
squashfuse_ll (a fast read-only daemon, where the proxy's own cost shows) for workload (s).
Configurations, each mounted fresh:

* native          fuse-overlayfs mounts itself
* native -d       the same with its debug output on (written to /dev/null)
* native strace   the same under ``strace -f -e trace=read,write,writev -o /dev/null``
* recorded        behind ``fusetrace record -w FILE`` (full frames)
* recorded snap   behind ``fusetrace record -w FILE --snaplen 256``
* recorded null   behind ``fusetrace record -w /dev/null``: the forwarding and the capture
                  thread, without the disk
* recorded py, recorded py null
                  the same two with FUSETRACE_FORWARD=python: the Python forwarding loops
                  instead of the compiled core
* recorded frames, recorded frames null
                  the compiled core handing over frames only (FUSETRACE_CORE_BLOCKS=0), not
                  the packet blocks it encodes itself for small frames
* recorded take, recorded take null
                  the compiled core handing over every frame to the capture thread, which
                  writes them (FUSETRACE_CORE_WRITE=0), instead of writing the plain ones
                  itself
* recorded thread null
                  behind ``fusetrace record -w /dev/null`` with the capture thread writing
                  every frame (FUSETRACE_CORE_INLINE=0), large ones too, which the loops
                  otherwise write to a pipe or device themselves as they forward them
* relay           behind bench/relay.c, a forwarding-only proxy in C that captures nothing:
                  what interposition alone costs on this machine (built with cc; skipped
                  when there is no C compiler)
* relay 40        the same relay receiving each reply into the next of 40 buffers, as a
                  proxy that keeps recent replies a while touches more memory than one
                  buffer's worth (RELAY_BUFFERS=40)
* relay twin      a second relay, the same as the first: how far apart two equal
                  configurations come out on the machine (the bench's own spread)

Workloads: (a) create + stat + unlink of N files (default 10,000); (b) sequential write
then read of M MiB (default 1024) with dd bs=1M (page cache dropped before the read);
(c) without a mount: the capture writer thread's CPU time per small frame; (r) workload
(a) and (b) paired: every configuration mounted at once; R rounds of (a) going round the
configurations (from a different one each round), then of reads of an M MiB file, then of
writes (nothing dirty before each), so that each ratio compares runs made seconds apart. On a
virtual machine native throughput varies several-fold from one minute to the next; the
paired ratios do not. With --interleave MIB the reads of a round go round the configurations
in pieces of MIB MiB (each file still read whole, 1 MiB at a time): where memory bandwidth
swings within seconds, whole-file reads one after the other still catch it unevenly.
"relay twin" beside "relay" shows how far two equal configurations come apart, and every
ratio to the relay comes with its 95% interval.
(s) squashfuse_ll over an image of N files (--files; 5,000 is the usual figure) in
directories of 100, every configuration mounted at once: R rounds of a walk that lstat()s
every entry, each round of a tree of its own (nothing cached), going round the
configurations. Besides the times, the CPU seconds the proxy process (fusetrace, or the
relay) spent per 1,000 frames; frames are counted in the ``recorded`` capture and taken
to be the same for every configuration (same daemon, same walk of an uncached tree).

    .venv/bin/python bench/bench_record.py [--files N] [--mib M] [--repeat R] [--only NAME,...]
                                           [--workloads a,b,c,r,s] [--drop global|file|fuse]
                                           [--phases a,read,write] [--interleave MIB]

Each figure is the best of R runs (default 3): the machine is shared, noise only slows. The
median follows in brackets. Runs go round the configurations (native, recorded, native, ...)
so that a change in the machine's load falls on all of them alike.

Targets: recorded time on (a) at most 1.5x native; recorded throughput on (b) at least 0.8x
native.
"""

from __future__ import annotations

import argparse
import gc
import io
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.mount import native_mount, recording  # noqa: E402


def daemon_argv(base: Path, mountpoint: str, *extra: str) -> list[str]:
    """The daemon the configurations mount: fuse-overlayfs, or squashfuse_ll for (s)."""
    return DAEMON[0](base, mountpoint, *extra)


def squash_argv(base: Path, mountpoint: str, *extra: str) -> list[str]:
    assert IMAGE, "no image"
    return ["squashfuse_ll", "-f", *extra, str(IMAGE[0]), mountpoint]


def overlay_argv(base: Path, mountpoint: str, *extra: str) -> list[str]:
    lower, upper, work = (base / n for n in ("lower", "upper", "work"))
    for d in (lower, upper, work):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    return [
        "fuse-overlayfs", "-f", *extra,
        "-o", f"lowerdir={lower},upperdir={upper},workdir={work}",
        mountpoint,
    ]  # fmt: skip


Mounter = Callable[[Path, Path], AbstractContextManager[object]]
ArgvOf = Callable[..., list[str]]
#: the daemon's command line (set by the workload) and, for (s), its image
DAEMON: list[ArgvOf] = [overlay_argv]
IMAGE: list[Path] = []


@contextmanager
def native(base: Path, mnt: Path) -> Iterator[object]:
    with native_mount(daemon_argv(base, str(mnt)), mnt) as m:
        yield m


@contextmanager
def native_debug(base: Path, mnt: Path) -> Iterator[object]:
    with native_mount(daemon_argv(base, str(mnt), "-d"), mnt) as m:
        yield m


@contextmanager
def native_strace(base: Path, mnt: Path) -> Iterator[object]:
    argv = [
        "strace",
        "-f",
        "-e",
        "trace=read,write,writev",
        "-o",
        "/dev/null",
        *daemon_argv(base, str(mnt)),
    ]
    with native_mount(argv, mnt) as m:
        yield m


def recorded_with(*record_args: str, env: dict[str, str] | None = None) -> Mounter:
    @contextmanager
    def mounter(base: Path, mnt: Path) -> Iterator[object]:
        capture = base / "bench.pcapng"
        with recording(
            daemon_argv(base, "{}"), mnt, capture, record_args=record_args, env=env
        ) as rec:
            yield rec
        rec_size = capture.stat().st_size if capture.exists() else 0
        print(
            f"    capture: {rec_size / 1e6:.0f} MB; {rec.stderr.strip().splitlines()[-1]}",
            file=sys.stderr,
        )
        capture.unlink(missing_ok=True)

    return mounter


def recorded_null_with(env: dict[str, str] | None = None) -> Mounter:
    @contextmanager
    def mounter(base: Path, mnt: Path) -> Iterator[object]:
        """Recorded with the capture written to /dev/null: fusetrace's forwarding and capture
        thread without the disk (nothing to check afterwards)."""
        log = base / "null.stderr"
        with recording(
            daemon_argv(base, "{}"), mnt, "/dev/null", log=log, check_clean=False, env=env
        ) as rec:
            yield rec
        print(f"    {rec.stderr.strip().splitlines()[-1]}", file=sys.stderr)

    return mounter


recorded_null = recorded_null_with()
PYTHON_LOOPS = {"FUSETRACE_FORWARD": "python"}
FRAMES_ONLY = {"FUSETRACE_CORE_BLOCKS": "0"}
NO_CORE_WRITE = {"FUSETRACE_CORE_WRITE": "0"}
NO_INLINE = {"FUSETRACE_CORE_INLINE": "0"}


RELAY_SOURCE = Path(__file__).with_name("relay.c")


def build_relay(into: Path) -> Path | None:
    """bench/relay.c compiled into ``into``; None (and a note why) when it cannot be."""
    binary = into / "relay"
    if binary.exists():
        return binary
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        print("relay: no C compiler (cc), configuration skipped", file=sys.stderr)
        return None
    into.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [cc, "-O2", "-pthread", "-o", str(binary), str(RELAY_SOURCE)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        print(f"relay: cc failed, configuration skipped\n{done.stderr}", file=sys.stderr)
        return None
    return binary


def relay_with(buffers: int = 1) -> Mounter:
    @contextmanager
    def relay(base: Path, mnt: Path) -> Iterator[object]:
        binary = build_relay(base.parent / "relay-build")
        if binary is None:
            raise Skip
        argv = [str(binary), str(mnt), *daemon_argv(base, "{}")]
        if buffers > 1:
            argv = ["env", f"RELAY_BUFFERS={buffers}", *argv]
        with native_mount(argv, mnt) as m:
            yield m

    return relay


class Skip(Exception):
    """A configuration this machine cannot run."""


CONFIGS: dict[str, Mounter] = {
    "native": native,
    "native -d": native_debug,
    "native strace": native_strace,
    "recorded": recorded_with(),
    "recorded snap": recorded_with("--snaplen", "256"),
    "recorded null": recorded_null,
    "recorded py": recorded_with(env=PYTHON_LOOPS),
    "recorded py null": recorded_null_with(PYTHON_LOOPS),
    "recorded frames": recorded_with(env=FRAMES_ONLY),
    "recorded frames null": recorded_null_with(FRAMES_ONLY),
    "recorded take": recorded_with(env=NO_CORE_WRITE),
    "recorded take null": recorded_null_with(NO_CORE_WRITE),
    "recorded thread null": recorded_null_with(NO_INLINE),
    "relay": relay_with(),
    "relay 40": relay_with(40),
    "relay twin": relay_with(),
}


def metadata(mnt: Path, files: int) -> float:
    d = mnt / "meta"
    d.mkdir()
    names = [str(d / f"f{i:05d}") for i in range(files)]
    t0 = time.perf_counter()
    for p in names:
        os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o644))
        os.stat(p)
    for p in names:
        os.unlink(p)
    elapsed = time.perf_counter() - t0
    d.rmdir()
    return elapsed


#: "global": sync and drop every cache of the machine; "file": write out and drop the
#: cached pages of the file read or written (and of its copy in fuse-overlayfs' upper
#: directory) only, where a sync would wait for another filesystem of the machine; "fuse":
#: those of the file in the mount only, and the daemon's copy read once beforehand, so that
#: the daemon reads it from the page cache (no disk: the proxy's own cost, with less noise)
DROP = ["global"]


def drop_caches(target: Path | None = None) -> None:
    if DROP[0] in ("file", "fuse"):
        if target is not None:
            upper = target.parent.parent / "upper" / target.name
            for path in (target, upper) if DROP[0] == "file" else (target,):
                if path.exists():
                    fd = os.open(path, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    finally:
                        os.close(fd)
            if DROP[0] == "fuse" and upper.exists():
                _warm(upper)
        return
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3")


def _warm(path: Path) -> None:
    """Read ``path`` through the page cache: the daemon's copy is there when the timed read
    starts (this machine may page out cache it has not seen used for a minute or so)."""
    buf = bytearray(1 << 20)
    with path.open("rb", buffering=0) as f:
        while f.readinto(buf):
            pass


def sequential(mnt: Path, mib: int) -> tuple[float, float]:
    target = mnt / "big"
    write = dd_write(target, mib)
    read = dd_read(target, mib)
    target.unlink()
    return write, read


def dd_write(target: Path, mib: int) -> float:
    """MiB/s of a dd bs=1M write of ``mib`` MiB (fsync'd) to ``target``, started with
    nothing dirty (what an earlier run left is written out first, untimed)."""
    drop_caches(target)
    t0 = time.perf_counter()
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={target}", "bs=1M", f"count={mib}", "conv=fsync",
         "status=none"],
        check=True,
    )  # fmt: skip
    return mib / (time.perf_counter() - t0)


def dd_read(target: Path, mib: int) -> float:
    """MiB/s of a dd bs=1M read of ``target`` (``mib`` MiB), page cache dropped first."""
    drop_caches(target)
    t0 = time.perf_counter()
    subprocess.run(["dd", f"if={target}", "of=/dev/null", "bs=1M", "status=none"], check=True)
    return mib / (time.perf_counter() - t0)


RunOne = Callable[[Path], float]
#: the phases of workload (r), in the order they run
PHASES = frozenset({"a", "read", "write"})


def _rotated(names: list[str], r: int) -> list[str]:
    """``names`` starting with the r-th: no configuration always runs right after another."""
    k = r % len(names) if names else 0
    return names[k:] + names[:k]


def mount_all(
    stack: ExitStack, base: Path, prefix: str, names: list[str]
) -> tuple[dict[str, Path], dict[str, int]]:
    """Mount every configuration at once under base/PREFIX-i/mnt (those that cannot be had
    are left out): the mountpoints, and the proxy's pid where there is a proxy."""
    mounts: dict[str, Path] = {}
    pids: dict[str, int] = {}
    for i, name in enumerate(names):
        cfg_base = base / f"{prefix}-{i}"
        mnt = cfg_base / "mnt"
        mnt.mkdir(parents=True, exist_ok=True)
        try:
            ctx = stack.enter_context(CONFIGS[name](cfg_base, mnt))
        except Skip:
            continue
        mounts[name] = mnt
        if name.startswith(("recorded", "relay")):
            pids[name] = ctx.proc.pid  # type: ignore[attr-defined]
    return mounts, pids


def interleaved_reads(mounts: dict[str, Path], mib: int, piece: int, r: int) -> dict[str, float]:
    """One round of reads, every configuration's ``mib`` MiB file read whole (1 MiB at a
    time, as dd bs=1M) but in pieces of ``piece`` MiB going round the configurations: MiB/s
    per configuration from the time its pieces took. Host memory bandwidth on a virtual
    machine swings several-fold within seconds, which whole-file reads taken one after the
    other catch unevenly; pieces a fraction of a second apart see the same conditions."""
    for mnt in mounts.values():
        drop_caches(mnt / "big")
    spent = dict.fromkeys(mounts, 0.0)
    buf = bytearray(1 << 20)
    fds = {name: os.open(mnt / "big", os.O_RDONLY) for name, mnt in mounts.items()}
    try:
        for k in range(-(-mib // piece)):
            for name in _rotated(list(mounts), r + k):
                fd = fds[name]
                t0 = time.perf_counter()
                for _ in range(piece):
                    if not os.readv(fd, [buf]):
                        break
                spent[name] += time.perf_counter() - t0
    finally:
        for fd in fds.values():
            os.close(fd)
    return {name: mib / t for name, t in spent.items()}


def paired(
    base: Path,
    names: list[str],
    mib: int,
    files: int,
    rounds: int,
    phases: frozenset[str] = PHASES,
    piece: int = 0,
) -> None:
    """Workload (r): every configuration mounted at once; rounds of (a), then rounds of
    reads going round them, then rounds of writes (those of ``phases``)."""
    metas: dict[str, list[float]] = {}
    writes: dict[str, list[float]] = {}
    reads: dict[str, list[float]] = {}
    #: the proxy process's CPU seconds per round, per phase
    cpus: dict[str, dict[str, list[float]]] = {"a": {}, "read": {}, "write": {}}
    meta_frames: list[int] = []
    capture = (
        base / f"paired-{names.index('recorded')}" / "bench.pcapng"
        if "recorded" in names and "a" in phases
        else None
    )
    with ExitStack() as stack:
        mounts, pids = mount_all(stack, base, "paired", names)
        for name in mounts:
            metas[name] = []
            writes[name] = []
            reads[name] = []
            if name in pids:
                for phase in cpus.values():
                    phase[name] = []

        def rounds_of(what: str, results: dict[str, list[float]], run: RunOne) -> None:
            phase = cpus[what.split(",")[0].replace("metadata", "a")]
            for r in range(rounds):
                for name in _rotated(list(mounts), r):
                    pid = pids.get(name)
                    before = cpu_seconds(pid) if pid else 0.0
                    counting = phase is cpus["a"] and name == "recorded" and capture
                    n0 = count_frames(capture) if counting and capture else 0
                    results[name].append(run(mounts[name]))
                    if pid:
                        phase[name].append(cpu_seconds(pid) - before)
                    if counting and capture:
                        time.sleep(0.05)  # the capture thread's last drain
                        meta_frames.append(count_frames(capture) - n0)
                print(
                    f"round {r + 1}: "
                    + ", ".join(f"{n} {results[n][-1]:.2f}" for n in mounts)
                    + f" ({what})",
                    file=sys.stderr,
                )

        def write_once(mnt: Path) -> float:
            rate = dd_write(mnt / "big", mib)
            (mnt / "big").unlink()
            return rate

        if "a" in phases:
            rounds_of("metadata, s", metas, lambda mnt: metadata(mnt, files))
        # reads first, of files written beforehand; then the writes (a read right after a
        # burst of timed writes would run while the host still writes them out)
        if "read" in phases:
            for mnt in mounts.values():
                dd_write(mnt / "big", mib)
            if piece:
                for r in range(rounds):
                    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
                    for name, rate in interleaved_reads(mounts, mib, piece, r).items():
                        reads[name].append(rate)
                    for name, pid in pids.items():
                        cpus["read"][name].append(cpu_seconds(pid) - before[name])
                    print(
                        f"round {r + 1}: "
                        + ", ".join(f"{n} {reads[n][-1]:.2f}" for n in mounts)
                        + f" (read in pieces of {piece} MiB, MiB/s)",
                        file=sys.stderr,
                    )
            else:
                rounds_of("read, MiB/s", reads, lambda mnt: dd_read(mnt / "big", mib))
            for mnt in mounts.values():
                (mnt / "big").unlink()
        if "write" in phases:
            rounds_of("write, MiB/s", writes, write_once)
    how = f"read in pieces of {piece} MiB going round" if piece else "dd bs=1M"
    print(
        f"\n(r) paired: {rounds} rounds of (a) on {files} files, then of {mib} MiB reads "
        f"({how}; page cache dropped before each), then of writes; load average "
        f"{os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'configuration':<21} {'(a) s':>7} {'median':>7} {'x native':>9}"
        f" {'write MiB/s':>12} {'median':>7} {'x native':>9}"
        f" {'read MiB/s':>11} {'median':>7} {'x native':>9}"
    )
    for name in mounts:
        cells = []
        for rates in (metas, writes, reads):
            v, ref = rates[name], rates.get("native")
            ratio = (
                f"{statistics.median(a / b for a, b in zip(v, ref, strict=True)):.2f}"
                if ref
                else "-"
            )
            if not v:
                cells.append(f"{'-':>{25 if rates is metas else 29}}")
            elif rates is metas:
                cells.append(f"{min(v):7.2f} {statistics.median(v):7.2f} {ratio:>9}")
            else:
                cells.append(f"{max(v):11.0f} {statistics.median(v):7.0f} {ratio:>9}")
        print(f"{name:<21} " + " ".join(cells))
    print("x native: the median of the per-round ratios (time for (a), throughput for dd)")
    if "relay" in mounts:
        print(
            f"\n{'configuration':<21} {'(a) x relay':>17}"
            f" {'write x relay':>17} {'read x relay':>17}"
        )
        for name in mounts:
            cells = []
            for rates in (metas, writes, reads):
                pairs = zip(rates[name], rates["relay"], strict=True)
                cells.append(f"{ratio_cell([a / b for a, b in pairs]):>17}")
            print(f"{name:<21} " + " ".join(cells))
        print(
            "x relay: the median of the per-round ratios (time for (a), throughput for dd), "
            "in brackets its 95% interval; relay twin shows how far apart two equal "
            "configurations come"
        )
    per_round = statistics.median(meta_frames) if meta_frames else float("nan")
    print(
        f"\nCPU of the proxy process (all threads), median per round; (a): "
        f"{per_round:.0f} frames per round, counted in the recorded capture"
    )
    print(
        f"{'configuration':<21} {'(a) CPU s/1000 frames':>22} {'x relay':>17}"
        f" {'read CPU s':>11} {'x relay':>17} {'write CPU s':>12} {'x relay':>17}"
    )
    for name in pids:
        cells = []
        for phase, width in (("a", 22), ("read", 11), ("write", 12)):
            v, ref = cpus[phase][name], cpus[phase].get("relay")
            scale = 1000 / per_round if phase == "a" else 1.0
            fig = f"{statistics.median(v) * scale:.4f}" if v else "-"
            ratio = (
                ratio_cell([a / b for a, b in zip(v, ref, strict=True) if b]) if ref and v else "-"
            )
            cells.append(f"{fig:>{width}} {ratio:>17}")
        print(f"{name:<21} " + " ".join(cells))


def median_interval(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """A distribution-free interval for the median of ``values`` (order statistics: the
    ranks between which the true median lies with probability ``level`` or more)."""
    v = sorted(values)
    n = len(v)
    # the largest k with P(Binomial(n, 1/2) < k) <= (1 - level) / 2: [v[k-1], v[n-k]]
    tail = (1 - level) / 2
    k, below = 0, 0.0
    while k < n // 2:
        below_next = below + math.comb(n, k) / 2**n
        if below_next > tail:
            break
        below = below_next
        k += 1
    if k == 0:
        return v[0], v[-1]
    return v[k - 1], v[n - k]


def ratio_cell(ratios: list[float]) -> str:
    """The median of per-round ratios, with its 95% interval: ``0.97 (0.91-1.02)``."""
    if not ratios:
        return "-"
    lo, hi = median_interval(ratios)
    return f"{statistics.median(ratios):.2f} ({lo:.2f}-{hi:.2f})"


def space_needed(names: list[str], mib: int, rounds: int, phases: frozenset[str]) -> int:
    """Bytes workload (r) writes at most: every configuration's file of ``mib`` MiB, and
    for each configuration that writes a capture file, a capture of every round's reads
    and writes (full frames: as large as the data)."""
    captures = sum(1 for n in names if n.startswith("recorded") and "null" not in n)
    timed = ("read" in phases) + ("write" in phases)
    return (len(names) * mib + captures * rounds * mib * timed) << 20


def free_space(path: Path) -> int:
    return shutil.disk_usage(path).free


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of process ``pid`` so far (schedstat: nanoseconds)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that just ended
    return total / 1e9


def count_frames(capture: Path) -> int:
    """Whole frames in a capture file (one being written is whole up to its last drain)."""
    from fusetrace.capture.files import open_capture

    with open_capture(str(capture)) as reader:
        return sum(1 for _ in reader)


def squash_image(base: Path, files: int, rounds: int) -> Path:
    """A squashfs image of ``rounds`` trees (r0, r1, ...) of ``files`` small files each,
    100 to a directory: each round walks a tree nothing has looked up yet."""
    src = base / "squash-src"
    for r in range(rounds):
        for i in range(files):
            d = src / f"r{r}" / f"d{i // 100:03d}"
            if i % 100 == 0:
                d.mkdir(parents=True, exist_ok=True)
            (d / f"f{i:05d}").write_bytes(b"x" * (i % 300))
    image = base / "tree.sqfs"
    subprocess.run(
        ["mksquashfs", str(src), str(image), "-quiet", "-noappend", "-no-progress"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    shutil.rmtree(src)
    return image


def walk_stat(tree: Path) -> float:
    """Seconds to walk ``tree`` (not looked up before: every lookup reaches the daemon)
    and lstat() every entry."""
    t0 = time.perf_counter()
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in dirnames + filenames:
            os.lstat(os.path.join(dirpath, name))
    return time.perf_counter() - t0


def paired_walk(base: Path, names: list[str], files: int, rounds: int) -> None:
    """Workload (s): squashfuse_ll behind every configuration at once, rounds of walk+stat."""
    DAEMON[0] = squash_argv
    IMAGE[:] = [squash_image(base, files, rounds)]
    times: dict[str, list[float]] = {}
    cpus: dict[str, list[float]] = {}
    with ExitStack() as stack:
        mounts, pids = mount_all(stack, base, "walk", names)
        for name in mounts:
            times[name] = []
            cpus[name] = []
        capture = base / f"walk-{names.index('recorded')}" / "bench.pcapng"
        counted = "recorded" in mounts
        # the frames are counted once, after the last round: reading the capture between
        # walks would run in the walker's own process, next to the timed walks
        before = count_frames(capture) if counted else 0
        for r in range(rounds):
            for name in _rotated(list(mounts), r):
                pid = pids.get(name)
                gc.collect()  # every walk starts from the same collector state
                cpu0 = cpu_seconds(pid) if pid else 0.0
                times[name].append(walk_stat(mounts[name] / f"r{r}"))
                if pid:
                    cpus[name].append(cpu_seconds(pid) - cpu0)
            print(
                f"round {r + 1}: "
                + ", ".join(f"{n} {times[n][-1]:.3f}" for n in mounts)
                + " (walk+stat, s)",
                file=sys.stderr,
            )
        per_round = float("nan")
        if counted:
            time.sleep(0.05)  # the capture thread's last drain
            per_round = (count_frames(capture) - before) / rounds
    print(
        f"\n(s) paired: squashfuse_ll, {files} files, {rounds} rounds of walk+lstat (each of a "
        f"tree not walked before); {per_round:.0f} frames per round (the mean, counted in the "
        f"recorded capture); load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'configuration':<21} {'s (best)':>9} {'median':>7} {'x native':>17} {'x relay':>17}"
        f" {'CPU s/1000 frames':>18} {'x relay':>17}"
    )

    def ratio(name: str, ref: str, v: dict[str, list[float]]) -> str:
        if not v.get(ref) or not v.get(name):
            return "-"
        return ratio_cell([a / b for a, b in zip(v[name], v[ref], strict=True)])

    for name in mounts:
        v = times[name]
        cpu = f"{statistics.median(cpus[name]) / per_round * 1000:.4f}" if cpus[name] else "-"
        print(
            f"{name:<21} {min(v):9.3f} {statistics.median(v):7.3f} "
            f"{ratio(name, 'native', times):>17} {ratio(name, 'relay', times):>17}"
            f" {cpu:>18} {ratio(name, 'relay', cpus):>17}"
        )
    print(
        "x native, x relay: the median of the per-round ratios, in brackets its 95% interval; "
        "CPU: the proxy process's (all threads), median per round"
    )


class _Runs:
    """Small frames as the compiled core hands them over: runs of encoded blocks."""

    def __init__(self, runs: list[bytes], per_run: int) -> None:
        self.runs = runs
        self.per_run = per_run
        self.next = 0

    def take(self, final: bool = False, blocks: bool = False) -> list[bytes]:
        run = self.runs[self.next % len(self.runs)]
        self.next += 1
        return [run]

    def encoded(self) -> int:
        return self.next * self.per_run

    def write(self, fd: int, pos: int = -1, limit: int = 0) -> tuple[int, int, None, bool]:
        return 0, 0, None, True  # (the Python side's cost alone)


def capture_thread_cost(frames: int = 180_000, drain: int = 500, core: bool = False) -> float:
    """Microseconds of the capture writer thread per small frame (80-200 bytes), drains of
    ``drain`` frames as the 5 ms interval gives under workload (a); no mount. Best of 5.
    With ``core``, the frames come as the compiled core hands them over (each drain's
    frames one run of packet blocks the core encoded), and only the writing is timed."""
    from fusetrace.capture.pcapng import CaptureWriter
    from fusetrace.frame import Direction
    from fusetrace.proxy.output import CaptureThread

    # in-flight frames as the forwarding loops hand them over: a reply with its result
    items = [
        ((Direction.INBOUND, Direction.OUTBOUND)[i % 2],
         i, bytes(80 + i % 7 * 20), None, (None, 0)[i % 2])
        for i in range(frames)
    ]  # fmt: skip
    encoder = CaptureWriter(io.BytesIO(), {})
    runs = [
        b"".join(
            b"".join(encoder.block(d, t, data, result=r))
            for d, t, data, _c, r in items[i : i + drain]
        )
        for i in range(0, frames, drain)
    ]
    best = float("inf")
    for _ in range(5):
        with tempfile.NamedTemporaryFile() as f:
            source = _Runs(runs, drain) if core else None
            thread = CaptureThread(
                f, lambda sink: CaptureWriter(sink, {}), lambda _msg: None, interval=3600,
                source=source,  # type: ignore[arg-type]
            )  # fmt: skip
            t0 = time.perf_counter()
            for i in range(0, frames, drain):
                if not core:
                    for item in items[i : i + drain]:
                        thread.put(item)
                thread._drain()
            best = min(best, time.perf_counter() - t0)
            thread.close()
    return best / frames * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--only", default=",".join(CONFIGS))
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure; the best is kept")
    ap.add_argument(
        "--workloads",
        default="a,b",
        help="a: create+stat+unlink, b: dd write and read; "
        "c: the capture thread's cost per small frame (no mount, no configurations); "
        "r: (b) paired across configurations mounted at once (--repeat rounds); "
        "s: squashfuse_ll walk+stat of --files files, paired (--repeat rounds)",
    )
    ap.add_argument(
        "--drop",
        choices=["global", "file", "fuse"],
        default="global",
        help="before each dd: sync and drop all caches (global), or write out and drop "
        "the pages of the file itself (file: for a machine where sync hangs or takes long), "
        "or only those of the file in the mount, the daemon's copy read into the page cache "
        "first (fuse: no disk)",
    )
    ap.add_argument(
        "--phases",
        default="a,read,write",
        help="the phases of (r): a (create+stat+unlink), read, write (default: all three)",
    )
    ap.add_argument(
        "--interleave",
        type=int,
        default=0,
        metavar="MIB",
        help="(r): read every configuration's file in pieces of MIB MiB going round the "
        "configurations, rather than whole, one configuration after another (a machine "
        "whose memory bandwidth swings within seconds)",
    )
    ap.add_argument("--keep", type=Path, help="work in DIR (default: a temporary directory)")
    args = ap.parse_args()
    DROP[0] = args.drop
    workloads = set(args.workloads.split(","))
    if "c" in workloads:
        print(f"capture thread: {capture_thread_cost():.2f} us per small frame (best of 5)")
        print(
            f"capture thread, frames from the compiled core: "
            f"{capture_thread_cost(core=True):.2f} us per small frame (best of 5)"
        )
        workloads.discard("c")
        if not workloads:
            return
    if os.geteuid() != 0:
        sys.exit("bench_record: run as root (it mounts)")
    base = args.keep or Path(tempfile.mkdtemp(prefix="bench-record-"))
    mnt = base / "mnt"
    mnt.mkdir(parents=True, exist_ok=True)
    names = args.only.split(",")
    if "s" in workloads:
        try:
            paired_walk(base, names, args.files, args.repeat)
        finally:
            if args.keep is None and workloads == {"s"}:
                shutil.rmtree(base, ignore_errors=True)
        workloads.discard("s")
        DAEMON[0] = overlay_argv
        if not workloads:
            return
    if "r" in workloads:
        try:
            phases = frozenset(args.phases.split(","))
            if not phases <= PHASES:
                sys.exit(f"bench_record: --phases: a, read or write, not {args.phases}")
            need, free = space_needed(names, args.mib, args.repeat, phases), free_space(base)
            if need > free:
                sys.exit(
                    f"bench_record: workload (r) needs about {need / 2**30:.1f} GiB in {base} "
                    f"(the daemons' files, and every round's capture of the configurations "
                    f"that write one), {free / 2**30:.1f} GiB are free: fewer --repeat or "
                    f"--mib, another --keep, or /dev/null captures only (recorded null)"
                )
            paired(base, names, args.mib, args.files, args.repeat, phases, args.interleave)
        finally:
            if args.keep is None and workloads == {"r"}:
                shutil.rmtree(base, ignore_errors=True)
        workloads.discard("r")
        if not workloads:
            return
    runs: dict[str, tuple[list[float], list[float], list[float]]] = {n: ([], [], []) for n in names}
    try:
        for r in range(args.repeat):
            for name in names:
                mounter = CONFIGS[name]
                print(f"{name} (run {r + 1}):", file=sys.stderr)
                metas, wrs, rds = runs[name]
                try:
                    if "a" in workloads:
                        with mounter(base, mnt):
                            metas.append(metadata(mnt, args.files))
                    if "b" in workloads:
                        with mounter(base, mnt):
                            wr, rd = sequential(mnt, args.mib)
                            wrs.append(wr)
                            rds.append(rd)
                except Skip:
                    continue
                print(
                    "    "
                    + ", ".join(
                        f"{what} {v[-1]:.2f}"
                        for what, v in (
                            ("metadata s", metas),
                            ("write MiB/s", wrs),
                            ("read MiB/s", rds),
                        )
                        if v
                    ),
                    file=sys.stderr,
                )
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    nan = float("nan")
    results = {
        name: (
            (min(m), statistics.median(m)) if m else (nan, nan),
            (max(w), statistics.median(w)) if w else (nan, nan),
            (max(d), statistics.median(d)) if d else (nan, nan),
        )
        for name, (m, w, d) in runs.items()
    }
    ref = results.get("native")
    print(
        f"\nfuse-overlayfs, {args.files} files create+stat+unlink; {args.mib} MiB dd bs=1M; "
        f"best of {args.repeat} [median]; load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'configuration':<21} {'(a) s':>14} {'x native':>14} {'write MiB/s':>14} "
        f"{'x native':>14} {'read MiB/s':>14} {'x native':>14}"
    )
    for name, figures in results.items():
        cells = []
        for i, (best, median) in enumerate(figures):
            cells.append(
                f"{best:7.2f} [{median:5.2f}]" if i == 0 else f"{best:5.0f} [{median:5.0f}]"
            )
            if ref:
                rb, rm = ref[i]
                cells.append(f"{best / rb:5.2f} [{median / rm:5.2f}]")
            else:
                cells.append("-")
        print(f"{name:<21} " + " ".join(f"{c:>14}" for c in cells))


if __name__ == "__main__":
    main()
