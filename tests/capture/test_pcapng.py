"""pcapng writing and reading: our files, other tools' files, and damaged files."""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from fusetrace.capture.pcapng import (
    LINKTYPE_FUSE,
    PAD_OPTION,
    BlockEncoder,
    CaptureReader,
    CaptureWriter,
    Channel,
    guess_direction,
)
from fusetrace.errors import CaptureError
from fusetrace.frame import Direction, Frame

T0 = 1_700_000_000_000_000_000


def in_header(length: int, opcode: int, unique: int, nodeid: int, order: str = "<") -> bytes:
    return struct.pack(order + "IIQQIIIHH", length, opcode, unique, nodeid, 0, 0, 0, 0, 0)


def out_header(length: int, error: int, unique: int, order: str = "<") -> bytes:
    return struct.pack(order + "IiQ", length, error, unique)


LOOKUP = in_header(46, 1, 4, 1) + b"hello\0"
ENOENT_REPLY = out_header(16, -2, 4)
NOTIFY = out_header(40, 2, 0) + bytes(24)


def build(frames: list[tuple[Direction, bytes]], **kw: object) -> bytes:
    buf = io.BytesIO()
    w = CaptureWriter(buf, {"daemon": ["d"], "mountpoint": "/mnt"}, **kw)  # type: ignore[arg-type]
    for i, (d, data) in enumerate(frames):
        w.write(d, T0 + i * 1000, data, comment="changed" if i == 1 else None)
    return buf.getvalue()


def read_all(data: bytes) -> tuple[CaptureReader, list]:
    r = CaptureReader(io.BytesIO(data))
    return r, list(r)


def test_round_trip_keeps_frames_directions_times_and_comments() -> None:
    data = build([(Direction.INBOUND, LOOKUP), (Direction.OUTBOUND, ENOENT_REPLY)])
    r, recs = read_all(data)
    assert [x.data for x in recs] == [LOOKUP, ENOENT_REPLY]
    assert [x.direction for x in recs] == [Direction.INBOUND, Direction.OUTBOUND]
    assert [x.t_ns for x in recs] == [T0, T0 + 1000]
    assert [x.index for x in recs] == [0, 1]
    assert [x.comment for x in recs] == [None, "changed"]
    assert r.info.meta["fusetrace_capture"] == 1
    assert r.info.meta["mountpoint"] == "/mnt"
    assert r.info.interfaces[0].linktype == LINKTYPE_FUSE
    assert not r.info.truncated


def test_snaplen_cuts_data_and_keeps_original_length() -> None:
    big = in_header(40 + 100, 16, 6, 2) + bytes(100)
    _, recs = read_all(build([(Direction.INBOUND, big)], snaplen=64))
    assert len(recs[0].data) == 64
    assert recs[0].orig_len == 140
    assert recs[0].truncated


def test_big_endian_section_reads_back() -> None:
    frame = in_header(46, 1, 4, 1, ">") + b"hello\0"
    buf = io.BytesIO()
    w = CaptureWriter(buf, {}, byte_order="big")
    w.write(Direction.INBOUND, T0, frame)
    r, recs = read_all(buf.getvalue())
    assert r.info.byte_order == "big"
    assert recs[0].data == frame
    assert recs[0].t_ns == T0


def test_several_channels_and_sections() -> None:
    one = build([(Direction.INBOUND, LOOKUP)], channels=[Channel("/a"), Channel("/b")])
    two = build([(Direction.OUTBOUND, ENOENT_REPLY)])
    _, recs = read_all(one + two)  # what mergecap -a makes: two sections back to back
    assert [x.data for x in recs] == [LOOKUP, ENOENT_REPLY]
    assert [x.index for x in recs] == [0, 1]


def test_cut_mid_block_reads_whole_frames_and_reports_offset() -> None:
    data = build([(Direction.INBOUND, LOOKUP), (Direction.OUTBOUND, ENOENT_REPLY)])
    cut = data[:-10]
    r, recs = read_all(cut)
    assert [x.data for x in recs] == [LOOKUP]
    assert r.info.truncated
    assert r.info.truncated_at is not None and r.info.truncated_at < len(cut)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file"),
        (b"hello, this is not a capture at all\n", "not a pcapng"),
        (b"\x0a\x0d\x0d\x0a\x1c\x00", "truncated"),
    ],
)
def test_unreadable_files_raise_capture_error(data: bytes, message: str) -> None:
    with pytest.raises(CaptureError, match=message):
        read_all(data)


def test_corrupt_block_length_raises() -> None:
    data = bytearray(build([(Direction.INBOUND, LOOKUP)]))
    # the EPB is the last block; break its trailing length copy
    data[-4:] = b"\xff\xff\x00\x00"
    with pytest.raises(CaptureError, match="damaged"):
        read_all(bytes(data))


def test_classic_pcap_with_fuse_link_type() -> None:
    head = struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, LINKTYPE_FUSE)
    rec = struct.pack("<IIII", 1_700_000_000, 5, len(LOOKUP), len(LOOKUP)) + LOOKUP
    r, recs = read_all(head + rec)
    assert r.info.format == "pcap"
    assert recs[0].data == LOOKUP
    assert recs[0].t_ns == 1_700_000_000_000_000_005
    assert recs[0].direction is Direction.INBOUND


def test_classic_pcap_of_another_link_type_is_refused() -> None:
    head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    with pytest.raises(CaptureError, match="link type 1"):
        read_all(head)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (LOOKUP, Direction.INBOUND),
        (ENOENT_REPLY, Direction.OUTBOUND),
        (out_header(16, 0, 8), Direction.OUTBOUND),
        (NOTIFY, Direction.OUTBOUND),
    ],
)
def test_direction_is_guessed_when_a_tool_did_not_record_it(
    frame: bytes, expected: Direction
) -> None:
    assert guess_direction(frame, "<") is expected


tools = pytest.mark.skipif(
    not (shutil.which("capinfos") and shutil.which("tshark")), reason="needs tshark"
)


@tools
def test_capinfos_and_tshark_accept_our_files(tmp_path: Path) -> None:
    path = tmp_path / "t.pcapng"
    frames = [(Direction.INBOUND, LOOKUP), (Direction.OUTBOUND, ENOENT_REPLY)] * 3
    path.write_bytes(build(frames))
    info = subprocess.run(
        ["capinfos", "-c", "-M", str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert "Number of packets:   6" in info
    out = subprocess.run(
        ["tshark", "-r", str(path), "-T", "fields", "-e", "frame.len", "-e", "frame.comment"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    rows = [line.split("\t") for line in out if line]
    assert [int(r[0]) for r in rows] == [len(LOOKUP), len(ENOENT_REPLY)] * 3
    assert rows[1][1] == "changed"


@tools
def test_files_rewritten_by_editcap_read_back(tmp_path: Path) -> None:
    ours = tmp_path / "ours.pcapng"
    ours.write_bytes(build([(Direction.INBOUND, LOOKUP), (Direction.OUTBOUND, ENOENT_REPLY)]))
    theirs = tmp_path / "theirs.pcapng"
    subprocess.run(["editcap", str(ours), str(theirs)], check=True, capture_output=True)
    r, recs = read_all(theirs.read_bytes())
    assert [x.data for x in recs] == [LOOKUP, ENOENT_REPLY]
    assert [x.direction for x in recs] == [Direction.INBOUND, Direction.OUTBOUND]
    assert json.loads(json.dumps(r.info.meta)).get("mountpoint") in ("/mnt", None)
    pcap = tmp_path / "theirs.pcap"
    subprocess.run(["editcap", "-F", "pcap", str(ours), str(pcap)], check=True, capture_output=True)
    r, recs = read_all(pcap.read_bytes())
    assert r.info.format == "pcap"
    assert [x.data for x in recs] == [LOOKUP, ENOENT_REPLY]
    assert [x.direction for x in recs] == [Direction.INBOUND, Direction.OUTBOUND]


def test_block_parts_are_the_written_block_and_keep_the_data_uncopied() -> None:
    frame = bytearray(LOOKUP + b"xyz")  # 49 bytes: the block pads to 52
    view = memoryview(frame)
    buf = io.BytesIO()
    w = CaptureWriter(buf, {})
    start = len(buf.getvalue())
    head, data, tail = w.block(Direction.OUTBOUND, T0, view, comment="changed")
    assert data is view
    w.write(Direction.OUTBOUND, T0, bytes(frame), comment="changed")
    assert bytes(head) + bytes(data) + bytes(tail) == buf.getvalue()[start:]
    assert w.frames == 2
    _r, recs = read_all(buf.getvalue() + head + bytes(data) + tail)
    assert [x.data for x in recs] == [bytes(frame)] * 2
    assert recs[0].comment == "changed" and recs[0].direction is Direction.OUTBOUND


def test_block_with_snaplen_cuts_a_view_without_copying() -> None:
    frame = bytearray(4096)
    buf = io.BytesIO()
    w = CaptureWriter(buf, {}, snaplen=100)
    head, data, tail = w.block(Direction.INBOUND, T0, memoryview(frame))
    assert isinstance(data, memoryview) and data.obj is frame and len(data) == 100
    _r, (rec,) = read_all(buf.getvalue() + head + bytes(data) + tail)
    assert rec.orig_len == 4096 and len(rec.data) == 100


@pytest.mark.parametrize("order", ["little", "big"])
def test_results_of_daemon_frames_read_back(order: str) -> None:
    """The kernel's answer to each daemon frame (0 taken, errno refused) is an option on its
    block; frames written without one read back as unknown (None)."""
    o = "<" if order == "little" else ">"
    buf = io.BytesIO()
    w = CaptureWriter(buf, {}, byte_order=order)
    reply = out_header(16, -2, 4, o)
    w.write(Direction.INBOUND, T0, in_header(46, 1, 4, 1, o) + b"hello\0")
    w.write(Direction.OUTBOUND, T0 + 1, reply, result=0)
    w.write(Direction.OUTBOUND, T0 + 2, reply, result=2)
    w.write(Direction.OUTBOUND, T0 + 3, reply, result=22, comment="changed")
    w.write(Direction.OUTBOUND, T0 + 4, reply)
    _, recs = read_all(buf.getvalue())
    assert [x.result for x in recs] == [None, 0, 2, 22, None]
    assert [x.comment for x in recs] == [None, None, None, "changed", None]
    assert [x.data for x in recs[1:]] == [reply] * 4


@pytest.mark.parametrize("result", [None, 0])
def test_a_damaged_block_is_refused_whatever_its_options(result: int | None) -> None:
    """The trailing length is checked on blocks of either option layout our writer makes
    (epb_flags alone, or with the kernel's answer)."""
    buf = io.BytesIO()
    w = CaptureWriter(buf, {})
    w.write(Direction.OUTBOUND, T0, ENOENT_REPLY, result=result)
    data = bytearray(buf.getvalue())
    data[-4:] = struct.pack("<I", len(data) + 4)
    with pytest.raises(CaptureError, match="damaged"):
        read_all(bytes(data))


@pytest.mark.parametrize("result", [None, 0])
def test_a_block_without_direction_bits_has_its_direction_guessed(result: int | None) -> None:
    buf = io.BytesIO()
    w = CaptureWriter(buf, {})
    start = len(buf.getvalue())
    w.write(Direction.OUTBOUND, T0, LOOKUP, result=result)
    data = bytearray(buf.getvalue())
    flags_at = start + 28 + len(LOOKUP) + 2 + 4  # after the data, its padding, code and length
    assert data[flags_at] == int(Direction.OUTBOUND)
    data[flags_at] = 0
    _, (rec,) = read_all(bytes(data))
    assert rec.direction is Direction.INBOUND and rec.result == result


@tools
def test_tshark_reads_files_with_results(tmp_path: Path) -> None:
    path = tmp_path / "r.pcapng"
    buf = io.BytesIO()
    w = CaptureWriter(buf, {})
    for i in range(3):
        w.write(Direction.INBOUND, T0 + i, LOOKUP)
        w.write(Direction.OUTBOUND, T0 + i, ENOENT_REPLY, result=i and 2, comment=i * "c" or None)
    path.write_bytes(buf.getvalue())
    out = subprocess.run(
        ["tshark", "-r", str(path), "-T", "fields", "-e", "frame.len", "-e", "frame.comment"],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [line.split("\t") for line in out.stdout.splitlines()]
    assert [int(r[0]) for r in rows] == [len(LOOKUP), len(ENOENT_REPLY)] * 3
    assert [r[1] for r in rows] == ["", "", "", "c", "", "cc"]
    assert "warning" not in out.stderr.lower() and "error" not in out.stderr.lower()


@pytest.mark.parametrize("byte_order", ["little", "big"])
@pytest.mark.parametrize("snaplen", [None, 20])
def test_encoded_blocks_read_back_as_the_frames_they_encode(
    byte_order: str, snaplen: int | None
) -> None:
    """The sans-IO encoder, straight into the reader: headers, packets of every length
    (the 4-byte padding of the data), with a comment, a result, on a second channel, and
    blocks grown by a padding option, whole or in parts: the reader gets the frames back and
    skips the padding."""
    enc = BlockEncoder(byte_order, snaplen)
    parts: list[bytes | memoryview] = [
        enc.section({"daemon": ["d"]}, userappl="fusetrace test", os_name="Linux"),
        enc.interface(Channel("/mnt")),
        enc.interface(Channel("/mnt", name="fuse1")),
    ]
    want = []
    for i in range(24):
        direction = (Direction.INBOUND, Direction.OUTBOUND)[i % 2]
        data = bytes(range(i % 7, 16 + i))
        comment = "changed" if i % 5 == 0 else None
        result = (None, 0, 2)[i % 3] if direction is Direction.OUTBOUND else None
        block = enc.packet(
            direction, T0 + i, memoryview(data), channel=i % 3 // 2, comment=comment,
            result=result,
        )  # fmt: skip
        assert isinstance(block[1], memoryview) and block[1].obj is data  # not copied
        if i % 4 == 1:
            block = enc.padded(block, 4 * (i % 3 + 1))
        elif i % 4 == 2:
            block = enc.padded((b"".join(block),), 12)
        parts += block
        kept = data[:snaplen] if snaplen else data
        want.append(Frame(i, T0 + i, direction, kept, len(data), i % 3 // 2, comment, result))
    assert enc.frames == 24
    raw = b"".join(parts)
    r, got = read_all(raw)
    assert got == want
    assert r.info.meta["daemon"] == ["d"] and r.info.byte_order == byte_order
    assert [i.name for i in r.info.interfaces] == ["fuse", "fuse1"]
    order = "<" if byte_order == "little" else ">"
    assert raw.count(struct.pack(order + "H", PAD_OPTION)) >= 12
    # the last block of a run, found from its trailing length
    run = b"".join(b"".join(enc.packet(Direction.INBOUND, T0, bytes(n))) for n in (5, 40, 9))
    last = b"".join(enc.packet(Direction.INBOUND, T0, bytes(9)))
    assert enc.last_block(run) == len(run) - len(last) and run.endswith(last)


def test_a_padded_block_is_the_block_grown_by_its_padding_option() -> None:
    enc = BlockEncoder()
    head, data, tail = enc.packet(Direction.OUTBOUND, T0, b"x" * 18, result=0, comment="c")
    grown = enc.padded((head, data, tail), 8)
    assert grown[1] is data
    whole, padded = b"".join((head, data, tail)), b"".join(grown)
    assert len(padded) == len(whole) + 8
    assert (
        struct.unpack_from("<I", padded, 4)[0] == len(padded) == struct.unpack("<I", padded[-4:])[0]
    )
    # the padding option sits before the end of options, the rest is unchanged
    assert padded[8:-16] == whole[8:-8] and padded[-16:-8] == struct.pack(
        "<HH", PAD_OPTION, 4
    ) + bytes(4)
    assert b"".join(enc.padded((whole,), 8)) == padded
    with pytest.raises(ValueError):
        enc.padded((whole,), 6)
