"""The shipped Wireshark dissector (fusetrace/data/fuse.lua) and `fusetrace wireshark-plugin`.

The dissector tests build a capture with fusetrace's own CaptureWriter, run the installed
tshark over it with the shipped fuse.lua, and compare what tshark decoded with the frames
the capture holds (read back with fusetrace's CaptureReader) and with what they were built
from. They are skipped when tshark is not installed.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fusetrace.capture.pcapng import CaptureReader, CaptureWriter
from fusetrace.frame import Direction
from fusetrace.protocol.encode import (
    encode_interrupt_reply,
    encode_notify,
    encode_reply,
    encode_request,
)
from fusetrace.protocol.session import Negotiated

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "fusetrace" / "data" / "fuse.lua"
TSHARK = shutil.which("tshark")

needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")

# opcodes and notify codes used below (include/uapi/linux/fuse.h)
LOOKUP, FORGET, GETATTR, OPEN, READ, RELEASE = 1, 2, 3, 14, 15, 18
INIT, OPENDIR, INTERRUPT, BATCH_FORGET, READDIRPLUS = 26, 27, 36, 42, 44
NOTIFY_INVAL_ENTRY = 3
ENOENT, EINTR, EAGAIN = 2, 4, 11
S_IFREG, S_IFDIR = 0o100000, 0o040000


@dataclass
class Frame:
    """One frame of the test session and what the dissector must say about it."""

    direction: Direction
    data: bytes
    opcode: int | None  # request opcode; for a reply the opcode of its request
    unique: int
    nodeid: int | None = None  # requests only
    error: int | None = None  # replies only
    notify: int | None = None  # notifications only
    names: list[str] = field(default_factory=list)


class Session:
    """Builds a realistic FUSE exchange with fusetrace's encoders, in either byte order."""

    def __init__(self, byte_order: str = "little") -> None:
        self.neg = Negotiated.default(byte_order)
        self.frames: list[Frame] = []
        self._ops: dict[int, int] = {}

    def request(self, opcode: int, unique: int, nodeid: int, body: dict, **kw: Any) -> None:
        data = encode_request(opcode, body, unique=unique, nodeid=nodeid, negotiated=self.neg)
        self._ops[unique] = opcode
        self.frames.append(Frame(Direction.INBOUND, data, opcode, unique, nodeid=nodeid, **kw))

    def reply(self, unique: int, body: dict | None = None, error: int = 0, **kw: Any) -> None:
        opcode = self._ops[unique]
        if opcode == INTERRUPT:
            data = encode_interrupt_reply(unique, -error, self.neg)
        else:
            data = encode_reply(opcode, body, unique=unique, error=-error, negotiated=self.neg)
        self.frames.append(Frame(Direction.OUTBOUND, data, opcode, unique, error=-error, **kw))

    def notify(self, code: int, body: dict, **kw: Any) -> None:
        data = encode_notify(code, body, negotiated=self.neg)
        self.frames.append(Frame(Direction.OUTBOUND, data, None, 0, notify=code, **kw))


def attr(ino: int, mode: int, size: int) -> dict[str, int]:
    return {
        "ino": ino, "size": size, "blocks": (size + 511) // 512, "atime": 1_700_000_000,
        "mtime": 1_700_000_001, "ctime": 1_700_000_002, "mode": mode, "nlink": 1,
        "uid": 1000, "gid": 1000, "blksize": 4096,
    }  # fmt: skip


def entry(nodeid: int, mode: int, size: int) -> dict[str, Any]:
    return {"nodeid": nodeid, "generation": 1, "entry_valid": 1, "attr_valid": 1,
            "attr": attr(nodeid, mode, size)}  # fmt: skip


def direntplus(nodeid: int, name: str, off: int, mode: int) -> dict[str, Any]:
    return dict(entry(nodeid, mode, 0), ino=nodeid, off=off, type=mode >> 12, name=name)


def build_session(byte_order: str = "little") -> Session:
    s = Session(byte_order)
    s.request(INIT, 2, 0, {"major": 7, "minor": 45, "max_readahead": 131072,
                           "flags": 0x7FFFFFFF, "flags2": 0x7FF})  # fmt: skip
    s.reply(2, {"major": 7, "minor": 45, "max_readahead": 131072, "flags": 0x4000F3FB,
                "max_background": 12, "congestion_threshold": 9, "max_write": 131072,
                "time_gran": 1, "max_pages": 32})  # fmt: skip
    s.request(LOOKUP, 4, 1, {"name": "hello.txt"}, names=["hello.txt"])
    s.reply(4, entry(5, S_IFREG | 0o644, 12))
    s.request(GETATTR, 6, 5, {})
    s.reply(6, {"attr_valid": 1, "attr": attr(5, S_IFREG | 0o644, 12)})
    s.request(OPEN, 8, 5, {"flags": os.O_RDONLY})
    s.reply(8, {"fh": 0x10})
    s.request(READ, 10, 5, {"fh": 0x10, "offset": 0, "size": 4096, "flags": 0x8000})
    s.reply(10, {"data": b"hello world\n"})
    s.request(LOOKUP, 12, 1, {"name": "missing"}, names=["missing"])
    s.reply(12, error=ENOENT)
    s.request(OPENDIR, 14, 1, {"flags": os.O_RDONLY | os.O_DIRECTORY})
    s.reply(14, {"fh": 0x20})
    s.request(READDIRPLUS, 16, 1, {"fh": 0x20, "offset": 0, "size": 4096})
    listing = [
        direntplus(1, ".", 1, S_IFDIR | 0o755),
        direntplus(0, "..", 2, S_IFDIR | 0o755),
        direntplus(5, "hello.txt", 3, S_IFREG | 0o644),
    ]
    s.reply(16, {"entries": listing}, names=[".", "..", "hello.txt"])
    s.request(READ, 18, 5, {"fh": 0x10, "offset": 4096, "size": 4096, "flags": 0x8000})
    s.request(INTERRUPT, 19, 0, {"unique": 18})
    s.reply(19, error=EAGAIN)  # the interrupt arrived before the daemon saw the READ
    s.reply(18, error=EINTR)
    s.request(RELEASE, 20, 5, {"fh": 0x10})
    s.reply(20)
    s.notify(NOTIFY_INVAL_ENTRY, {"parent": 1, "name": "hello.txt"}, names=["hello.txt"])
    s.request(FORGET, 22, 5, {"nlookup": 2})
    s.request(BATCH_FORGET, 24, 0, {"forgets": [{"nodeid": 6, "nlookup": 1},
                                                {"nodeid": 7, "nlookup": 3}]})  # fmt: skip
    return s


def write_capture(path: Path, session: Session, *, byte_order: str = "little") -> None:
    with path.open("wb") as f:
        w = CaptureWriter(f, {"daemon": ["testfs"], "mountpoint": "/mnt"}, byte_order=byte_order)
        t = 1_700_000_000_000_000_000
        for i, fr in enumerate(session.frames):
            w.write(fr.direction, t + i * 250_000, fr.data)


def write_classic_pcap(path: Path, session: Session) -> None:
    """A classic pcap file (no direction information), link type 147."""
    out = io.BytesIO()
    out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 147))
    for i, fr in enumerate(session.frames):
        out.write(struct.pack("<IIII", 1_700_000_000, i, len(fr.data), len(fr.data)))
        out.write(fr.data)
    path.write_bytes(out.getvalue())


def run_tshark(capture: Path, *args: str, two_pass: bool = False) -> tuple[str, str]:
    """Run tshark with the shipped dissector; returns stdout and stderr."""
    assert TSHARK is not None
    cmd = [TSHARK, "-n", "-X", f"lua_script:{PLUGIN}", "-r", str(capture)]
    if two_pass:
        cmd.append("-2")
    env = dict(os.environ, HOME=str(capture.parent))  # no personal plugins or preferences
    proc = subprocess.run(cmd + list(args), capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, proc.stderr


def tshark(capture: Path, *args: str, two_pass: bool = False) -> tuple[list[list[str]], str]:
    """Run tshark with -T fields arguments; returns the rows and stderr."""
    stdout, stderr = run_tshark(capture, *args, two_pass=two_pass)
    return [line.split("\t") for line in stdout.splitlines()], stderr


def clean_stderr(stderr: str) -> list[str]:
    """stderr lines other than tshark's own warning about running as root."""
    return [
        line
        for line in stderr.splitlines()
        if line.strip() and not line.startswith("Running as user")
    ]


FIELDS = ["frame.number", "fuse.type", "fuse.opcode", "fuse.unique", "fuse.nodeid", "fuse.error",
          "fuse.notify_code"]  # fmt: skip


def fields_args(names: list[str]) -> list[str]:
    args = ["-T", "fields"]
    for name in names:
        args += ["-e", name]
    return args


def opt_int(text: str) -> int | None:
    return int(text) if text != "" else None


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Session]:
    path = tmp_path_factory.mktemp("ws") / "session.pcapng"
    session = build_session()
    write_capture(path, session)
    return path, session


@needs_tshark
def test_plugin_loads_without_errors(capture: tuple[Path, Session]) -> None:
    path, _ = capture
    stdout, stderr = run_tshark(path, "-V")
    assert clean_stderr(stderr) == []
    assert "Lua Error" not in stdout
    assert "Malformed" not in stdout
    assert stdout.count("Linux FUSE Protocol, ") == len(capture[1].frames)


@needs_tshark
def test_header_fields_match_capture(capture: tuple[Path, Session]) -> None:
    path, session = capture
    rows, _ = tshark(path, *fields_args(FIELDS))
    with path.open("rb") as f:
        records = list(CaptureReader(f))
    assert len(rows) == len(records) == len(session.frames)
    for row, rec, fr in zip(rows, records, session.frames, strict=True):
        number, kind, opcode, unique, nodeid, error, notify = row
        assert int(number) == rec.index + 1
        # the capture's own header fields, read independently of the dissector
        if rec.direction is Direction.INBOUND:
            _len, op, uniq, node = struct.unpack_from("<IIQQ", rec.data)
            assert (int(kind), int(opcode), int(unique), int(nodeid)) == (1, op, uniq, node)
            assert error == ""
        else:
            _len, err, uniq = struct.unpack_from("<IiQ", rec.data)
            assert int(unique) == uniq
            if uniq == 0:
                assert (int(kind), int(notify), opcode) == (3, err, "")
            else:
                assert (int(kind), int(error)) == (2, err)
                assert nodeid == ""
        # and what the frame was built from (a reply shows its request's opcode)
        assert opt_int(opcode) == fr.opcode
        assert int(unique) == fr.unique
        assert opt_int(nodeid) == fr.nodeid
        assert opt_int(error) == fr.error
        assert opt_int(notify) == fr.notify


@needs_tshark
def test_pairing_single_and_two_pass(capture: tuple[Path, Session]) -> None:
    path, session = capture
    names = ["frame.number", "fuse.unique", "fuse.request_in", "fuse.response_in", "fuse.time"]
    expected_req: dict[int, int] = {}  # reply frame -> request frame
    for i, fr in enumerate(session.frames, 1):
        if fr.direction is Direction.OUTBOUND and fr.unique:
            expected_req[i] = next(
                j
                for j, g in enumerate(session.frames, 1)
                if g.direction is Direction.INBOUND and g.unique == fr.unique
            )
    expected_rep = {v: k for k, v in expected_req.items()}

    one, _ = tshark(path, *fields_args(names))
    two, _ = tshark(path, *fields_args(names), two_pass=True)
    for rows, with_response in ((one, False), (two, True)):
        for number, _unique, request_in, response_in, rtime in rows:
            n = int(number)
            if n in expected_req:
                assert int(request_in) == expected_req[n]
                assert float(rtime) == pytest.approx((n - expected_req[n]) * 250e-6)
            else:
                assert request_in == ""
            if with_response and n in expected_rep:
                assert int(response_in) == expected_rep[n]
            elif not with_response:
                assert response_in == ""  # one pass: the reply is not known yet
            else:
                assert response_in == ""  # FORGET, BATCH_FORGET: no reply


@needs_tshark
def test_display_filter_on_opcode(capture: tuple[Path, Session]) -> None:
    path, session = capture
    rows, _ = tshark(path, "-Y", "fuse.opcode == 1", *fields_args(["frame.number"]))
    want = [i for i, fr in enumerate(session.frames, 1) if fr.opcode == LOOKUP]
    assert [int(r[0]) for r in rows] == want
    assert len(want) == 4  # two LOOKUP requests and their replies
    rows, _ = tshark(path, "-Y", "fuse.error == -2", *fields_args(["frame.number"]))
    assert [int(r[0]) for r in rows] == [
        i for i, fr in enumerate(session.frames, 1) if fr.error == -ENOENT
    ]


@needs_tshark
def test_names_and_structures(capture: tuple[Path, Session]) -> None:
    path, session = capture
    names = [
        "fuse.name", "fuse.dirent.name", "fuse.entry.nodeid", "fuse.fh", "fuse.offset",
        "fuse.size", "fuse.attr.size", "fuse.init.minor", "fuse.forget.nodeid", "_ws.col.Info",
    ]  # fmt: skip
    rows, _ = tshark(path, *fields_args(names), "-E", "occurrence=a", "-E", "aggregator=|")
    by_frame = {i: dict(zip(names, row, strict=True)) for i, row in enumerate(rows, 1)}
    for i, fr in enumerate(session.frames, 1):
        got = by_frame[i]
        found = (got["fuse.name"] or got["fuse.dirent.name"]).split("|")
        assert found == (fr.names or [""]), i
    init_req, init_rep = by_frame[1], by_frame[2]
    assert init_req["fuse.init.minor"] == init_rep["fuse.init.minor"] == "45"
    assert by_frame[4]["fuse.entry.nodeid"] == "5"
    assert by_frame[4]["fuse.attr.size"] == "12"
    assert by_frame[8]["fuse.fh"] == "0x0000000000000010"
    assert (by_frame[9]["fuse.offset"], by_frame[9]["fuse.size"]) == ("0", "4096")
    assert "12 bytes" in by_frame[10]["_ws.col.Info"]
    assert "ENOENT" in by_frame[12]["_ws.col.Info"]
    assert by_frame[16]["fuse.entry.nodeid"].split("|") == ["1", "0", "5"]
    assert "EAGAIN" in by_frame[19]["_ws.col.Info"]
    assert "EINTR" in by_frame[20]["_ws.col.Info"]
    assert by_frame[len(session.frames)]["fuse.forget.nodeid"].split("|") == ["6", "7"]


@needs_tshark
@pytest.mark.parametrize("kind", ["big-endian pcapng", "classic pcap without direction"])
def test_other_captures_decode_the_same(tmp_path: Path, kind: str) -> None:
    if kind == "big-endian pcapng":
        session = build_session("big")
        path = tmp_path / "big.pcapng"
        write_capture(path, session, byte_order="big")
    else:
        session = build_session("little")
        path = tmp_path / "plain.pcap"
        write_classic_pcap(path, session)
    rows, stderr = tshark(path, *fields_args(FIELDS))
    assert clean_stderr(stderr) == []
    got = [(opt_int(r[2]), int(r[3]), opt_int(r[4]), opt_int(r[5]), opt_int(r[6])) for r in rows]
    want = [(fr.opcode, fr.unique, fr.nodeid, fr.error, fr.notify) for fr in session.frames]
    assert got == want


def every_message() -> list[tuple[Direction, bytes]]:
    """A request and a reply for every opcode in the registry, and every notification."""
    from fusetrace.protocol.registry import NOTIFY, OPS, ReplyShape

    body: dict[str, Any] = {
        "name": "a", "oldname": "a", "newname": "b", "target": "t", "data": b"xyz",
        "entries": [{"name": "e", "ino": 3}], "names": ["user.a"],
        "forgets": [{"nodeid": 3, "nlookup": 1}],
    }  # fmt: skip
    frames = []
    for unique, opcode in enumerate(sorted(OPS), 1):
        frames.append(
            (Direction.INBOUND, encode_request(opcode, body, unique=2 * unique, nodeid=1))
        )
        if OPS[opcode].reply is not ReplyShape.NONE:
            frames.append((Direction.OUTBOUND, encode_reply(opcode, body, unique=2 * unique)))
    for code in sorted(NOTIFY):
        frames.append((Direction.OUTBOUND, encode_notify(code, body)))
    return frames


@needs_tshark
def test_every_opcode_and_notification_is_named(tmp_path: Path) -> None:
    from fusetrace.protocol.abi import NotifyCode, Opcode

    path = tmp_path / "all.pcapng"
    with path.open("wb") as f:
        w = CaptureWriter(f, {})
        for direction, data in every_message():
            w.write(direction, 0, data)
    names = ["fuse.type", "fuse.opcode", "fuse.notify_code", "_ws.col.Info"]
    rows, stderr = tshark(path, *fields_args(names))
    assert clean_stderr(stderr) == []
    seen_ops, seen_codes = set(), set()
    for kind, opcode, code, info in rows:
        if kind == "3":
            name = NotifyCode(int(code)).name
            assert info.startswith(f"Notify {name}")
            seen_codes.add(int(code))
        else:
            name = Opcode(int(opcode)).name
            role = "Request" if kind == "1" else "Reply"
            assert info.startswith(f"{name} {role} unique ")
            seen_ops.add(int(opcode))
    assert 4096 in seen_ops  # CUSE_INIT
    assert seen_ops == {int(op) for op in Opcode if op not in (7, 19)} - {0}
    assert seen_codes == {int(c) for c in NotifyCode}


@needs_tshark
def test_damaged_frames_do_not_break_the_dissector(tmp_path: Path) -> None:
    """Frames cut by a snap length, mutated and extended: no Lua error, ever."""
    rng = random.Random(20261128)
    frames = every_message()
    path = tmp_path / "damaged.pcapng"
    with path.open("wb") as f:
        for snaplen in (None, 17, 41, 60, 150):
            w = CaptureWriter(f, {}, snaplen=snaplen)
            for direction, data in frames:
                w.write(direction, 0, data)
        w = CaptureWriter(f, {})
        for i in range(1500):
            direction, data = rng.choice(frames)
            b = bytearray(data)
            for _ in range(rng.randint(1, 6)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            if rng.random() < 0.3:
                b = b[: rng.randrange(len(b) + 1)]
            if rng.random() < 0.3:
                b += rng.randbytes(rng.randrange(64))
            w.write(rng.choice(list(Direction)), i, bytes(b))
    stdout, stderr = run_tshark(path, "-V")
    assert clean_stderr(stderr) == []
    assert "Lua Error" not in stdout
    assert stdout.count("Linux FUSE Protocol") >= 5 * len(frames) + 1500


@needs_tshark
def test_matches_fusetrace_decode(capture: tuple[Path, Session]) -> None:
    assert_matches_decode(capture[0])


REFERENCE = sorted((Path(__file__).parents[2] / "captures").glob("*.pcapng"))


@needs_tshark
@pytest.mark.parametrize("path", REFERENCE, ids=lambda p: p.name)
def test_reference_captures_match_fusetrace_decode(path: Path, tmp_path: Path) -> None:
    """Every capture of the reference library (real daemons, recorded by `conform`) reads the
    same in tshark with the dissector as in `fusetrace decode`."""
    copy = tmp_path / path.name  # tshark's HOME is the capture's folder: keep it private
    copy.write_bytes(path.read_bytes())
    assert_matches_decode(copy)


def test_there_are_reference_captures() -> None:
    assert len(REFERENCE) >= 3


def assert_matches_decode(path: Path) -> None:
    """Opcodes, uniques, node ids, errors and request/reply pairing agree between tshark with
    the shipped dissector and `fusetrace decode --format jsonl`."""
    from fusetrace.protocol.abi import NotifyCode, Opcode

    proc = subprocess.run(
        [sys.executable, "-m", "fusetrace", "decode", "--format", "jsonl", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    decoded = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    names = [*FIELDS, "fuse.request_in", "fuse.time"]
    rows, stderr = tshark(path, *fields_args(names))
    assert clean_stderr(stderr) == []
    assert len(decoded) == len(rows)
    kinds = {"request": 1, "reply": 2, "interrupt-reply": 2, "notify": 3}
    for d, row in zip(decoded, rows, strict=True):
        got = dict(zip(names, row, strict=True))
        assert int(got["frame.number"]) == d["frame"]  # both count from 1
        assert int(got["fuse.unique"]) == d["unique"]
        assert int(got["fuse.type"]) == kinds[d["kind"]]
        if d["kind"] == "notify":
            assert d["opcode"] == "NOTIFY_" + NotifyCode(int(got["fuse.notify_code"])).name
            continue
        assert Opcode(int(got["fuse.opcode"])).name == d["opcode"]
        if d["kind"] == "request":
            assert int(got["fuse.nodeid"]) == d["nodeid"]
            continue
        assert int(got["fuse.error"]) == d["error"]
        assert int(got["fuse.request_in"]) == d["request_frame"]
        assert round(float(got["fuse.time"]) * 1e9) == d["latency_ns"]


# ---- the command ------------------------------------------------------------------------


def run_cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HOME=str(home))
    return subprocess.run(
        [sys.executable, "-m", "fusetrace", "wireshark-plugin", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_print_path_is_the_shipped_file(tmp_path: Path) -> None:
    proc = run_cli("--print-path", home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip())
    assert path.is_file()
    assert path.read_bytes() == PLUGIN.read_bytes()


def test_install_into_dest(tmp_path: Path) -> None:
    dest = tmp_path / "plugins" / "sub"
    proc = run_cli("--install", "--dest", str(dest), home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    installed = dest / "fuse.lua"
    assert installed.read_bytes() == PLUGIN.read_bytes()
    assert oct(installed.stat().st_mode & 0o777) == oct(0o644)
    assert str(installed) in proc.stdout
    assert sorted(p.name for p in dest.iterdir()) == ["fuse.lua"]  # no temporary left
    again = run_cli("--install", "--dest", str(dest), home=tmp_path)
    assert again.returncode == 0
    assert again.stdout.startswith("replaced ")


def test_install_into_unwritable_folder_fails_cleanly(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = run_cli("--install", "--dest", str(blocker / "plugins"), home=tmp_path)
    assert proc.returncode == 4
    assert proc.stderr.startswith("fusetrace: error: cannot install the dissector")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_default_folder_and_dry_run(tmp_path: Path) -> None:
    proc = run_cli(home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    expected_dir = tmp_path / ".local" / "lib" / "wireshark" / "plugins"
    assert str(expected_dir / "fuse.lua") in proc.stdout
    assert f"tshark -X lua_script:{PLUGIN} -r capture.pcapng" in proc.stdout
    assert not expected_dir.exists()  # nothing was installed
    proc = run_cli("--install", home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (expected_dir / "fuse.lua").read_bytes() == PLUGIN.read_bytes()


def test_install_and_print_path_exclude_each_other(tmp_path: Path) -> None:
    proc = run_cli("--install", "--print-path", home=tmp_path)
    assert proc.returncode == 2
    assert "exclude each other" in proc.stderr


@needs_tshark
def test_installed_plugin_is_loaded_by_tshark(
    tmp_path: Path, capture: tuple[Path, Session]
) -> None:
    path, session = capture
    assert run_cli("--install", home=tmp_path).returncode == 0
    env = dict(os.environ, HOME=str(tmp_path))
    want = [i for i, fr in enumerate(session.frames, 1) if fr.opcode == READ]
    # installed only, and installed plus named again with -X (loaded once, no error)
    for extra in ([], ["-X", f"lua_script:{PLUGIN}"]):
        proc = subprocess.run(
            [TSHARK or "tshark", *extra, "-r", str(path), "-Y", "fuse.opcode == 15",
             "-T", "fields", "-e", "frame.number"],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert clean_stderr(proc.stderr) == []
        assert [int(n) for n in proc.stdout.split()] == want
