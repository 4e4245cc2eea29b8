"""``decode --format parquet --output FILE``: the frames of a capture as Parquet rows."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from fusetrace.errors import EnvironmentProblem
from fusetrace.frame import Frame
from fusetrace.protocol.stream import DecodedFrame


def write_parquet(
    path: str,
    records: Iterator[Frame],
    feed: Callable[[Frame], DecodedFrame],
    keep: Callable[[DecodedFrame], bool] | None,
    t0: int,
    meta: dict[str, Any],
) -> int:
    """Decode ``records`` and write the frames ``keep`` accepts to ``path``; returns rows."""
    try:
        from fusetrace.observe.parquet import ParquetFrames
    except ImportError as e:  # pragma: no cover - the extra is in the test environment
        raise EnvironmentProblem(
            f"--format parquet needs pyarrow ({e.name} is missing): "
            "pip install 'fusetrace[parquet]'"
        ) from None
    from fusetrace.report.frames import json_object

    if path == "-":
        sink: Any = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    else:
        try:
            sink = open(path, "wb")  # noqa: SIM115
        except OSError as e:
            raise EnvironmentProblem(f"cannot create {path}: {e.strerror}") from None
    with sink:
        table = ParquetFrames(sink, meta)
        try:
            for rec in records:
                frame = feed(rec)
                if keep is None or keep(frame):
                    table.add(json_object(frame, t0))
        finally:
            table.close()
    return table.rows
