"""``fusetrace wireshark-plugin``: install or locate the shipped Wireshark Lua dissector."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

import click

from fusetrace.errors import EnvironmentProblem

PLUGIN_NAME = "fuse.lua"


def shipped_plugin() -> Path:
    """Where the dissector shipped with this installation lives on disk."""
    path = Path(str(resources.files("fusetrace").joinpath("data", PLUGIN_NAME)))
    if not path.is_file():
        raise EnvironmentProblem(
            f"the Wireshark dissector is missing from this installation ({path})",
            hint="reinstall fusetrace",
        )
    return path


def personal_plugin_dir() -> Path:
    """Wireshark's personal Lua plugin folder.

    Asks tshark (`tshark -G folders`, line "Personal Lua Plugins") when it is installed;
    otherwise uses the folder Wireshark 2.6 and later use on Linux and macOS,
    ``~/.local/lib/wireshark/plugins`` (Wireshark does not follow XDG_CONFIG_HOME here).
    """
    tshark = shutil.which("tshark")
    if tshark:
        try:
            out = subprocess.run(
                [tshark, "-G", "folders"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Personal Lua Plugins" and value.strip():
                return Path(value.strip())
    return Path.home() / ".local" / "lib" / "wireshark" / "plugins"


def install(source: Path, dest_dir: Path) -> Path:
    """Copy the dissector into dest_dir (created if needed); returns the installed file."""
    target = dest_dir / PLUGIN_NAME
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".fuse.lua.", dir=dest_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(source.read_bytes())
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as e:
        where = f"{e.filename}: " if e.filename and str(e.filename) != str(dest_dir) else ""
        raise EnvironmentProblem(
            f"cannot install the dissector into {dest_dir}: {where}{e.strerror}",
            hint="choose a writable folder with --dest",
        ) from None
    return target


@click.command("wireshark-plugin")
@click.option(
    "--install",
    "do_install",
    is_flag=True,
    help="Copy the dissector into Wireshark's personal Lua plugin folder (or --dest).",
)
@click.option(
    "--print-path",
    is_flag=True,
    help="Print the path of the dissector shipped with fusetrace, and nothing else.",
)
@click.option(
    "--dest",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Install into this folder instead of the personal plugin folder.",
)
def wireshark_plugin(do_install: bool, print_path: bool, dest: Path | None) -> None:
    """Install or locate the Wireshark dissector for fusetrace captures.

    fusetrace ships a Lua dissector (fuse.lua) that lets Wireshark and tshark decode its
    pcapng captures: every opcode and notification, errors by name, the main request and
    reply structures, and request/reply pairing with response times. Display filters use
    fields such as fuse.opcode, fuse.unique, fuse.nodeid, fuse.error, fuse.name, fuse.fh;
    for a reply, fuse.opcode is the opcode of its request.

    Without options, shows where the dissector is, where --install would put it, and how
    to use it without installing.

    \b
    Examples:
      fusetrace wireshark-plugin --install
      tshark -r trace.pcapng -Y 'fuse.opcode == 15'
      tshark -X lua_script:$(fusetrace wireshark-plugin --print-path) -r trace.pcapng
    """
    if do_install and print_path:
        raise click.UsageError("--install and --print-path exclude each other")
    source = shipped_plugin()
    if print_path:
        click.echo(str(source))
        return
    dest_dir = dest if dest is not None else personal_plugin_dir()
    if do_install:
        existed = (dest_dir / PLUGIN_NAME).exists()
        target = install(source, dest_dir)
        click.echo(f"{'replaced' if existed else 'installed'} {target}")
        if dest is None:
            click.echo("Wireshark and tshark load it at start: tshark -r capture.pcapng")
        else:
            click.echo(f"load it with: tshark -X lua_script:{target} -r capture.pcapng")
        return
    click.echo(f"shipped dissector:   {source}")
    click.echo(f"--install copies to: {dest_dir / PLUGIN_NAME}")
    click.echo("use it without installing:")
    click.echo(f"  tshark -X lua_script:{source} -r capture.pcapng")
