"""Opening captures by path: modes, stdin/stdout, and errors that name the file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from fusetrace.capture.files import host_writer, open_capture, open_output
from fusetrace.errors import CaptureError
from fusetrace.frame import Direction


def test_output_is_private_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "c.pcapng"
    old = os.umask(0)
    try:
        f = open_output(str(path))
    finally:
        os.umask(old)
    w = host_writer(f, {"mountpoint": "/m"})
    w.write(Direction.OUTBOUND, 5, b"\x10\0\0\0\0\0\0\0\x02\0\0\0\0\0\0\0")
    f.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with open_capture(str(path)) as r:
        recs = list(r)
        assert r.info.os.startswith("Linux")
        assert r.info.userappl.startswith("fusetrace ")
    assert len(recs) == 1


def test_an_existing_file_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "old.pcapng"
    path.write_bytes(b"old contents")
    path.chmod(0o644)
    open_output(str(path)).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_size == 0


def test_a_fifo_keeps_its_mode(tmp_path: Path) -> None:
    """-w on a FIFO (or /dev/null, a terminal) writes to it and leaves its mode alone."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo, 0o644)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        f = open_output(str(fifo))
        f.write(b"x")
        f.close()
        assert os.read(reader, 10) == b"x"
    finally:
        os.close(reader)
    assert stat.S_IMODE(fifo.stat().st_mode) == 0o644


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with (
        pytest.raises(CaptureError, match=r"nope\.pcapng: no such file"),
        open_capture(str(tmp_path / "nope.pcapng")),
    ):
        pass


def test_directory_is_not_a_capture(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="is a directory"), open_capture(str(tmp_path)):
        pass


def test_garbage_error_names_the_path(tmp_path: Path) -> None:
    p = tmp_path / "notes.txt"
    p.write_text("just text\n")
    with pytest.raises(CaptureError, match=r"notes.txt: not a pcapng"), open_capture(str(p)):
        pass
