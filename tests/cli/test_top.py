"""`fusetrace top` on captures, and `record --top` drawn in a real terminal (tmux)."""

from __future__ import annotations

import json
import os
import re
import shlex
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
    native_mount,
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


class Pane:
    """A command running in a tmux pane of its own (a private tmux server)."""

    def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
        self.tmux = ["tmux", "-L", f"fusetrace-test-{os.getpid()}", "-f", "/dev/null"]
        subprocess.run(
            [
                *self.tmux,
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
                shlex.join(cmd),
            ],
            check=True,
            env=env,
        )
        out = subprocess.run(
            [*self.tmux, "display-message", "-p", "-t", "top", "#{pane_pid}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        self.pid = int(out)
        self.pids = {self.pid: _start_time(self.pid) or ""}

    def text(self) -> str:
        r = subprocess.run(
            [*self.tmux, "capture-pane", "-p", "-t", "top"],
            capture_output=True,
            text=True,
            check=False,
        )
        return r.stdout

    def wait_for(self, *patterns: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        screen = self.text()
        while not all(re.search(p, screen, re.M) for p in patterns):
            if time.monotonic() > deadline:
                raise AssertionError(f"the pane never showed {patterns}:\n{screen}")
            time.sleep(0.2)
            screen = self.text()
        return screen

    def close(self, end_timeout: float = 20) -> None:
        self.pids.update(descendants(self.pid))
        deadline = time.monotonic() + end_timeout
        while time.monotonic() < deadline and alive(self.pids):
            time.sleep(0.1)
        subprocess.run([*self.tmux, "kill-server"], check=False, stderr=subprocess.DEVNULL)
        kill_all(self.pids)


def _image(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(10):
        (src / f"f{i}.txt").write_text(f"file {i}\n" * 100)
    return make_squashfs(src, tmp_path / "img.sqfs")


@pytest.mark.mount
@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_record_top_draws_in_a_terminal(tmp_path: Path, mountpoint: Path) -> None:
    image = _image(tmp_path)
    cap = tmp_path / "t.pcapng"
    cmd = fusetrace_cmd(
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
    pane = Pane(cmd, fusetrace_env({"TERM": "xterm-256color"}))
    try:
        deadline = time.monotonic() + 30
        while not is_mounted(mountpoint):
            assert time.monotonic() < deadline, "the recording did not mount:\n" + pane.text()
            time.sleep(0.05)
        assert stat_with_timeout(mountpoint, 20)
        pane.pids.update(descendants(pane.pid))
        for name in sorted(os.listdir(mountpoint)):
            (mountpoint / name).read_bytes()
        screen = pane.wait_for(r"^LOOKUP\s+1\d\s", r"^READ\s+\d+\s")
        assert re.search(r"^opcode\s+requests\s+rate/s\s+in flight\s+p50\s+p99", screen, re.M)
        assert "max_background" in screen and str(cap) in screen
    finally:
        if is_mounted(mountpoint):
            unmount(mountpoint)
        pane.close()
    assert cap.exists() and cap.stat().st_size > 0


@pytest.mark.mount
@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_attach_screen_says_what_tracepoints_cannot_show(tmp_path: Path, mountpoint: Path) -> None:
    image = _image(tmp_path)
    with native_mount(["squashfuse_ll", "-f", str(image), str(mountpoint)], mountpoint):
        pane = Pane(
            fusetrace_cmd("top", "--attach", str(mountpoint)),
            fusetrace_env({"TERM": "xterm-256color"}),
        )
        try:
            pane.wait_for(r"through fuse tracepoints")
            for name in sorted(os.listdir(mountpoint)):
                (mountpoint / name).read_bytes()
            screen = pane.wait_for(r"^LOOKUP\s+1\d\s", r"^READ\s+\d+\s")
            assert "tracepoints cannot show: node ids" in screen
            assert "FORGET" in screen and "INTERRUPT" in screen
            subprocess.run([*pane.tmux, "send-keys", "-t", "top", "C-c"], check=True)
            pane.pids.update(descendants(pane.pid))
            deadline = time.monotonic() + 20
            while alive(pane.pids) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not alive(pane.pids), pane.text()
        finally:
            pane.close()
    leftovers = (
        [d for d in os.listdir("/sys/kernel/tracing/instances") if "fusetrace" in d]
        if os.path.isdir("/sys/kernel/tracing/instances")
        else []
    )
    assert not leftovers
