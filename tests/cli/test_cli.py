"""The command root: exit statuses and one-line errors, as a user sees them."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from fusetrace import __version__
from fusetrace.cli import cli, main
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
