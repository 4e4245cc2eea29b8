"""``fusetrace reduce`` end to end: a misbehaving daemon's capture reduced per rule, and a
squashfuse_ll recording reduced to the READ that differs on a changed image."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fusetrace.capture.files import host_writer, open_capture
from fusetrace.tracker import Tracker
from tests.support.mount import fusetrace_cmd, fusetrace_env, recording
from tests.tracker.misbehave import Misbehaving
from tests.tracker.test_rules import in_thread, needs_fuse


def fusetrace(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        fusetrace_cmd(*args), capture_output=True, text=True, env=fusetrace_env(),
        timeout=timeout,
    )  # fmt: skip


@pytest.fixture(scope="module")
def misbehaving_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real session with a daemon that breaks rules on purpose, plus clean traffic
    around the faults (other names looked up, the root stat'ed) for reduce to drop."""
    root = tmp_path_factory.mktemp("misbehave")
    mnt = root / "mnt"
    mnt.mkdir()
    fs = Misbehaving(mnt)
    fs.mount()
    try:
        for k in range(6):
            in_thread(lambda k=k: os.stat(mnt / f"plain-{k}"))
            in_thread(lambda: os.stat(mnt))
        for name in ("duplicate", "positive-error", "plain-a", "bad-out-len", "plain-b"):
            in_thread(lambda n=name: os.stat(mnt / n))
        # a node looked up, then forgotten: the daemon answers the FORGET (FT106)
        assert in_thread(lambda: os.stat(mnt / "forget-me")) is None
        for k in range(3):
            in_thread(lambda k=k: os.stat(mnt / f"plain-late-{k}"))
        Path("/proc/sys/vm/drop_caches").write_text("2")
        assert fs.forget_seen.wait(10), "no FORGET after drop_caches"
    except BaseException:
        fs.unmount(abort=True)
        raise
    fs.unmount()
    assert not fs.errors, fs.errors
    capture = root / "misbehave.pcapng"
    with open(capture, "wb") as f:
        w = host_writer(f, {"daemon": ["misbehave.py"], "mountpoint": str(mnt)})
        for r in fs.records:
            w.write(r.direction, r.t_ns, r.data)
    return capture


@pytest.mark.mount
@needs_fuse
@pytest.mark.parametrize("rule", ["FT102", "FT305", "FT302", "FT106"])
def test_rule_kept_in_ten_frames(misbehaving_capture: Path, tmp_path: Path, rule: str) -> None:
    small = tmp_path / "small.pcapng"
    r = fusetrace("reduce", str(misbehaving_capture), "-w", str(small), "--rule", rule,
                  "--format", "json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    with open_capture(str(small)) as reader:
        records = list(reader)
    assert len(records) == doc["frames_out"] <= 10
    with open_capture(str(misbehaving_capture)) as reader:
        assert len(list(reader)) > 3 * len(records)
    t = Tracker()
    found = [f for rec in records for f in t.feed(rec)] + t.finish()
    assert rule in {f.rule for f in found}, [f.describe() for f in found]
    assert doc["summary"].startswith(f"{len(records)} frames: INIT")


def make_image(src: Path, image: Path) -> Path:
    subprocess.run(["mksquashfs", str(src), str(image), "-noappend", "-quiet", "-no-progress"],
                   check=True, capture_output=True)  # fmt: skip
    return image


@pytest.mark.mount
@needs_fuse
@pytest.mark.skipif(shutil.which("squashfuse_ll") is None or shutil.which("mksquashfs") is None,
                    reason="squashfuse_ll or mksquashfs not installed")  # fmt: skip
def test_difference_on_a_changed_image_in_fifteen_frames(tmp_path: Path) -> None:
    """20,000 frames of stats and reads over 2,000 files; one file differs (same length) in
    a second image. The reduced capture shows the READ difference against the changed
    image and none against the original."""
    src = tmp_path / "src"
    for d in range(8):
        (src / f"d{d}").mkdir(parents=True)
        for k in range(250):
            (src / f"d{d}" / f"f{k}").write_bytes(f"file {d}/{k}\n".encode() * 3)
    original = make_image(src, tmp_path / "a.sqfs")
    (src / "d5" / "f77").write_bytes(b"FILE 5/77\n" * 3)
    changed = make_image(src, tmp_path / "b.sqfs")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    cap = tmp_path / "t.pcapng"
    with recording(["squashfuse_ll", str(original), "{}"], mnt, cap):
        for d in sorted(os.listdir(mnt)):
            for f in sorted(os.listdir(mnt / d)):
                os.stat(mnt / d / f)
                assert (mnt / d / f).read_bytes().startswith(b"file ")
            if d == "d5":  # the kernel forgets what it looked up so far: FORGETs to balance
                Path("/proc/sys/vm/drop_caches").write_text("2")
    with open_capture(str(cap)) as reader:
        assert sum(1 for _ in reader) >= 20_000

    small = tmp_path / "small.pcapng"
    r = fusetrace("reduce", str(cap), "-w", str(small), "--max-time", "120", "--format", "json",
                  "--difference", "--", "squashfuse_ll", str(changed), "{}")  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["reproduces"] == "READ data"
    with open_capture(str(small)) as reader:
        records = list(reader)
        info = reader.info
    assert len(records) == doc["frames_out"] <= 15
    assert info.meta["daemon"][0] == "squashfuse_ll"  # the recorder's metadata is kept
    assert info.meta["reduced"] == {"frames": doc["frames_in"], "reproduces": "READ data"}
    assert "READ (the difference)" in doc["summary"]
    whys = [k["why"] for k in doc["kept"]]
    assert whys.count("the difference") == 1 and whys[0] == "the session's start"
    assert any(w.startswith("OPEN") and w.endswith("uses the id it gives") for w in whys)
    assert any(w.startswith("the kernel sends it after OPEN") for w in whys)  # RELEASE
    # a valid session: the checker finds nothing wrong with it
    c = fusetrace("check", "--fail-on", "warning", str(small))
    assert c.returncode == 0, c.stdout + c.stderr

    def replay(image: Path) -> dict:  # type: ignore[type-arg]
        out = fusetrace("replay", "--format", "json", str(small), "--", "squashfuse_ll",
                        str(image), "{}")  # fmt: skip
        assert out.returncode in (0, 1), out.stderr
        return json.loads(out.stdout)  # type: ignore[no-any-return]

    differences = replay(changed)["differences"]
    assert [(d["opcode"], d["field"]) for d in differences] == [("READ", "data")]
    assert replay(original)["differences"] == []


@pytest.mark.mount
@needs_fuse
def test_nothing_to_reduce_and_usage_errors(misbehaving_capture: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "small.pcapng")
    cap = str(misbehaving_capture)
    r = fusetrace("reduce", cap, "-w", out, "--rule", "FT204")  # no MKDIR in this session
    assert r.returncode == 2
    assert r.stderr.startswith("fusetrace: error:") and "FT204" in r.stderr
    assert len(r.stderr.splitlines()) == 1
    assert not os.path.exists(out)
    for args in (["--rule", "FT999"], [], ["--rule", "FT102", "--difference"], ["--difference"]):
        r = fusetrace("reduce", cap, "-w", out, *args)
        assert r.returncode == 2, (args, r.stderr)
    bad = tmp_path / "bad.pcapng"
    bad.write_bytes(b"nothing")
    r = fusetrace("reduce", str(bad), "-w", out, "--rule", "FT102")
    assert r.returncode == 3 and r.stderr.startswith("fusetrace: error:")
