"""The ``fusetrace`` command: a thin click group. Exit statuses are decided here only.

Each sub-command lives in its own module and is a thin adapter: parse options, build library
objects, call them, report. Errors reach ``main`` as :class:`FusetraceError` and leave as one
line on stderr and the exit status the error names.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

import click

from fusetrace import __version__
from fusetrace.errors import ExitCode, FusetraceError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@dataclass
class Result:
    """What a command found, as far as its exit status goes. Commands return one; the group
    turns it into the exit status in :func:`exit_status`, the one place that decides it.

    A command prints its whole report first, then returns: a capture cut short still gets
    every finding it held reported before the status says 3.
    """

    #: findings or differences at or above --fail-on
    failed: bool = False
    #: a capture ended inside a block (everything before it was reported)
    cut_short: bool = False
    #: a capture could not be read at all (one of several, for check)
    unreadable: bool = False
    #: the environment or the daemon failed (not root, daemon died or stopped answering)
    environment: bool = False
    #: interrupted by Ctrl-C
    interrupted: bool = False
    #: a status handed through unchanged: record exits with its daemon's non-zero status
    #: (128 + N when a signal ended it), or 128 + N when a signal N other than SIGINT
    #: ended fusetrace itself
    status: int | None = None

    @classmethod
    def from_status(cls, status: int, *, failed: bool = False) -> Result:
        """The result for a status a library call already chose (record's session)."""
        known = {
            ExitCode.OK: cls(failed=failed),
            ExitCode.FINDINGS: cls(failed=True),
            ExitCode.BAD_CAPTURE: cls(failed=failed, unreadable=True),
            ExitCode.ENVIRONMENT: cls(failed=failed, environment=True),
            ExitCode.INTERRUPTED: cls(failed=failed, interrupted=True),
        }
        return known.get(status) or cls(failed=failed, status=status)


def exit_status(result: Any) -> int:
    """The exit status for what a command returned (None: it had nothing to report).

    In order: a handed-through status, 130 interrupted, 4 environment, 3 unreadable or cut
    short capture, 1 findings at or above --fail-on, 0 clean.
    """
    if result is None:
        return ExitCode.OK
    if not isinstance(result, Result):
        raise TypeError(f"a command returned {type(result).__name__}, not a Result")
    if result.status:
        return result.status
    if result.interrupted:
        return ExitCode.INTERRUPTED
    if result.environment:
        return ExitCode.ENVIRONMENT
    if result.unreadable or result.cut_short:
        return ExitCode.BAD_CAPTURE
    if result.failed:
        return ExitCode.FINDINGS
    return ExitCode.OK


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
    Shell completion: eval "$(_FUSETRACE_COMPLETE=bash_source fusetrace)" (zsh_source,
    fish_source for the other shells).
    """


@cli.result_callback()
@click.pass_context
def _exit_with_status(ctx: click.Context, result: Any) -> None:
    ctx.exit(exit_status(result))


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
    from fusetrace.cli.commands import CommandLoadError

    try:
        _register()
    except CommandLoadError as e:
        if os.environ.get("FUSETRACE_DEBUG"):
            raise
        click.echo(f"fusetrace: internal error: {e} (the installation is broken)", err=True)
        sys.exit(ExitCode.INTERNAL)
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
        sys.exit(ExitCode.INTERNAL)
    code = status if isinstance(status, int) else ExitCode.OK
    if sys.argv[1:2] == ["record"]:
        # a recording ends at an unmount the user is waiting on: leave without the
        # interpreter's teardown (freeing every module), which takes longer than the unmount
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
