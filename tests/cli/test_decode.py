"""``fusetrace decode`` through click, on captures written here."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fusetrace.capture.pcapng import CaptureWriter
from fusetrace.cli import cli, commands
from fusetrace.errors import CaptureError
from fusetrace.frame import Direction
from fusetrace.protocol.abi import S_IFREG, InitFlag, NotifyCode, Opcode
from fusetrace.protocol.encode import encode_notify, encode_reply, encode_request

for _c in commands.load():
    if _c.name not in cli.commands:
        cli.add_command(_c)

ROOT = Path(__file__).resolve().parent.parent.parent
K, D = Direction.INBOUND, Direction.OUTBOUND
T0 = 1_700_000_000_000_000_000
ENTRY = {"nodeid": 5, "generation": 1, "attr": {"mode": S_IFREG | 0o644, "size": 3}}

SESSION = [
    (K, encode_request(Opcode.INIT, {"major": 7, "minor": 45}, unique=2), 0),
    (D, encode_reply(Opcode.INIT, {"major": 7, "minor": 45, "max_write": 65536}, unique=2),
     10_000),
    (K, encode_request(Opcode.LOOKUP, {"name": "f"}, unique=4, nodeid=1), 1_000_000),
    (D, encode_reply(Opcode.LOOKUP, ENTRY, unique=4), 1_050_000),
    (K, encode_request(Opcode.LOOKUP, {"name": "nope"}, unique=6, nodeid=1), 2_000_000),
    (D, encode_reply(Opcode.LOOKUP, {}, unique=6, error=-2), 2_020_000),
    (K, encode_request(Opcode.OPEN, {"flags": 0}, unique=8, nodeid=5), 3_000_000),
    (D, encode_reply(Opcode.OPEN, {"fh": 9}, unique=8), 3_100_000),
    (K, encode_request(Opcode.READ, {"fh": 9, "size": 4096}, unique=10, nodeid=5), 4_000_000),
    (D, encode_reply(Opcode.READ, {"data": b"abc"}, unique=10), 4_300_000),
    (D, encode_notify(NotifyCode.INVAL_INODE, {"ino": 5, "len": -1}), 4_500_000),
    (K, encode_request(Opcode.FORGET, {"nlookup": 1}, unique=12, nodeid=5), 5_000_000),
]  # fmt: skip


def write_capture(path: Path, frames: list = SESSION) -> Path:  # type: ignore[type-arg]
    with path.open("wb") as f:
        w = CaptureWriter(f, {"daemon": ["test"], "mountpoint": "/mnt"})
        for direction, data, t in frames:
            w.write(direction, T0 + t, data)
    return path


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    return write_capture(tmp_path / "t.pcapng")


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["decode", *args])
    if isinstance(result.exception, CaptureError):
        return result.exception.exit_code, result.stdout, str(result.exception)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_summary_lines(capture: Path) -> None:
    code, out, _ = run(str(capture))
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == len(SESSION)
    # each line starts with the frame number as tshark prints it (from 1)
    assert lines[2] == '    3 0.001000 K>D 4 LOOKUP nodeid=1 "f"'
    assert lines[3] == "    4 0.001050 D>K 4 LOOKUP ok nodeid=5 gen=1 reg 0644 size=3 (50us)"
    assert lines[5] == "    6 0.002020 D>K 6 LOOKUP -ENOENT (20us)"
    assert lines[9] == "   10 0.004300 D>K 10 READ ok 3 bytes (300us)"
    assert lines[10] == "   11 0.004500 D>K 0 NOTIFY_INVAL_INODE ino=5 off=0 len=-1"
    assert lines[11] == "   12 0.005000 K>D 12 FORGET nodeid=5 nlookup=1"


def test_jsonl_parses_back(capture: Path) -> None:
    code, out, _ = run(str(capture), "--format", "jsonl")
    assert code == 0
    objs = [json.loads(line) for line in out.splitlines()]
    assert [o["frame"] for o in objs] == list(range(1, len(SESSION) + 1))
    read_reply = objs[9]
    assert read_reply["opcode"] == "READ" and read_reply["request_frame"] == 9
    assert read_reply["latency_ns"] == 300_000 and read_reply["nodeid"] == 5
    assert read_reply["body"]["data"] == {"len": 3, "hex": "616263"}
    assert objs[5]["error"] == -2 and objs[5]["errno"] == "ENOENT"
    assert objs[0]["body"]["minor"] == 45 and objs[0]["dir"] == "K>D"


def test_filter_op_shows_requests_with_replies(capture: Path) -> None:
    _, out, _ = run(str(capture), "--op", "lookup")
    assert [line.split()[4] for line in out.splitlines()] == ["LOOKUP"] * 4
    _, out, _ = run(str(capture), "--op", "NOTIFY_INVAL_INODE,FORGET")
    assert len(out.splitlines()) == 2


def test_filter_nodeid(capture: Path) -> None:
    _, out, _ = run(str(capture), "--nodeid", "5")
    uniques = [line.split()[3] for line in out.splitlines()]
    # LOOKUP reply naming 5, OPEN/READ on 5 and their replies, the notify and the FORGET
    assert uniques == ["4", "8", "8", "10", "10", "0", "12"]


def test_filter_nodeid_in_request_bodies(tmp_path: Path) -> None:
    frames = [
        (K, encode_request(Opcode.LINK, {"oldnodeid": 5, "newname": "h"}, unique=4, nodeid=1), 0),
        (K, encode_request(Opcode.BATCH_FORGET, {"forgets": [{"nodeid": 5, "nlookup": 1}]},
                           unique=6), 1),
        (K, encode_request(Opcode.GETATTR, {}, unique=8, nodeid=6), 2),
    ]  # fmt: skip
    path = write_capture(tmp_path / "n.pcapng", frames)
    _, out, _ = run(str(path), "--nodeid", "5")
    assert [line.split()[4] for line in out.splitlines()] == ["LINK", "BATCH_FORGET"]


def test_filter_unique_errors_and_time(capture: Path) -> None:
    _, out, _ = run(str(capture), "--unique", "8")
    assert len(out.splitlines()) == 2
    _, out, _ = run(str(capture), "--errors")
    # strace style: the failed call, then its error
    assert out.splitlines() == [
        '    5 0.002000 K>D 6 LOOKUP nodeid=1 "nope"',
        "    6 0.002020 D>K 6 LOOKUP -ENOENT (20us)",
    ]
    _, out, _ = run(str(capture), "--since", "0.002", "--until", "0.0031")
    assert [line.split()[1] for line in out.splitlines()] == [
        "0.002000", "0.002020", "0.003000", "0.003100"]  # fmt: skip


def test_unknown_op_is_a_usage_error(capture: Path) -> None:
    result = CliRunner().invoke(cli, ["decode", str(capture), "--op", "FROB"])
    assert result.exit_code == 2 and "unknown opcode" in result.output


def test_verbose(capture: Path) -> None:
    _, out, _ = run(str(capture), "-v", "--unique", "4")
    assert '    name: "f"' in out and "      mode: 0o100644 (reg 0644)" in out


def test_stats_plain_and_json(capture: Path) -> None:
    _, out, _ = run(str(capture), "--stats")
    rows = {line.split()[0]: line.split() for line in out.splitlines()}
    assert rows["LOOKUP"][1:4] == ["2", "2", "1"]
    assert rows["FORGET"][1:3] == ["1", "0"]
    _, out, _ = run(str(capture), "--stats", "--format", "json")
    data = json.loads(out)
    lookup = next(r for r in data["opcodes"] if r["opcode"] == "LOOKUP")
    assert lookup["p50_ns"] in (20_000, 50_000) and lookup["max_ns"] == 50_000
    assert data["frames"] == len(SESSION)


def test_json_without_stats_is_a_usage_error(capture: Path) -> None:
    assert CliRunner().invoke(cli, ["decode", str(capture), "--format", "json"]).exit_code == 2
    assert CliRunner().invoke(cli, ["decode", str(capture), "--stats", "--check"]).exit_code == 2


def test_check_prints_findings_inline(tmp_path: Path) -> None:
    bad = [*SESSION[:2], (D, encode_reply(Opcode.GETATTR, {}, unique=40), 20_000)]
    path = write_capture(tmp_path / "bad.pcapng", bad)
    code, out, _ = run(str(path), "--check")
    lines = out.splitlines()
    assert lines[2].startswith("    3 0.000020 D>K 40 ? ")
    assert lines[3].startswith("    ! FT")
    assert code == 1


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e").write_bytes(b"")
    code, _, err = run(str(tmp_path / "e"))
    assert code == 3 and "empty" in err


def test_not_pcapng(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"hello world, not a capture")
    code, _, err = run(str(tmp_path / "x"))
    assert code == 3 and "not a pcapng" in err


def test_cut_capture_prints_whole_frames_then_fails(capture: Path) -> None:
    data = capture.read_bytes()
    capture.write_bytes(data[:-10])
    code, out, err = run(str(capture))
    assert code == 3
    assert len(out.splitlines()) == len(SESSION) - 1
    assert "capture cut short at offset" in err


@pytest.mark.parametrize("content", [b"", b"\x0a\x0d\x0d\x0a\x00"])
def test_real_command_one_line_error(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "bad").write_bytes(content)
    proc = subprocess.run([sys.executable, "-m", "fusetrace", "decode", str(tmp_path / "bad")],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)  # fmt: skip
    assert proc.returncode == 3
    assert proc.stderr.startswith("fusetrace: error: ") and proc.stderr.count("\n") == 1
    assert proc.stdout == ""


def test_stdin(capture: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "fusetrace", "decode", "-"],
                          input=capture.read_bytes(), capture_output=True, cwd=ROOT,
                          timeout=60)  # fmt: skip
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == len(SESSION)


def test_big_endian_capture(tmp_path: Path) -> None:
    from fusetrace.protocol.session import Negotiated

    big = Negotiated(byte_order="big")
    frames = [
        (K, encode_request(Opcode.LOOKUP, {"name": "f"}, unique=4, nodeid=1, negotiated=big)),
        (D, encode_reply(Opcode.LOOKUP, ENTRY, unique=4, negotiated=big)),
    ]
    path = tmp_path / "be.pcapng"
    with path.open("wb") as f:
        w = CaptureWriter(f, {"daemon": ["test"]}, byte_order="big")
        for i, (direction, data) in enumerate(frames):
            w.write(direction, T0 + i * 1000, data)
    code, out, _ = run(str(path))
    assert code == 0
    assert out.splitlines() == [
        '    1 0.000000 K>D 4 LOOKUP nodeid=1 "f"',
        "    2 0.000001 D>K 4 LOOKUP ok nodeid=5 gen=1 reg 0644 size=3 (1.0us)",
    ]


def test_check_findings_as_json_lines(tmp_path: Path) -> None:
    bad = [*SESSION[:2], (D, encode_reply(Opcode.GETATTR, {}, unique=40), 20_000)]
    path = write_capture(tmp_path / "bad.pcapng", bad)
    _, out, _ = run(str(path), "--check", "--format", "jsonl")
    objs = [json.loads(line) for line in out.splitlines()]
    findings = [o for o in objs if o.get("kind") == "finding"]
    assert findings and findings[0]["frame"] == 3 and findings[0]["rule"].startswith("FT")


@pytest.mark.mount
def test_a_real_recording_decodes_whole(tmp_path: Path) -> None:
    """End to end: squashfuse_ll mounted through `fusetrace record`, a workload, then
    `fusetrace decode`: every frame decodes without a problem, every reply is paired with its
    request, and what was read through the mount is what the image holds."""
    from tests.support.mount import fusetrace_cmd, fusetrace_env, recording
    from tests.support.trees import digest_tree, make_squashfs, make_tree

    if not shutil.which("squashfuse_ll"):
        pytest.skip("needs squashfuse_ll")
    src = make_tree(tmp_path / "src")
    image = make_squashfs(src, tmp_path / "img.sqfs")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    cap = tmp_path / "t.pcapng"
    with recording(["squashfuse_ll", str(image), "{}"], mnt, cap):
        seen = digest_tree(mnt)
    assert seen == digest_tree(src)

    out = subprocess.run(
        fusetrace_cmd("decode", "--format", "jsonl", str(cap)),
        capture_output=True,
        text=True,
        env=fusetrace_env(),
        check=True,
    ).stdout
    frames = [json.loads(line) for line in out.splitlines()]
    assert len(frames) > 50
    assert [f["frame"] for f in frames] == list(range(1, len(frames) + 1))
    assert [f for f in frames if f["problems"]] == []
    requests = {f["frame"]: f for f in frames if f["dir"] == "K>D"}
    replies = [f for f in frames if f["dir"] == "D>K" and f["unique"] != 0]
    assert replies
    for reply in replies:
        request = requests[reply["request_frame"]]
        assert (request["unique"], request["opcode"]) == (reply["unique"], reply["opcode"])
    answered = {r["request_frame"] for r in replies}
    no_reply = {"FORGET", "BATCH_FORGET", "NOTIFY_REPLY"}
    assert {i for i, f in requests.items() if f["opcode"] not in no_reply} == answered
    read = {f["opcode"] for f in frames}
    assert {"INIT", "LOOKUP", "GETATTR", "READ", "READLINK", "GETXATTR"} <= read


def test_frame_numbers_and_ranges_select_frames(capture: Path) -> None:
    _, out, _ = run("-r", str(capture), "--frame", "3")
    assert out.splitlines() == ['    3 0.001000 K>D 4 LOOKUP nodeid=1 "f"']
    _, out, _ = run(str(capture), "--frame", "5-6,10-", "--format", "jsonl")
    assert [json.loads(line)["frame"] for line in out.splitlines()] == [5, 6, 10, 11, 12]
    _, out, _ = run(str(capture), "--frame", "9-10", "--op", "READ")
    assert [line.split()[0] for line in out.splitlines()] == ["9", "10"]
    code, _, err = run(str(capture), "--frame", "0")
    assert code == 2 and "numbered from 1" in err


def test_ids_are_read_in_decimal_or_hex(capture: Path) -> None:
    _, dec, _ = run(str(capture), "--unique", "10")
    _, hexa, _ = run(str(capture), "--unique", "0xa")
    assert dec == hexa and len(dec.splitlines()) == 2
    _, out, _ = run(str(capture), "--nodeid", "0x5")
    assert len(out.splitlines()) == 7
    code, _, err = run(str(capture), "--unique", "1b5c")
    assert code == 2 and "0x1b5c" in err


def test_fail_on_sets_what_fails_decode_check(tmp_path: Path) -> None:
    # an INIT reply with a flag the kernel did not offer: a warning (FT405), no error
    f1, f2 = InitFlag.INIT_EXT.words()
    g1, g2 = (InitFlag.INIT_EXT | InitFlag.WRITEBACK_CACHE).words()
    frames = [
        (K, encode_request(Opcode.INIT, {"major": 7, "minor": 45, "flags": f1, "flags2": f2},
                           unique=2), 0),
        (D, encode_reply(Opcode.INIT, {"major": 7, "minor": 45, "flags": g1, "flags2": g2,
                                       "max_write": 4096}, unique=2), 10),
    ]  # fmt: skip
    path = write_capture(tmp_path / "w.pcapng", frames)
    code, out, _ = run(str(path), "--check")
    assert code == 0 and "FT405 warning" in out
    code, _, _ = run(str(path), "--check", "--fail-on", "warning")
    assert code == 1


def test_read_option_and_positional_exclude_each_other(capture: Path) -> None:
    assert run("-r", str(capture))[1] == run(str(capture))[1]
    code, _, err = run("-r", str(capture), str(capture))
    assert code == 2 and "one capture" in err
    code, _, err = run()
    assert code == 2 and "no capture given" in err
