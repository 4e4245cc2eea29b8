"""Rendering decoded frames: summary lines, verbose fields, JSON objects, statistics."""

from __future__ import annotations

import json

from fusetrace.frame import Direction, Frame
from fusetrace.protocol.abi import S_IFREG, NotifyCode, Opcode
from fusetrace.protocol.encode import encode_notify, encode_reply, encode_request
from fusetrace.protocol.stream import DecodedFrame, FrameDecoder
from fusetrace.report.frames import (
    Stats,
    errno_name,
    json_line,
    json_object,
    summary_line,
    verbose_lines,
)
from fusetrace.report.units import latency

K, D = Direction.INBOUND, Direction.OUTBOUND
T0 = 1_700_000_000_000_000_000


def frames(*items: tuple[Direction, bytes, int], lazy: bool = False) -> list[DecodedFrame]:
    dec = FrameDecoder(lazy=lazy)
    return [dec.feed(Frame(i, T0 + t, d, b, len(b))) for i, (d, b, t) in enumerate(items)]


def lookup_pair(error: int = 0) -> list[DecodedFrame]:
    body = {"nodeid": 5, "generation": 2, "attr": {"mode": S_IFREG | 0o640, "size": 12}}
    return frames(
        (K, encode_request(Opcode.LOOKUP, {"name": "a b"}, unique=4, nodeid=1), 1_000),
        (D, encode_reply(Opcode.LOOKUP, body, unique=4, error=error), 78_000),
    )


def test_errno_names() -> None:
    assert errno_name(-2) == "-ENOENT" and errno_name(-9999) == "-9999"


def test_summary_request_and_reply() -> None:
    req, rep = lookup_pair()
    # the frame number first, as tshark prints it (from 1, right-aligned)
    assert summary_line(req, T0) == '    1 0.000001 K>D 4 LOOKUP nodeid=1 "a b"'
    assert summary_line(rep, T0) == (
        "    2 0.000078 D>K 4 LOOKUP ok nodeid=5 gen=2 reg 0640 size=12 (77us)"
    )


def test_summary_error_reply() -> None:
    _, rep = lookup_pair(error=-2)
    assert summary_line(rep, T0) == "    2 0.000078 D>K 4 LOOKUP -ENOENT (77us)"


def test_summary_io_and_problems() -> None:
    read = encode_request(Opcode.READ, {"fh": 3, "offset": 4096, "size": 512}, unique=6,
                          nodeid=7) + b"!"  # fmt: skip
    read = len(read).to_bytes(4, "little") + read[4:]
    (f,) = frames((K, read, 0))
    line = summary_line(f, T0)
    assert line.startswith(
        "    1 0.000000 K>D 6 READ nodeid=7 fh=3 offset=4096 size=512 [trailing:"
    )


def test_summary_notify_and_undecodable() -> None:
    n, bad = frames((D, encode_notify(NotifyCode.INVAL_ENTRY, {"parent": 1, "name": "x"}), 5),
                    (K, b"\x00" * 8, 6))  # fmt: skip
    assert summary_line(n, T0) == '    1 0.000000 D>K 0 NOTIFY_INVAL_ENTRY parent=1 "x"'
    assert "undecodable" in summary_line(bad, T0)


def test_verbose_lists_every_field() -> None:
    _, rep = lookup_pair()
    text = "\n".join(verbose_lines(rep))
    assert "request: frame 1" in text
    for field in ("nodeid: 5", "generation: 2", "attr:", "mode: 0o100640 (reg 0640)",
                  "blksize: 0"):  # fmt: skip
        assert field in text


def test_json_object_keys_and_bytes() -> None:
    req, rep = frames(
        (K, encode_request(Opcode.READ, {"fh": 3, "size": 100}, unique=4, nodeid=7), 0),
        (D, encode_reply(Opcode.READ, {"data": b"\x01" * 100}, unique=4), 10),
    )
    obj = json.loads(json_line(rep, T0))
    for key in ("frame", "dir", "unique", "opcode", "nodeid", "uid", "gid", "pid", "error",
                "request_frame", "latency_ns", "body", "problems"):  # fmt: skip
        assert key in obj
    assert obj["frame"] == 2 and obj["request_frame"] == 1 and obj["nodeid"] == 7
    assert obj["opcode"] == "READ" and obj["error"] == 0 and obj["latency_ns"] == 10
    assert obj["body"]["data"] == {"len": 100, "hex": "01" * 64, "cut": True}
    assert json_object(req, T0)["body"]["fh"] == 3


def test_json_init_flag_names() -> None:
    (f,) = frames((K, encode_request(Opcode.INIT, {"major": 7, "minor": 45, "flags": 3},
                                     unique=2), 0))  # fmt: skip
    assert json_object(f, T0)["body"]["flag_names"] == ["ASYNC_READ", "POSIX_LOCKS"]


def test_stats() -> None:
    s = Stats()
    for f in lookup_pair() + lookup_pair(error=-2):
        s.feed(f)
    rows = s.to_dict()["opcodes"]
    assert rows == [{"opcode": "LOOKUP", "count": 2, "replies": 2, "errors": 1,
                     "errnos": {"ENOENT": 1}, "p50_ns": 77000, "p90_ns": 77000,
                     "p99_ns": 77000, "max_ns": 77000}]  # fmt: skip
    table = s.render_plain()
    assert table.splitlines()[0].split() == ["opcode", "count", "replies", "errors", "p50",
                                             "p90", "p99", "max", "errnos"]  # fmt: skip
    assert table.splitlines()[1].split()[:4] == ["LOOKUP", "2", "2", "1"]
    assert table.splitlines()[1].endswith("  ENOENT 1")


def test_stats_name_each_errno_per_opcode() -> None:
    s = Stats()
    probe = {"size": 0, "name": "security.selinux"}
    xattr = [
        frames(
            (K, encode_request(Opcode.GETXATTR, probe, unique=4, nodeid=1), 0),
            (D, encode_reply(Opcode.GETXATTR, {}, unique=4, error=err), 5),
        )
        for err in (-61, -61, -61, -2)
    ]
    for pair in xattr:
        for f in pair:
            s.feed(f)
    (row,) = s.rows()
    assert row["errors"] == 4
    assert row["errnos"] == {"ENODATA": 3, "ENOENT": 1}
    assert s.render_plain().splitlines()[1].endswith("ENODATA 3, ENOENT 1")


def test_json_carries_who_asked() -> None:
    req, rep = frames(
        (K, encode_request(Opcode.GETATTR, {}, unique=4, nodeid=1, uid=1000, gid=100,
                           pid=4242), 0),
        (D, encode_reply(Opcode.GETATTR, {"attr": {}}, unique=4), 5),
    )  # fmt: skip
    for f in (req, rep):
        obj = json_object(f, T0)
        assert (obj["uid"], obj["gid"], obj["pid"]) == (1000, 100, 4242)
    (n,) = frames((D, encode_notify(NotifyCode.INVAL_ENTRY, {"parent": 1, "name": "x"}), 5))
    assert json_object(n, T0)["pid"] is None


def test_names_that_are_not_utf8_stay_printable_and_valid_json() -> None:
    name = b"caf\xc3\xa9-\xff".decode("utf-8", "surrogateescape")
    (f,) = frames((K, encode_request(Opcode.LOOKUP, {"name": name}, unique=4, nodeid=1), 0))
    line = summary_line(f, T0)
    assert line.endswith('"café-\\\\xff"')
    line.encode("utf-8")  # printable on any terminal
    text = json_line(f, T0)
    assert text.isascii()
    assert json.loads(text)["body"]["name"].encode("utf-8", "surrogateescape") == (
        b"caf\xc3\xa9-\xff"
    )


def test_stats_rich_table() -> None:
    from rich.console import Console

    s = Stats()
    for f in lookup_pair():
        s.feed(f)
    console = Console(width=100, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(s.render_rich())
    text = console.export_text()
    assert "LOOKUP" in text and "77us" in text and "2 frames" in text


def test_verbose_lists_of_names() -> None:
    _, rep = frames(
        (K, encode_request(Opcode.LISTXATTR, {"size": 100}, unique=4, nodeid=1), 0),
        (D, encode_reply(Opcode.LISTXATTR, {"names": ["user.a", "user.b"]}, unique=4), 5),
    )
    lines = verbose_lines(rep)
    assert '      [0] "user.a"' in lines and '      [1] "user.b"' in lines


def test_json_line_is_the_json_object_encoded() -> None:
    """json_line writes its fixed keys itself; the text must stay what the encoder makes of
    json_object, on every kind of frame (and on the shipped real captures)."""
    from pathlib import Path

    from fusetrace.capture.files import open_capture

    def hex_of(v: bytes) -> dict[str, object]:
        cut = {"cut": True} if len(v) > 64 else {}
        return {"len": len(v), "hex": v[:64].hex(), **cut}

    encoder = json.JSONEncoder(separators=(",", ":"), default=hex_of)
    name = encode_request(Opcode.LOOKUP, {"name": 'caf\u00e9 "q"'}, unique=8, nodeid=1)
    refused = Frame(9, T0 + 9, D, encode_reply(Opcode.LOOKUP, unique=8, error=-2), 16, 0,
                     None, 2)  # fmt: skip
    odd = encode_request(Opcode.READ, {"fh": 3, "size": 1}, unique=10, nodeid=7) + b"!!"
    odd = len(odd).to_bytes(4, "little") + odd[4:]
    made = [
        *lookup_pair(),
        *lookup_pair(error=-2),
        *frames(
            (K, encode_request(Opcode.INIT, {"major": 7, "minor": 45, "flags": 3}, unique=2), 0),
            (D, encode_notify(NotifyCode.INVAL_ENTRY, {"parent": 1, "name": "x"}), 5),
            (K, b"\x00" * 8, 6),
            (K, name, 7),
            (K, odd, 8),
            (D, encode_reply(Opcode.READ, {"data": b"\x01" * 100}, unique=10), 9),
        ),
        FrameDecoder().feed(refused),
    ]
    root = Path(__file__).resolve().parents[2] / "captures"
    for path in sorted(root.glob("*.pcapng")):
        with open_capture(str(path)) as reader:
            dec = FrameDecoder(reader.info.byte_order)
            made.extend(dec.feed(r) for r in reader)
    assert len(made) > 1000
    kinds = set()
    for f in made:
        kinds.add(f.decoded.kind if f.decoded is not None else None)
        assert json_line(f, T0) == encoder.encode(json_object(f, T0))
    assert kinds >= {"request", "reply", "notify", None}


def test_summary_refused_and_channel() -> None:
    """A frame the kernel refused ends with the errno name; a second /dev/fuse fd shows."""
    dec = FrameDecoder()
    req = encode_request(Opcode.LOOKUP, {"name": "a"}, unique=4, nodeid=1)
    rep = encode_reply(Opcode.LOOKUP, unique=4, error=-2)
    a = dec.feed(Frame(0, T0 + 1_000, K, req, len(req), 1))
    b = dec.feed(Frame(11_999, T0 + 2_500_000, D, rep, len(rep), 1, None, 2))
    assert summary_line(a, T0) == '    1 0.000001 K>D ch1 4 LOOKUP nodeid=1 "a"'
    assert summary_line(b, T0) == "12000 0.002500 D>K ch1 4 LOOKUP -ENOENT (2499us) refused ENOENT"


def _exchanges() -> list[tuple[Direction, bytes, int]]:
    attr = {"ino": 9, "size": 77, "mode": S_IFREG | 0o600}
    entries = [
        {"nodeid": 10 + i, "ino": 10 + i, "off": i + 1, "type": 8, "name": f"f{i}", "attr": attr}
        for i in range(6)
    ]
    o = Opcode
    pairs = [
        (encode_request(o.LOOKUP, {"name": "x"}, unique=2, nodeid=1),
         encode_reply(o.LOOKUP, {"nodeid": 9, "generation": 3, "attr": attr}, unique=2)),
        (encode_request(o.LOOKUP, {"name": "y"}, unique=4, nodeid=1),
         encode_reply(o.LOOKUP, {"nodeid": 0}, unique=4)),
        (encode_request(o.GETATTR, {"getattr_flags": 1, "fh": 5}, unique=6, nodeid=9),
         encode_reply(o.GETATTR, {"attr": attr}, unique=6)),
        (encode_request(o.OPEN, {"flags": 0o100002}, unique=8, nodeid=9),
         encode_reply(o.OPEN, {"fh": 5, "open_flags": 3}, unique=8)),
        (encode_request(o.READ, {"fh": 5, "offset": 1 << 40, "size": 4096}, unique=10, nodeid=9),
         encode_reply(o.READ, {"data": b"abc"}, unique=10)),
        (encode_request(o.WRITE, {"fh": 5, "offset": 8, "data": b"zz"}, unique=12, nodeid=9),
         encode_reply(o.WRITE, {"size": 2}, unique=12)),
        (encode_request(o.READDIRPLUS, {"fh": 6, "size": 4096}, unique=14, nodeid=1),
         encode_reply(o.READDIRPLUS, {"entries": entries}, unique=14)),
        (encode_request(o.READDIR, {"fh": 6, "size": 4096}, unique=16, nodeid=1),
         encode_reply(o.READDIR, {"entries": entries[:2]}, unique=16)),
        (encode_request(o.RELEASE, {"fh": 5}, unique=18, nodeid=9),
         encode_reply(o.RELEASE, unique=18)),
        (encode_request(o.ACCESS, {"mask": 4}, unique=20, nodeid=9),
         encode_reply(o.ACCESS, unique=20)),
    ]  # fmt: skip
    out: list[tuple[Direction, bytes, int]] = []
    for i, (req, rep) in enumerate(pairs):
        out += [(K, req, i * 1000), (D, rep, i * 1000 + 500)]
    out.append((K, encode_request(o.FORGET, {"nlookup": 2}, unique=22, nodeid=9), 99_000))
    return out


def test_summary_of_an_unbuilt_body_reads_the_same_fields() -> None:
    # the fast decoder leaves well-formed bodies unbuilt; the summary line reads their few
    # fields from the frame's bytes and says what it says of the built body
    lazy = frames(*_exchanges(), lazy=True)
    built = frames(*_exchanges())
    assert sum(f.decoded.lazy is not None for f in lazy if f.decoded) >= 12
    assert all(f.decoded is not None and f.decoded.lazy is None for f in built)
    lines = [summary_line(f, T0) for f in lazy]
    assert lines == [summary_line(f, T0) for f in built]
    # the texts it kept by value read the same the second time
    assert [summary_line(f, T0) for f in lazy] == lines
    assert "nodeid=9 gen=3 reg 0600 size=77" in lines[1]
    assert lines[3].endswith("ok negative entry (0.5us)")
    assert "GETATTR nodeid=9 fh=5" in lines[4] and "reg 0600 size=77 ino=9" in lines[5]
    assert 'ok 6 entries "f0" "f1" "f2" "f3" ...' in lines[13]
    assert "offset=1099511627776 size=4096" in lines[8]


def test_summary_latencies_read_as_units_latency_says() -> None:
    # the summary line keeps the latency texts it made (by the microsecond from 10 us to
    # 10 ms, by the nanosecond elsewhere): each is the text units.latency gives
    lats = [0, 450, 5_050, 9_999, 10_000, 10_999, 77_000, 9_999_999, 10_000_000, 12_345_678]
    items = []
    for i, lat in enumerate(lats * 2):
        unique = 2 * i + 2
        t = i * 100_000_000
        nodeid = i % 3  # node 0 is not shown
        request = encode_request(Opcode.FLUSH, {"fh": 1}, unique=unique, nodeid=nodeid)
        items.append((K, request, t))
        items.append((D, encode_reply(Opcode.FLUSH, unique=unique), t + lat))
    lines = [summary_line(f, T0) for f in frames(*items, lazy=True)]
    assert [line.rsplit(" ", 1)[1] for line in lines[1::2]] == [f"({latency(n)})" for n in lats * 2]
    nodes = [line.split(" FLUSH", 1)[1] for line in lines[::2]]
    assert nodes == [(f" nodeid={i % 3}" if i % 3 else "") + " fh=1" for i in range(len(nodes))]
