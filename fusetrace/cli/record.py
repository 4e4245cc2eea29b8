"""``fusetrace record``: run a daemon behind the proxy and capture every frame."""

from __future__ import annotations

import sys

import click

from fusetrace.cli import Result, options
from fusetrace.errors import ExitCode

EPILOG = """\b
Examples:
  fusetrace record -w trace.pcapng /mnt -- squashfuse_ll image.sqfs /mnt
  fusetrace record -w union.pcapng /mnt -- unionfs-fuse -f /rw=RW:/ro=RO /mnt
  fusetrace record -w ntfs.pcapng /mnt -- ntfs-3g -o no_detach disk.img /mnt
  echo "$PW" | fusetrace record -w c.pcapng /mnt -- cryfs -f /base /mnt
  fusetrace record -w trace.pcapng -o allow_other,fsname=img /mnt -- squashfuse_ll img.sqfs {}
  fusetrace record --check -w trace.pcapng /mnt -- ./mydaemon -f {}
  fusetrace record -w - /mnt -- fuse-overlayfs -f -o lowerdir=/lo,upperdir=/up,workdir=/w /mnt \\
      | tshark -r -
"""


@options.renamed({"--daemon-timeout": "--timeout"})
@click.command(epilog=EPILOG)
@options.write_option(
    dest="output",
    required=True,
    help="Write the capture (pcapng) to FILE, mode 0600; '-' writes it to standard output.",
)
@options.mount_options_option(
    help="Mount options, as for mount(8): ro, nosuid, noexec, allow_other, "
    "default_permissions, max_read=N, blksize=N, fsname=NAME, subtype=TYPE... Repeatable.",
)
@click.option(
    "--snaplen",
    type=click.IntRange(min=16),
    metavar="BYTES",
    help="Store at most BYTES of each frame (file data is cut; lengths are kept).",
)
@options.timeout_option(
    dest="daemon_timeout",
    help="Abort the connection when a request stays unanswered this long (a hung daemon). "
    "Formerly --daemon-timeout.",
)
@click.option(
    "--live",
    is_flag=True,
    help="Also print one summary line per frame on standard error while recording.",
)
@click.option(
    "--top",
    "top",
    is_flag=True,
    help="Show `fusetrace top`'s screen on standard error while recording (per-opcode "
    "rates, in flight, latency, errors, bytes), refreshed once a second.",
)
@click.option(
    "--check",
    "check",
    is_flag=True,
    help="Check the traffic against the kernel's protocol rules as it is recorded (as "
    "`fusetrace check` does), print each finding the moment it happens, and exit 1 when a "
    "finding at or above --fail-on was seen.",
)
@options.fail_on_option(help="With --check: exit 1 when a finding of this severity or worse "
                        "is reported.")  # fmt: skip
@click.option(
    "--handoff",
    type=click.Choice(["auto", "seccomp", "fd", "fusermount"]),
    default="auto",
    show_default=True,
    help="How the daemon gets its socket: 'seccomp' lets the daemon open /dev/fuse and "
    "mount as it does natively (itself, or through any fusermount-style helper) and "
    "answers those calls with the socket and the real mount; 'fd' replaces the "
    "mountpoint argument (or {}) with /dev/fd/N (libfuse >= 3.3, pyfuse3); 'fusermount' "
    "stands in for fusermount3/fusermount; 'auto' picks fd when the command line has {}, "
    "else seccomp.",
)
@click.option(
    "--sync-writes",
    is_flag=True,
    help="With the seccomp hand-off: the daemon's writes of replies and notifications go "
    "to /dev/fuse before its write() returns, so it sees the kernel's answer (an errno "
    "where the kernel refuses a frame), as without fusetrace. Each write then costs a "
    "round trip through fusetrace.",
)
@click.argument("mountpoint")
@click.argument("daemon", nargs=-1, required=True)
def record(
    output: str,
    options: tuple[str, ...],
    snaplen: int | None,
    daemon_timeout: float | None,
    live: bool,
    top: bool,
    check: bool,
    fail_on: str,
    handoff: str,
    sync_writes: bool,
    mountpoint: str,
    daemon: tuple[str, ...],
) -> Result:
    """Mount MOUNTPOINT, run DAEMON behind fusetrace, and capture every FUSE frame.

    DAEMON talks to one end of a socket instead of /dev/fuse, and fusetrace mounts the real
    device on MOUNTPOINT. By default the daemon opens /dev/fuse and mounts as it does
    natively (by itself or through any fusermount-style helper): fusetrace answers those
    calls with its socket and the daemon's own mount on the real device. With a literal {}
    on the command line, {} becomes /dev/fd/N instead. The daemon's stdin is fusetrace's.
    Every frame between the kernel and the daemon is forwarded unchanged and written to
    FILE as pcapng (tshark and Wireshark read it).

    Recording ends when the filesystem is unmounted (umount, fusermount3 -u), when the
    daemon exits, or on Ctrl-C; the filesystem is always unmounted at the end and the
    capture is always readable. Needs root.
    """
    from fusetrace.proxy import mount as mounts
    from fusetrace.proxy.session import RecordConfig, Session

    try:
        opts = mounts.split_options(list(options))
        mounts.parse_options(opts)
    except mounts.MountOptionError as e:
        raise click.BadParameter(str(e), param_hint="'-o'") from None
    if live and top:
        raise click.BadParameter("--live and --top both use standard error; pick one",
                                 param_hint="'--top'")  # fmt: skip
    sinks = []
    live_sink = None
    screen = None
    if top:
        from fusetrace.cli.top import RecordTop

        screen = RecordTop(sys.stderr, output=output, daemon=list(daemon), mountpoint=mountpoint)
        sinks.append(screen.put)
    checker = None
    if live or check:  # the tracker's import is not paid for by a plain recording
        from fusetrace.report.live import LiveCheck, LiveView

        if live:
            view = LiveView(sys.stderr)
            sinks.append(view.put)
        if check:
            checker = LiveCheck(sys.stderr, mount_options=opts)
            sinks.append(checker.put)
    if sinks:
        from fusetrace.report.live import both

        live_sink = both(*sinks)
    config = RecordConfig(
        output=output,
        mountpoint=mountpoint,
        daemon_argv=list(daemon),
        options=opts,
        snaplen=snaplen,
        daemon_timeout=daemon_timeout,
        handoff=handoff,
        sync_writes=sync_writes,
        live=live_sink,
    )
    try:
        result = Session(config).run()
    finally:
        if screen is not None:
            screen.close()
    if live:
        view.close()
    where = "standard output" if output == "-" else output
    extra = ""
    refused = result.stats.get("refused") or {}
    if refused:
        extra = "; kernel refused " + ", ".join(f"{n} {k}" for k, n in sorted(refused.items()))
    joined = result.stats.get("joined") or 0
    if joined:
        extra += f"; {joined} spliced replies joined"
    if live and view.dropped:
        extra += f"; {view.dropped} live lines dropped"
    if sync_writes:
        extra += f"; {result.stats.get('synchronous') or 0} synchronous writes"
        if not result.stats.get("synchronous") and result.frames:
            click.echo(
                "fusetrace: warning: no write of the daemon's was synchronous (a helper such "
                "as fusermount3 passed its descriptor on under another number)",
                err=True,
            )
    click.echo(
        f"fusetrace: {result.frames} frames captured to {where}; {result.how}{extra}", err=True
    )
    status = result.exit_code
    if checker is not None:
        from fusetrace.tracker import Severity

        findings = checker.finish()
        threshold = Severity.parse(fail_on)
        counts = [(sum(f.severity is sev for f in findings), sev) for sev in reversed(Severity)]
        plural = {Severity.ERROR: "errors", Severity.WARNING: "warnings", Severity.INFO: "info"}
        click.echo(
            "fusetrace: check: "
            + ", ".join(f"{n} {sev.label if n == 1 else plural[sev]}" for n, sev in counts),
            err=True,
        )
        if status == 0 and any(f.severity >= threshold for f in findings):
            status = ExitCode.FINDINGS
    return Result.from_status(status)
