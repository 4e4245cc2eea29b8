"""Every listed command module loads and defines the command it is listed for."""

from __future__ import annotations

from fusetrace.cli import commands


def test_every_listed_command_loads() -> None:
    loaded = {c.name for c in commands.load()}
    assert loaded == set(commands.COMMANDS)
