"""The ``fusetrace`` command: a thin click group. Exit statuses are decided here only.

Each sub-command lives in its own module and is a thin adapter: parse options, build library
objects, call them, report. Errors reach ``main`` as :class:`FusetraceError` and leave as one
line on stderr and the exit status the error names.
"""

from __future__ import annotations

import os
import sys

import click

from fusetrace import __version__
from fusetrace.errors import ExitCode, FusetraceError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="fusetrace")
def cli() -> None:
    """Record, decode, check and replay the Linux FUSE protocol.

    fusetrace sits between /dev/fuse and an unmodified FUSE daemon and captures every frame
    that crosses it into a pcapng file, which it can then decode, check against the kernel's
    protocol rules, or replay against another daemon.

    \b
    Typical session:
      fusetrace record -w trace.pcapng /mnt -- squashfuse_ll image.sqfs /mnt
      fusetrace decode trace.pcapng
      fusetrace check trace.pcapng

    Run `fusetrace COMMAND --help` for each command, `man fusetrace` for the whole story.
    """


def _register(argv: list[str] | None = None) -> None:
    """Add the sub-commands to the group: only the one named first on the command line when
    there is one (``fusetrace record ...`` then imports nothing of the other commands), else
    all of them (for ``--help`` and the like)."""
    from fusetrace.cli import commands

    args = sys.argv[1:] if argv is None else argv
    only = args[0] if args and args[0] in commands.COMMANDS else None
    for command in commands.load(only):
        cli.add_command(command)


def main() -> None:
    """Console entry point: runs the group, maps errors to exit statuses."""
    _register()
    try:
        # without standalone mode, click returns ctx.exit()'s status instead of exiting
        status = cli.main(prog_name="fusetrace", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("fusetrace: interrupted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except click.ClickException as e:
        e.show()
        sys.exit(ExitCode.USAGE if isinstance(e, click.UsageError) else e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except FusetraceError as e:
        click.echo(f"fusetrace: error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("fusetrace: interrupted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        # output piped into `head` and the like: not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(ExitCode.OK)
    except Exception:
        if os.environ.get("FUSETRACE_DEBUG"):
            raise
        import traceback

        tb = traceback.format_exc().strip().splitlines()
        click.echo(
            f"fusetrace: internal error: {tb[-1]} (set FUSETRACE_DEBUG=1 for the traceback, "
            "and please report it)",
            err=True,
        )
        sys.exit(70)
    sys.exit(status if isinstance(status, int) else ExitCode.OK)
