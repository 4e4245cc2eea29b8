"""`decode --format parquet --output`: one row per frame, and the README's DuckDB query runs."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from fusetrace.capture.files import open_capture
from tests.support.mount import ROOT, fusetrace_cmd, fusetrace_env

pq = pytest.importorskip("pyarrow.parquet")
duckdb = pytest.importorskip("duckdb")

CAPTURES = sorted((ROOT / "captures").glob("*.pcapng"))


def decode(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        fusetrace_cmd("decode", *args),
        capture_output=True,
        text=True,
        env=fusetrace_env(),
        check=False,
    )


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("frames")
    for cap in CAPTURES:
        r = decode("--format", "parquet", "--output", str(out / f"{cap.stem}.parquet"), str(cap))
        assert r.returncode == 0, r.stderr
    return out


@pytest.mark.parametrize("cap", CAPTURES, ids=lambda p: p.stem)
def test_one_row_per_frame_with_the_jsonl_fields(cap: Path, frames_dir: Path) -> None:
    with open_capture(str(cap)) as reader:
        count = sum(1 for _ in reader)
    table = pq.read_table(frames_dir / f"{cap.stem}.parquet")
    assert table.num_rows == count
    jsonl = decode("--format", "jsonl", str(cap))
    first = [json.loads(line) for line in jsonl.stdout.splitlines()[:50]]
    rows = table.slice(0, 50).to_pylist()
    for obj, row in zip(first, rows, strict=True):
        for key in (
            "frame",
            "t_ns",
            "dir",
            "kind",
            "unique",
            "opcode",
            "nodeid",
            "error",
            "errno",
            "request_frame",
            "latency_ns",
            "problems",
        ):
            assert row[key] == obj[key], key
        assert json.loads(row["body"]) == obj["body"]
    meta = json.loads(table.schema.metadata[b"fusetrace"])
    assert row["daemon"] == " ".join(meta["daemon"])


def test_the_readme_duckdb_query_runs(frames_dir: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"<<'SQL'\n(.*?)\nSQL\n", readme, re.S)
    assert m, "the README has no DuckDB example"
    sql = m.group(1).replace("frames/*.parquet", f"{frames_dir}/*.parquet")
    rows = duckdb.sql(sql).fetchall()
    got = {(d, op): (n, p99) for d, op, n, p99 in rows}
    daemons = set()
    for cap in CAPTURES:
        with open_capture(str(cap)) as reader:
            daemons.add(reader.info.meta["daemon"][0])
    assert {d for d, _ in got} == daemons
    # the counts agree with decode --stats of each capture
    for cap in CAPTURES:
        with open_capture(str(cap)) as reader:
            daemon = reader.info.meta["daemon"][0]
        stats = json.loads(decode("--stats", "--format", "json", str(cap)).stdout)
        for row in stats["opcodes"]:
            if row["p99_ns"] is None or row["opcode"] == "INTERRUPT":
                continue
            n, p99 = got[(daemon, row["opcode"])]
            assert n == row["replies"], (daemon, row["opcode"])
            assert 0 < p99 <= row["max_ns"] / 1000


def test_parquet_needs_w_and_w_needs_parquet(tmp_path: Path) -> None:
    cap = str(CAPTURES[0])
    assert decode("--format", "parquet", cap).returncode == 2
    assert decode("--output", str(tmp_path / "x.parquet"), cap).returncode == 2
    assert (
        decode("--format", "parquet", "--stats", "--output", str(tmp_path / "x"), cap).returncode
        == 2
    )
