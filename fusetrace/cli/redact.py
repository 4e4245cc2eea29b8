"""``fusetrace redact``: a capture without file data, names, host names and paths."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import click

from fusetrace.capture.files import open_capture, open_output
from fusetrace.capture.pcapng import CaptureInfo, CaptureWriter, Channel
from fusetrace.cli import options
from fusetrace.frame import Frame
from fusetrace.redact import Redactor, names_in, scrub_meta


def load(path: str) -> tuple[list[Frame], CaptureInfo]:
    """Every record of a capture and what the reader learned; warns when it is cut short."""
    with open_capture(path) as reader:
        records = list(reader)
        info = reader.info
    if info.truncated:
        click.echo(
            f"fusetrace: warning: {path}: capture cut short at byte {info.truncated_at}; "
            "using the frames before it",
            err=True,
        )
    return records, info


def write_like(
    path: str,
    info: CaptureInfo,
    records: Iterable[Frame],
    *,
    meta: dict[str, Any] | None = None,
    descriptions: Sequence[str] | None = None,
) -> int:
    """Write ``records`` to ``path`` with the section header and interfaces of ``info``
    (``meta`` and interface ``descriptions`` replaced when given), the way the recorder
    writes them. Returns the number of frames written."""
    ifaces = info.interfaces or []
    chans = [
        Channel(
            description=(descriptions[i] if descriptions is not None else iface.description),
            name=iface.name or "fuse",
        )
        for i, iface in enumerate(ifaces)
    ] or [Channel()]
    snaplen = ifaces[0].snaplen if ifaces and ifaces[0].snaplen else None
    base = dict(info.meta if meta is None else meta)
    base.pop("fusetrace_capture", None)
    base.pop("byte_order", None)
    f = open_output(path)
    with f:
        writer = CaptureWriter(
            f,
            base,
            channels=chans,
            snaplen=snaplen,
            userappl=info.userappl or "fusetrace",
            os_name=info.os,
            hardware=info.hardware,
            byte_order=info.byte_order,
        )
        for rec in records:
            writer.write(
                rec.direction,
                rec.t_ns,
                rec.data,
                channel=rec.channel if rec.channel < len(chans) else 0,
                comment=rec.comment,
                orig_len=rec.orig_len,
            )
        return writer.frames


@click.command()
@click.argument("capture", metavar="FILE|-", required=False)
@options.read_option(dest="read_path")
@options.write_option(help="Write the redacted capture to FILE ('-' for standard output).",
                      dest="write_path", required=True)  # fmt: skip
@click.option("--keep-names", is_flag=True, help="Leave file and xattr names as they are "
              "(for private use).")  # fmt: skip
@click.option("--keep-data", is_flag=True, help="Leave file data, xattr values and symlink "
              "targets as they are (for private use).")  # fmt: skip
@click.option("--map-ids", is_flag=True, help="Replace uid, gid and pid by small stable "
              "numbers (0 stays 0).")  # fmt: skip
@options.format_option("text", "json", help="Summary format on stderr.")
def redact(
    capture: str | None,
    read_path: str | None,
    write_path: str,
    keep_names: bool,
    keep_data: bool,
    map_ids: bool,
    fmt: str,
) -> None:
    """Rewrite FILE so it can be attached to a public bug report.

    File data (READ and WRITE payloads, NOTIFY_STORE and NOTIFY_REPLY data, xattr values,
    symlink targets, IOCTL data) becomes a fixed pattern of the same length. Names (LOOKUP,
    CREATE, MKDIR, RENAME, READDIR entries, xattr names, ...) become pseudonyms of the same
    length: the same name is the same pseudonym everywhere, "." and ".." are kept. The
    section header's metadata loses host names and paths (daemon arguments, mountpoint).
    Every length stays, so the result decodes, checks with the same findings and replays
    against the same kind of daemon as far as the data allows.

    \b
    Examples:
      fusetrace redact trace.pcapng -w shareable.pcapng
      fusetrace redact --map-ids --keep-names trace.pcapng -w private.pcapng

    Exit status: 0 written, 2 usage, 3 unreadable capture.
    """
    path = read_path or capture
    if path is None:
        raise click.UsageError("no capture given (FILE or -r FILE)")
    if read_path and capture:
        raise click.UsageError("give the capture once: FILE or -r FILE")
    records, info = load(path)
    byte_order = str(info.meta.get("byte_order", info.byte_order))
    avoid = names_in(records, byte_order) if not keep_names else set()
    red = Redactor(
        byte_order, names=not keep_names, data=not keep_data, map_ids=map_ids, avoid=avoid
    )
    out = [red.record(r) for r in records]
    secrets = [socket.gethostname()]
    secrets += [n.decode("utf-8", "replace") for n in red.pseudonyms.map if len(n) >= 4]
    meta = scrub_meta(info.meta, secrets)
    meta["redacted"] = {"names": not keep_names, "data": not keep_data, "ids": map_ids}
    written = write_like(
        write_path, info, out, meta=meta, descriptions=["" for _ in info.interfaces]
    )
    summary = {
        "frames": written,
        "names": len(red.pseudonyms.map),
        "name_fields": red.counts["names"],
        "data_bytes": red.counts["data_bytes"],
        "ids": red.counts["ids"],
    }
    dest = sys.stderr
    if fmt == "json":
        click.echo(json.dumps(summary), file=dest)
    else:
        click.echo(
            f"{written} frames written; {summary['names']} names "
            f"({summary['name_fields']} occurrences) pseudonymised, "
            f"{summary['data_bytes']} data bytes replaced, {summary['ids']} ids mapped",
            file=dest,
        )
