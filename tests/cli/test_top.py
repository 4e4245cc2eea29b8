"""`fusetrace top` on captures, and `record --top` drawn in a real terminal (tmux)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.mount import (
    ROOT,
    _start_time,
    alive,
    descendants,
    fusetrace_cmd,
    fusetrace_env,
    is_mounted,
    kill_all,
    stat_with_timeout,
    unmount,
)
from tests.support.trees import make_squashfs

CAPTURES = ROOT / "captures"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        fusetrace_cmd(*args), capture_output=True, text=True, env=fusetrace_env(), check=False
    )


def test_json_counts_equal_decode_stats() -> None:
    path = str(CAPTURES / "squashfuse_ll.pcapng")
    top = run("top", path, "--format", "json")
    stats = run("decode", "--stats", "--format", "json", path)
    assert top.returncode == 0 and stats.returncode == 0, top.stderr + stats.stderr
    mine = {r["opcode"]: r for r in json.loads(top.stdout)["opcodes"]}
    for row in json.loads(stats.stdout)["opcodes"]:
        assert mine[row["opcode"]]["requests"] == row["count"]
        assert sum(mine[row["opcode"]]["errors"].values()) == row["errors"]
    doc = json.loads(top.stdout)
    assert doc["connection"]["init_seen"] and doc["connection"]["max_background"] > 0


def test_text_table_reads_a_pipe() -> None:
    data = (CAPTURES / "fuse-overlayfs.pcapng").read_bytes()
    r = subprocess.run(
        fusetrace_cmd("top", "-", "--format", "text"),
        input=data,
        capture_output=True,
        env=fusetrace_env(),
        check=False,
    )
    assert r.returncode == 0, r.stderr
    text = r.stdout.decode()
    assert re.search(r"^GETXATTR\s+17\s.*ENODATA 15", text, re.M), text
    assert "max_background 12" in text


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("x.pcapng", "--attach", "/mnt"),
        ("x.pcapng", "-w", "out.pcapng"),
        ("--attach", "/proc"),
    ],
)
def test_usage_errors(args: tuple[str, ...]) -> None:
    r = run("top", *args)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr


def test_record_top_and_live_exclude_each_other(tmp_path: Path) -> None:
    r = run(
        "record", "--top", "--live", "-w", str(tmp_path / "t.pcapng"), str(tmp_path), "--", "true"
    )
    assert r.returncode == 2 and "--live" in r.stderr


def test_cut_short_capture_prints_what_it_has(tmp_path: Path) -> None:
    data = (CAPTURES / "squashfuse_ll.pcapng").read_bytes()
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(data[: len(data) - 100])
    r = run("top", str(cut), "--format", "json")
    assert r.returncode == 3 and "cut short" in r.stderr
    assert json.loads(r.stdout)["frames"] > 0


def test_unreadable_capture(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pcapng"
    bad.write_bytes(b"not a capture at all")
    r = run("top", str(bad), "--format", "json")
    assert r.returncode == 3 and "fusetrace: error:" in r.stderr


@pytest.mark.mount
@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_record_top_draws_in_a_terminal(tmp_path: Path, mountpoint: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(10):
        (src / f"f{i}.txt").write_text(f"file {i}\n" * 100)
    image = make_squashfs(src, tmp_path / "img.sqfs")
    cap = tmp_path / "t.pcapng"
    sock = f"fusetrace-test-{os.getpid()}"
    env = fusetrace_env({"TERM": "xterm-256color"})
    cmd = " ".join(
        fusetrace_cmd(
            "record",
            "--top",
            "-w",
            str(cap),
            str(mountpoint),
            "--",
            "squashfuse_ll",
            "-f",
            str(image),
            "{}",
        )
    )
    tmux = ["tmux", "-L", sock, "-f", "/dev/null"]
    subprocess.run(
        [
            *tmux,
            "new-session",
            "-d",
            "-x",
            "160",
            "-y",
            "50",
            "-s",
            "top",
            "-e",
            f"PYTHONPATH={env['PYTHONPATH']}",
            cmd,
        ],
        check=True,
        env=env,
    )
    pane_pid = int(
        subprocess.run(
            [*tmux, "display-message", "-p", "-t", "top", "#{pane_pid}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    pids = {pane_pid: _start_time(pane_pid) or ""}
    try:
        deadline = time.monotonic() + 30
        while not is_mounted(mountpoint):
            assert time.monotonic() < deadline, "the recording did not mount"
            time.sleep(0.05)
        assert stat_with_timeout(mountpoint, 20)
        pids.update(descendants(pane_pid))
        for name in sorted(os.listdir(mountpoint)):
            (mountpoint / name).read_bytes()
        screen = ""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            screen = subprocess.run(
                [*tmux, "capture-pane", "-p", "-t", "top"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            if re.search(r"^READ\s+\d+", screen, re.M) and re.search(
                r"^LOOKUP\s+1\d", screen, re.M
            ):
                break
            time.sleep(0.2)
        assert re.search(r"^LOOKUP\s+1\d\s", screen, re.M), screen
        assert re.search(r"^READ\s+\d+\s", screen, re.M), screen
        assert re.search(r"^opcode\s+requests\s+rate/s\s+in flight\s+p50\s+p99", screen, re.M)
        assert "max_background" in screen and str(cap) in screen
    finally:
        if is_mounted(mountpoint):
            unmount(mountpoint)
        deadline = time.monotonic() + 20
        pids.update(descendants(pane_pid))
        while time.monotonic() < deadline and alive(pids):
            time.sleep(0.1)
        subprocess.run([*tmux, "kill-server"], check=False)
        kill_all(pids)
    assert cap.exists() and cap.stat().st_size > 0
