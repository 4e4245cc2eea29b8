"""The man pages follow the CLI: every command has a page naming each of its options."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from fusetrace.cli import cli, commands

MAN = Path(__file__).resolve().parent.parent / "man"
COMMANDS = commands.load()


def roff_text(path: Path) -> str:
    # roff escapes a hyphen as \- ; compare against plain text
    return path.read_text().replace("\\-", "-").replace("\\f[BIR]", "").replace("\\fP", "")


def long_options(command: click.Command) -> list[str]:
    names = []
    for param in command.params:
        if isinstance(param, click.Option):
            names.extend(o for o in param.opts + param.secondary_opts if o.startswith("--"))
    return [n for n in names if n != "--help"]


def test_main_page_lists_every_command_and_exit_status() -> None:
    text = roff_text(MAN / "fusetrace.1")
    for command in COMMANDS:
        assert f"fusetrace-{command.name}" in text, command.name
    for code in ("0", "1", "2", "3", "4", "130"):
        assert re.search(rf"^\.IP {code}$|^\.TP\n\.B {code}$", text, re.M), code


def test_main_page_names_the_global_options() -> None:
    text = roff_text(MAN / "fusetrace.1")
    for option in long_options(cli):
        assert option in text


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.name)
def test_command_page_names_every_option(command: click.Command) -> None:
    page = MAN / f"fusetrace-{command.name}.1"
    assert page.exists(), f"{page.name} is missing"
    text = roff_text(page)
    assert re.search(r"^\.SH SYNOPSIS", text, re.M)
    missing = [o for o in long_options(command) if o not in text]
    assert not missing, f"{page.name} does not document {missing}"


def test_no_page_for_a_command_that_does_not_exist() -> None:
    names = {f"fusetrace-{c.name}.1" for c in COMMANDS} | {"fusetrace.1"}
    stale = [p.name for p in MAN.glob("*.1") if p.name not in names]
    assert not stale, f"man pages for unknown commands: {stale}"
