"""The command root: exit statuses and one-line errors, as a user sees them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from fusetrace import __version__
from fusetrace.cli import Result, cli, commands, exit_status, main
from fusetrace.errors import CaptureError, ExitCode


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fusetrace", *args], capture_output=True, text=True, timeout=60
    )


def test_version_and_help() -> None:
    assert run("--version").stdout.strip().endswith(__version__)
    help_text = run("--help").stdout
    for name in ("record", "decode", "check", "replay"):
        assert name in help_text


def test_unknown_command_is_a_usage_error() -> None:
    r = run("no-such-command")
    assert r.returncode == ExitCode.USAGE
    assert "No such command" in r.stderr


@pytest.fixture
def scratch_command() -> object:
    @click.command("scratch-exit")
    @click.argument("what")
    @click.pass_context
    def scratch(ctx: click.Context, what: str) -> None:
        if what == "exit3":
            ctx.exit(3)
        if what == "capture":
            raise CaptureError("x.pcapng: not a pcapng capture")
        if what == "bug":
            raise RuntimeError("boom")

    cli.add_command(scratch)
    yield scratch
    cli.commands.pop("scratch-exit")


@pytest.mark.parametrize(
    ("what", "status", "stderr"),
    [
        ("exit3", 3, ""),
        ("fine", 0, ""),
        ("capture", 3, "fusetrace: error: x.pcapng: not a pcapng capture\n"),
        ("bug", 70, "fusetrace: internal error: RuntimeError: boom"),
    ],
)
def test_statuses_and_one_line_errors(
    scratch_command: object,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    what: str,
    status: int,
    stderr: str,
) -> None:
    monkeypatch.setattr(sys, "argv", ["fusetrace", "scratch-exit", what])
    monkeypatch.delenv("FUSETRACE_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == status
    err = capsys.readouterr().err
    assert err.startswith(stderr)
    assert err.count("\n") <= 1


# ---- one place decides the exit status ----------------------------------------------------


@pytest.mark.parametrize(
    ("result", "status"),
    [
        (None, 0),
        (Result(), 0),
        (Result(failed=True), 1),
        (Result(cut_short=True), 3),
        (Result(failed=True, cut_short=True), 3),  # the report was printed; the capture is short
        (Result(unreadable=True, failed=True), 3),
        (Result(environment=True, cut_short=True), 4),
        (Result(interrupted=True, environment=True), 130),
        (Result(status=143, failed=True), 143),
        (Result.from_status(0), 0),
        (Result.from_status(1), 1),
        (Result.from_status(4), 4),
        (Result.from_status(130), 130),
        (Result.from_status(137), 137),
    ],
)
def test_exit_status_from_the_result(result: Result | None, status: int) -> None:
    assert exit_status(result) == status


def test_a_command_returning_a_result_exits_with_its_status(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    @click.command("scratch-result")
    def scratch() -> Result:
        click.echo("report")
        return Result(failed=True, cut_short=True)

    cli.add_command(scratch)
    try:
        monkeypatch.setattr(sys, "argv", ["fusetrace", "scratch-result"])
        with pytest.raises(SystemExit) as exc:
            main()
    finally:
        cli.commands.pop("scratch-result")
    assert exc.value.code == 3
    assert capsys.readouterr().out == "report\n"


# ---- a command lost in packaging stops the CLI ------------------------------------------


def test_a_command_module_that_fails_to_import_fails_loudly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(commands.COMMANDS, "lost", "no_such_module")
    with pytest.raises(commands.CommandLoadError, match="'lost' cannot be loaded"):
        commands.load()
    monkeypatch.setattr(sys, "argv", ["fusetrace", "--help"])
    monkeypatch.delenv("FUSETRACE_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == ExitCode.INTERNAL
    err = capsys.readouterr().err
    assert err.startswith("fusetrace: internal error: command 'lost' cannot be loaded: ")
    assert "fusetrace.cli.no_such_module" in err and err.count("\n") == 1


def test_a_module_without_its_command_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(commands.COMMANDS, "frobnicate", "check")
    with pytest.raises(commands.CommandLoadError, match="defines no such command"):
        commands.load()


# ---- shell completion ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shell", "marker"),
    [
        ("bash", "complete -o nosort -F _fusetrace_completion fusetrace"),
        ("zsh", "compdef _fusetrace_completion fusetrace"),
        ("fish", "complete --no-files --command fusetrace"),
    ],
)
def test_completion_scripts_generate(shell: str, marker: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "fusetrace"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "_FUSETRACE_COMPLETE": f"{shell}_source"},
    )
    assert r.returncode == 0, r.stderr
    assert marker in r.stdout
    assert "_FUSETRACE_COMPLETE" in r.stdout


def test_bash_completion_completes_commands_and_choices() -> None:
    def complete(words: str, cword: int) -> list[str]:
        env = {
            **os.environ,
            "_FUSETRACE_COMPLETE": "bash_complete",
            "COMP_WORDS": words,
            "COMP_CWORD": str(cword),
        }
        r = subprocess.run(
            [sys.executable, "-m", "fusetrace"], capture_output=True, text=True, env=env, timeout=60
        )
        assert r.returncode == 0, r.stderr
        return [line.split(",", 1)[1] for line in r.stdout.splitlines()]

    assert complete("fusetrace dec", 1) == ["decode"]
    assert complete("fusetrace check --format ", 3) == ["text", "json", "junit"]
    assert complete("fusetrace replay --fail-on ", 3) == ["error", "warning"]


# ---- a capture cut short: every command reports, then exits 3 ------------------------------


@pytest.fixture(scope="module")
def cut_capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A real session (fakefs behind a scripted kernel) whose last block is cut in half;
    returns the file and the number of whole frames it still holds."""
    from fusetrace.capture import CaptureReader
    from tests.replay.kernel import record_fakefs_session

    path = tmp_path_factory.mktemp("cut") / "cut.pcapng"
    record_fakefs_session(str(path))
    with path.open("rb") as f:
        whole = sum(1 for _ in CaptureReader(f))
    path.write_bytes(path.read_bytes()[:-40])
    return path, whole - 1


def test_decode_reports_a_cut_capture_then_exits_3(cut_capture: tuple[Path, int]) -> None:
    path, frames = cut_capture
    r = run("decode", "-r", str(path))
    assert r.returncode == ExitCode.BAD_CAPTURE, r.stderr
    assert len(r.stdout.splitlines()) == frames
    assert r.stdout.splitlines()[-1].split()[0] == str(frames)  # numbered from 1
    assert "cut short" in r.stderr


def test_check_reports_a_cut_capture_then_exits_3(cut_capture: tuple[Path, int]) -> None:
    path, frames = cut_capture
    r = run("check", "--format", "json", str(path))
    assert r.returncode == ExitCode.BAD_CAPTURE, r.stderr
    doc = json.loads(r.stdout)
    assert doc["captures"][0]["frames"] == frames and doc["captures"][0]["truncated"] is True
    r = run("check", str(path))
    assert r.returncode == ExitCode.BAD_CAPTURE
    assert f"{frames} frames" in r.stdout and "(capture cut short)" in r.stdout
    assert "cut short" in r.stderr


def test_replay_reports_a_cut_capture_then_exits_3(cut_capture: tuple[Path, int]) -> None:
    from tests.replay.kernel import FAKEFS

    path, _ = cut_capture
    r = run("replay", "--format", "json", "-r", str(path), "--", sys.executable, FAKEFS, "{}")
    assert r.returncode == ExitCode.BAD_CAPTURE, r.stderr
    doc = json.loads(r.stdout)
    assert doc["summary"]["outcome"] == "completed"
    assert doc["summary"]["replies_compared"] > 10
    assert doc["differences"] == []
    assert "cut short" in r.stderr
