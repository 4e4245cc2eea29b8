"""``decode --format parquet``: one table row per frame, with the fields of ``--format jsonl``.

Rows are written in row groups of :data:`BATCH` frames, so memory stays flat however long the
capture. The body (a nested, per-opcode structure) is stored as its JSON text, as jsonl
writes it; every other jsonl key is a typed column. One more column, ``daemon``, holds the
recorded daemon command line (the same in every row of a file, stored once per row group by
dictionary encoding), so a query over a folder of captures can group by it. The capture's
section-header metadata is kept as the file's ``fusetrace`` key-value metadata.

Needs pyarrow (the ``parquet`` extra).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, BinaryIO

#: frames per row group
BATCH = 65_536

#: column -> arrow type name, in jsonl's key order
COLUMNS: dict[str, str] = {
    "frame": "int64",
    "time": "float64",
    "t_ns": "int64",
    "dir": "string",
    "channel": "int32",
    "len": "int64",
    "kind": "string",
    "unique": "uint64",
    "opcode": "string",
    "nodeid": "uint64",
    "error": "int32",
    "errno": "string",
    "request_frame": "int64",
    "latency_ns": "int64",
    "body": "string",
    "problems": "list<string>",
    "remainder": "binary",
    "daemon": "string",
}


def _schema() -> Any:
    import pyarrow as pa

    types = {
        "int64": pa.int64(),
        "float64": pa.float64(),
        "int32": pa.int32(),
        "uint64": pa.uint64(),
        "string": pa.string(),
        "binary": pa.binary(),
        "list<string>": pa.list_(pa.string()),
    }
    return pa.schema([pa.field(name, types[t]) for name, t in COLUMNS.items()])


class ParquetFrames:
    """Collects jsonl objects (:func:`fusetrace.report.frames.json_object`) and writes them
    as Parquet row groups to ``sink``."""

    def __init__(self, sink: BinaryIO | str, meta: dict[str, Any], *, batch: int = BATCH):
        import pyarrow.parquet as pq

        self._schema = _schema().with_metadata({"fusetrace": json.dumps(meta)})
        self._writer = pq.ParquetWriter(sink, self._schema, compression="zstd")
        daemon = meta.get("daemon")
        self._daemon = " ".join(map(str, daemon)) if isinstance(daemon, list) else None
        self._batch = batch
        self._cols: dict[str, list[Any]] = {name: [] for name in COLUMNS}
        self.rows = 0
        from fusetrace.report.frames import _json_default

        self._encode = json.JSONEncoder(default=_json_default, separators=(",", ":")).encode

    def add(self, obj: dict[str, Any]) -> None:
        cols = self._cols
        for name in COLUMNS:
            if name == "body":
                cols[name].append(self._encode(obj.get("body", {})))
            elif name == "daemon":
                cols[name].append(self._daemon)
            else:
                cols[name].append(obj.get(name))
        self.rows += 1
        if len(cols["frame"]) >= self._batch:
            self._flush()

    def add_all(self, objs: Iterable[dict[str, Any]]) -> None:
        for obj in objs:
            self.add(obj)

    def _flush(self) -> None:
        import pyarrow as pa

        if not self._cols["frame"]:
            return
        table = pa.Table.from_pydict(self._cols, schema=self._schema)
        self._writer.write_table(table)
        for col in self._cols.values():
            col.clear()

    def close(self) -> None:
        self._flush()
        self._writer.close()
