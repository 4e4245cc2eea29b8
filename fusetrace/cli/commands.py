"""The sub-commands, by module. Each module defines a click command of the listed name."""

from __future__ import annotations

import importlib

import click

#: command name -> module under fusetrace.cli that defines it (as a function of that name,
#: with '-' read as '_').
COMMANDS: dict[str, str] = {
    "record": "record",
    "decode": "decode",
    "check": "check",
    "explain": "check",
    "rules": "check",
    "replay": "replay",
    "conform": "conform",
    "wireshark-plugin": "wireshark",
    "top": "top",
    "report": "htmlreport",
    "reduce": "reduce",
    "redact": "redact",
}


def load(only: str | None = None) -> list[click.Command]:
    """Import every command module and return its commands, or only the one defining
    command ``only`` (starting one command need not import all the others).

    A module that fails to import is an error, not a command left out: a command lost in
    packaging must stop the CLI, not vanish from it.
    """
    found: list[click.Command] = []
    for name, module in COMMANDS.items():
        if only is not None and name != only:
            continue
        full = f"fusetrace.cli.{module}"
        try:
            mod = importlib.import_module(full)
        except ImportError as e:
            raise CommandLoadError(
                f"command {name!r} cannot be loaded: {type(e).__name__}: {e}"
            ) from e
        command = getattr(mod, name.replace("-", "_"), None)
        if not isinstance(command, click.Command):
            raise CommandLoadError(f"command {name!r}: {full} defines no such command")
        found.append(command)
    return found


class CommandLoadError(Exception):
    """A listed command cannot be loaded: the installation is broken."""
