"""ParquetFrames writes row groups of a fixed size and keeps the capture's metadata."""

from __future__ import annotations

import io
import json

import pytest

from fusetrace.observe.parquet import COLUMNS, ParquetFrames

pq = pytest.importorskip("pyarrow.parquet")


def test_rows_go_out_in_row_groups() -> None:
    buf = io.BytesIO()
    table = ParquetFrames(buf, {"daemon": ["squashfuse_ll", "-f"]}, batch=100)
    for i in range(250):
        table.add(
            {
                "frame": i,
                "t_ns": i * 10,
                "dir": "K>D",
                "kind": "request",
                "unique": 2 * i,
                "opcode": "LOOKUP",
                "body": {"name": f"n{i}", "raw": b"\x00\x01"},
                "problems": [],
            }
        )
    table.close()
    buf.seek(0)
    f = pq.ParquetFile(buf)
    assert f.metadata.num_rows == 250 and f.metadata.num_row_groups == 3
    rows = f.read().to_pylist()
    assert [r["frame"] for r in rows] == list(range(250))
    assert json.loads(rows[7]["body"]) == {"name": "n7", "raw": {"len": 2, "hex": "0001"}}
    assert rows[0]["daemon"] == "squashfuse_ll -f" and rows[0]["latency_ns"] is None
    assert list(rows[0]) == list(COLUMNS)
    assert json.loads(f.schema_arrow.metadata[b"fusetrace"]) == {"daemon": ["squashfuse_ll", "-f"]}
