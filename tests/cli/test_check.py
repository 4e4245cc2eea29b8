"""``fusetrace check`` / ``explain`` / ``rules`` through click, on real capture files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from fusetrace.capture.pcapng import CaptureWriter
from fusetrace.cli import cli, commands
from fusetrace.frame import Direction
from fusetrace.protocol.abi import S_IFDIR, InitFlag, Opcode
from fusetrace.protocol.encode import encode_reply, encode_request
from fusetrace.tracker import RULES

for _c in commands.load():
    cli.add_command(_c)

K, D = Direction.INBOUND, Direction.OUTBOUND
ATTR = {"attr_valid": 1, "attr": {"mode": S_IFDIR | 0o755, "nlink": 2}}


def init_pair() -> list[tuple[Direction, bytes]]:
    f1, f2 = (InitFlag.INIT_EXT | InitFlag.MAX_PAGES | InitFlag.ASYNC_READ).words()
    return [
        (
            K,
            encode_request(
                Opcode.INIT, {"major": 7, "minor": 45, "flags": f1, "flags2": f2}, unique=2
            ),
        ),
        (
            D,
            encode_reply(
                Opcode.INIT,
                {
                    "major": 7,
                    "minor": 45,
                    "flags": f1,
                    "flags2": f2,
                    "max_write": 131072,
                    "max_pages": 32,
                },
                unique=2,
            ),
        ),
    ]


def clean_frames() -> list[tuple[Direction, bytes]]:
    return [
        *init_pair(),
        (K, encode_request(Opcode.GETATTR, {}, unique=4, nodeid=1)),
        (D, encode_reply(Opcode.GETATTR, ATTR, unique=4)),
    ]


def dirty_frames() -> list[tuple[Direction, bytes]]:
    """A duplicate reply (FT102, error) and a reply flag not offered (FT405, warning)."""
    f1, f2 = InitFlag.INIT_EXT.words()
    g1, g2 = (InitFlag.INIT_EXT | InitFlag.WRITEBACK_CACHE).words()
    return [
        (
            K,
            encode_request(
                Opcode.INIT, {"major": 7, "minor": 45, "flags": f1, "flags2": f2}, unique=2
            ),
        ),
        (
            D,
            encode_reply(
                Opcode.INIT,
                {"major": 7, "minor": 45, "flags": g1, "flags2": g2, "max_write": 4096},
                unique=2,
            ),
        ),
        (K, encode_request(Opcode.GETATTR, {}, unique=4, nodeid=1)),
        (D, encode_reply(Opcode.GETATTR, ATTR, unique=4)),
        (D, encode_reply(Opcode.GETATTR, ATTR, unique=4)),
    ]


def warning_only_frames() -> list[tuple[Direction, bytes]]:
    frames = dirty_frames()
    return frames[:4]


def write_capture(path: Path, frames: list[tuple[Direction, bytes]], **meta: object) -> Path:
    with path.open("wb") as f:
        w = CaptureWriter(f, {"daemon": ["test"], "mountpoint": "/mnt", **meta})
        for i, (direction, data) in enumerate(frames):
            w.write(direction, 1_700_000_000_000_000_000 + i * 1000, data)
    return path


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def run(runner: CliRunner, *args: str) -> tuple[int, str, str]:
    r = runner.invoke(cli, list(args), catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def test_clean_capture_exits_0(runner: CliRunner, tmp_path: Path) -> None:
    cap = write_capture(tmp_path / "clean.pcapng", clean_frames())
    code, out, _ = run(runner, "check", str(cap))
    assert code == 0
    assert "4 frames" in out and "no findings" in out


def test_findings_exit_1_and_cite_the_frame(runner: CliRunner, tmp_path: Path) -> None:
    cap = write_capture(tmp_path / "dirty.pcapng", dirty_frames())
    code, out, _ = run(runner, "check", str(cap))
    assert code == 1
    # frames numbered from 1 as in Wireshark, ids in decimal
    assert f"{cap}:5: FT102 error [daemon] unique=4:" in out
    assert f"{cap}:2: FT405 warning [daemon] INIT unique=2:" in out


def test_fail_on_warning(runner: CliRunner, tmp_path: Path) -> None:
    cap = write_capture(tmp_path / "warn.pcapng", warning_only_frames())
    assert run(runner, "check", str(cap))[0] == 0
    assert run(runner, "check", "--fail-on", "warning", str(cap))[0] == 1


def test_select_and_ignore(runner: CliRunner, tmp_path: Path) -> None:
    cap = write_capture(tmp_path / "dirty.pcapng", dirty_frames())
    code, out, _ = run(runner, "check", "--select", "FT4", str(cap))
    assert code == 0 and "FT405" in out and "FT102" not in out
    code, out, _ = run(runner, "check", "--ignore", "FT102,FT4", str(cap))
    assert code == 0 and "FT1" not in out.split("\n")[0]
    code, out, _ = run(runner, "check", "--select", "ft1", "--ignore", "FT102", str(cap))
    assert code == 0 and "FT102" not in out


def test_unknown_rule_pattern_is_a_usage_error(runner: CliRunner, tmp_path: Path) -> None:
    cap = write_capture(tmp_path / "clean.pcapng", clean_frames())
    code, _, err = run(runner, "check", "--select", "FT9", str(cap))
    assert code == 2
    assert "FT9" in err


def test_json_report(runner: CliRunner, tmp_path: Path) -> None:
    a = write_capture(tmp_path / "a.pcapng", dirty_frames())
    b = write_capture(tmp_path / "b.pcapng", clean_frames())
    code, out, _ = run(runner, "check", "--format", "json", str(a), str(b))
    assert code == 1
    doc = json.loads(out)
    assert [c["file"] for c in doc["captures"]] == [str(a), str(b)]
    assert [c["frames"] for c in doc["captures"]] == [5, 4]
    f = next(f for f in doc["captures"][0]["findings"] if f["rule"] == "FT102")
    assert f["severity"] == "error" and f["culprit"] == "daemon"
    assert f["frame"] == 5 and f["unique"] == 4 and f["related"] == [4]
    assert {"rule", "severity", "culprit", "frame", "unique", "opcode", "message"} <= set(f)
    assert doc["captures"][1]["findings"] == []
    assert doc["summary"]["findings"] == {"error": 1, "warning": 1, "info": 0}
    assert doc["summary"]["frames"] == 9
    assert doc["summary"]["failed"] is True


def test_junit_report(runner: CliRunner, tmp_path: Path) -> None:
    cap = write_capture(tmp_path / "dirty.pcapng", dirty_frames())
    out_file = tmp_path / "report.xml"
    code, out, _ = run(runner, "check", "--format", "junit", "--output", str(out_file), str(cap))
    assert code == 1 and out == ""
    root = ET.parse(out_file).getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == 5
    failed = [c for c in cases if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == ["FT1xx ids and reply pairing"]
    assert "FT102" in (failed[0].find("failure").text or "")
    init_case = next(c for c in cases if c.get("name", "").startswith("FT4"))
    assert "FT405" in (init_case.findtext("system-out") or "")
    assert suite.get("failures") == "1" and root.get("tests") == "5"
    # with --fail-on warning the INIT family fails too
    # -o (mount options everywhere else) still names the report file, for one release
    code, _, err = run(runner, "check", "--format", "junit", "--fail-on", "warning", "-o",
                       str(out_file), str(cap))  # fmt: skip
    assert "-o is deprecated" in err and "use --output" in err
    root = ET.parse(out_file).getroot()
    assert root.get("failures") == "2"


def test_read_option_and_positional_captures(runner: CliRunner, tmp_path: Path) -> None:
    a = write_capture(tmp_path / "a.pcapng", dirty_frames())
    b = write_capture(tmp_path / "b.pcapng", clean_frames())
    code, out, _ = run(runner, "check", "--format", "json", "-r", str(a), str(b))
    assert code == 1
    assert [c["file"] for c in json.loads(out)["captures"]] == [str(a), str(b)]
    code, _, err = run(runner, "check")
    assert code == 2 and "no capture given" in err


def test_unreadable_capture_exits_3(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pcapng"
    bad.write_bytes(b"this is not a capture at all")
    code, _, err = run(runner, "check", str(bad))
    assert code == 3
    assert err.startswith("fusetrace: error:") and "bad.pcapng" in err
    assert "Traceback" not in err
    code, _, err = run(runner, "check", str(tmp_path / "missing.pcapng"))
    assert code == 3 and "no such file" in err


def test_capture_cut_mid_block_is_checked_with_a_warning(runner: CliRunner, tmp_path: Path) -> None:
    cap = write_capture(tmp_path / "cut.pcapng", dirty_frames())
    data = cap.read_bytes()
    cap.write_bytes(data[:-10])  # the last frame (the duplicate reply) is cut
    code, out, err = run(runner, "check", "--format", "json", str(cap))
    assert "cut short" in err
    doc = json.loads(out)
    assert doc["captures"][0]["frames"] == 4
    assert doc["captures"][0]["truncated"] is True
    # the FT102 frame was the one cut off: no error finding, yet a capture cut short is 3
    assert [f["rule"] for f in doc["captures"][0]["findings"]] == ["FT405"]
    assert code == 3


def test_mount_options_from_the_capture_enable_ft410(runner: CliRunner, tmp_path: Path) -> None:
    f1, f2 = InitFlag.INIT_EXT.words()
    g1, g2 = (InitFlag.INIT_EXT | InitFlag.ALLOW_IDMAP).words()
    frames = [
        (
            K,
            encode_request(
                Opcode.INIT, {"major": 7, "minor": 45, "flags": f1, "flags2": f2 | g2}, unique=2
            ),
        ),
        (
            D,
            encode_reply(
                Opcode.INIT,
                {"major": 7, "minor": 45, "flags": g1, "flags2": g2, "max_write": 4096},
                unique=2,
            ),
        ),
    ]
    bare = write_capture(tmp_path / "a.pcapng", frames, mount_options=["allow_other"])
    good = write_capture(tmp_path / "b.pcapng", frames, mount_options=["default_permissions"])
    code, out, _ = run(runner, "check", str(bare))
    assert code == 1 and "FT410" in out
    assert run(runner, "check", str(good))[0] == 0


def test_explain_prints_the_rule(runner: CliRunner) -> None:
    code, out, _ = run(runner, "explain", "FT203")
    assert code == 0
    assert out.startswith("FT203 request-names-unknown-nodeid")
    assert "protocol.md" in out
    code, out, _ = run(runner, "explain", "ft3")
    assert code == 0 and out.count("\nseverity:") == sum(c.startswith("FT3") for c in RULES)


def test_explain_unknown_code_exits_2(runner: CliRunner) -> None:
    code, _, err = run(runner, "explain", "FT999")
    assert code == 2
    assert "fusetrace rules" in err


def test_rules_lists_every_rule(runner: CliRunner) -> None:
    code, out, _ = run(runner, "rules")
    assert code == 0
    lines = out.splitlines()
    assert [ln.split()[0] for ln in lines] == list(RULES)
    assert lines[0].split()[1:3] == ["error", "daemon"]
    code, out, _ = run(runner, "rules", "--format", "json")
    doc = json.loads(out)
    assert [r["code"] for r in doc] == list(RULES)
    assert all(r["doc"] and r["title"] for r in doc)


# ---- a finding's frame is the frame Wireshark and decode show ---------------------------

ROOT = Path(__file__).resolve().parent.parent.parent
REFERENCE = sorted((ROOT / "captures").glob("*.pcapng"))


def tshark_fields(capture: Path, frames: str, *fields: str) -> list[list[str]]:
    """``tshark -r CAPTURE -Y FRAMES -T fields -e ...`` with the shipped dissector."""
    tshark = shutil.which("tshark")
    assert tshark is not None
    plugin = ROOT / "fusetrace" / "data" / "fuse.lua"
    cmd = [tshark, "-n", "-X", f"lua_script:{plugin}", "-r", str(capture), "-Y", frames,
           "-T", "fields"] + [a for f in fields for a in ("-e", f)]  # fmt: skip
    with tempfile.TemporaryDirectory() as home:  # no personal plugins or preferences
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "HOME": home})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return [line.split("\t") for line in proc.stdout.splitlines()]


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
@pytest.mark.parametrize("capture", REFERENCE, ids=lambda p: p.name)
def test_a_finding_names_the_frame_tshark_and_decode_show(runner: CliRunner, capture: Path) -> None:
    """check --format json gives a finding's frame N; tshark's frame.number==N and decode
    --frame N are the same frame: same length on the wire, same unique, same direction."""
    code, out, _ = run(runner, "check", "--format", "json", str(capture))
    assert code in (0, 1), out
    findings = [f for f in json.loads(out)["captures"][0]["findings"] if f["frame"] is not None]
    assert findings, f"{capture.name} has no finding about a frame"
    finding = findings[0]
    n = finding["frame"]

    rows = tshark_fields(capture, f"frame.number=={n}", "frame.number", "frame.len",
                         "frame.cap_len", "fuse.unique", "fuse.type")  # fmt: skip
    assert len(rows) == 1
    number, length, stored, unique, kind = rows[0]
    assert int(number) == n and int(unique) == finding["unique"]

    code, out, _ = run(runner, "decode", "--frame", str(n), "--format", "jsonl", str(capture))
    assert code == 0
    (frame,) = [json.loads(line) for line in out.splitlines()]
    assert frame["frame"] == n
    assert frame["len"] == int(length) and frame["unique"] == finding["unique"]
    assert frame["dir"] == ("K>D" if kind == "1" else "D>K")
    code, out, _ = run(runner, "decode", "--frame", str(n), str(capture))
    assert out.split()[0] == str(n)
    if finding["rule"] == "FT316":  # the message names the stored and the wire length
        assert f"stored with {stored} of {length} bytes" in finding["message"]

    # the neighbours differ, so an off-by-one would not pass unnoticed
    near = tshark_fields(capture, f"frame.number>={n - 1} && frame.number<={n + 1}",
                         "frame.len", "fuse.unique", "fuse.type")  # fmt: skip
    assert len({tuple(r) for r in near}) == 3
