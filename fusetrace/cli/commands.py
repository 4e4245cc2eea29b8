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
}


def load(only: str | None = None) -> list[click.Command]:
    """Import every command module (or only the one defining command ``only``: starting
    one command need not import all the others); a module not written yet is left out."""
    found: list[click.Command] = []
    for name, module in COMMANDS.items():
        if only is not None and name != only:
            continue
        full = f"fusetrace.cli.{module}"
        try:
            mod = importlib.import_module(full)
        except ModuleNotFoundError as e:
            if e.name == full:
                continue
            raise
        found.append(getattr(mod, name.replace("-", "_")))
    return found
