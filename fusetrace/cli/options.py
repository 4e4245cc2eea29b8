"""The options every command shares, so one flag means one thing everywhere.

A command gets the vocabulary by using these decorators instead of writing its own
``click.option``: ``-r`` reads a capture (a positional FILE works too), ``-w`` writes one,
``-o`` is mount options only, ``--format`` names an output format from one list, ``--output``
names the file it goes to, ``--fail-on`` sets the severity that makes a gating command exit 1,
``--timeout`` is how long the daemon may keep fusetrace waiting. Ids (unique, nodeid, fh) are
read in decimal or 0x-hex by :data:`ID`; frame numbers count from 1 as Wireshark counts them
and are read as numbers and ranges by :data:`FRAMES`.

Old spellings keep working for one release through :func:`renamed`, with a note on stderr.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

#: every output format name, in the order help texts list them
FORMATS = ("text", "json", "jsonl", "junit", "parquet")

#: what each format name means, wherever a command offers it
FORMAT_MEANING = {
    "text": "lines for people (a table on a terminal)",
    "json": "one JSON document",
    "jsonl": "one JSON object per line",
    "junit": "JUnit XML for CI",
    "parquet": "one Parquet row per frame, written to the --output file",
}

#: the severities --fail-on takes, mildest last
FAIL_ON = ("error", "warning")

ID_MAX = (1 << 64) - 1


class IdType(click.ParamType):
    """A FUSE id (unique, nodeid, fh): decimal, or hexadecimal with a 0x prefix."""

    name = "id"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            number = value
        else:
            text = str(value).strip().replace("_", "")
            try:
                hexa = text[:2].lower() == "0x"
                number = int(text[2:] if hexa else text, 16 if hexa else 10)
            except ValueError:
                self.fail(f"{value!r} is not an id (decimal, or hex as 0x1b5c)", param, ctx)
        if not 0 <= number <= ID_MAX:
            self.fail(f"{value!r} is out of range for a 64-bit id", param, ctx)
        return number


ID = IdType()


class FrameSet:
    """Frame numbers as Wireshark counts them (from 1): single numbers and ranges.

    ``hi`` None means open-ended (``100-``). Membership is tested with the 1-based number.
    """

    def __init__(self, ranges: Sequence[tuple[int, int | None]]) -> None:
        self.ranges = tuple(ranges)

    def __contains__(self, number: object) -> bool:
        if not isinstance(number, int):
            return False
        return any(lo <= number and (hi is None or number <= hi) for lo, hi in self.ranges)

    @property
    def last(self) -> int | None:
        """The highest number any range can hold; None when a range is open-ended."""
        highs = [hi for _, hi in self.ranges]
        return None if any(h is None for h in highs) else max(h for h in highs if h is not None)

    def __repr__(self) -> str:
        return f"FrameSet({self.ranges!r})"


class FramesType(click.ParamType):
    """``N``, ``N-M``, ``N-`` and comma-separated lists of them; numbers count from 1."""

    name = "frames"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> FrameSet:
        if isinstance(value, FrameSet):
            return value
        ranges: list[tuple[int, int | None]] = []
        for part in str(value).split(","):
            part = part.strip()
            if not part:
                continue
            lo_text, dash, hi_text = part.partition("-")
            try:
                lo = int(lo_text)
                hi = (int(hi_text) if hi_text.strip() else None) if dash else lo
            except ValueError:
                self.fail(f"{part!r} is not a frame number or range (N, N-M, N-)", param, ctx)
            if lo < 1:
                self.fail(f"{part!r}: frames are numbered from 1, as in Wireshark", param, ctx)
            if hi is not None and hi < lo:
                self.fail(f"{part!r}: the range ends before it starts", param, ctx)
            ranges.append((lo, hi))
        if not ranges:
            self.fail("no frame number given", param, ctx)
        return FrameSet(ranges)


FRAMES = FramesType()


def format_option(
    *names: str, default: str | None = "text", help: str | None = None, dest: str = "fmt"
) -> Callable[[F], F]:
    """``--format NAME``, offering ``names`` (a subset of :data:`FORMATS`)."""
    unknown = set(names) - set(FORMATS)
    assert not unknown, f"not in the shared format list: {unknown}"
    choices = [n for n in FORMATS if n in names]
    text = help or "Output format: " + "; ".join(f"{n}: {FORMAT_MEANING[n]}" for n in choices) + "."
    return click.option(
        "--format",
        dest,
        type=click.Choice(choices),
        default=default,
        show_default=True,
        help=text,
    )


def output_option(help: str | None = None, dest: str = "output") -> Callable[[F], F]:
    """``--output FILE``: where the report goes ('-' standard output, the default)."""
    return click.option(
        "--output",
        dest,
        type=click.Path(dir_okay=False, writable=True, allow_dash=True),
        default=None,
        metavar="FILE",
        help=help or "Write the report to FILE instead of standard output ('-').",
    )


def fail_on_option(help: str | None = None) -> Callable[[F], F]:
    """``--fail-on SEVERITY``: findings at or above it make the exit status 1."""
    return click.option(
        "--fail-on",
        type=click.Choice(list(FAIL_ON)),
        default="error",
        show_default=True,
        help=help or "Exit 1 when a finding of this severity or worse is reported.",
    )


def read_option(*, multiple: bool = False, dest: str = "read") -> Callable[[F], F]:
    """``-r/--read FILE``: the capture to read (the positional FILE does the same)."""
    return click.option(
        "-r",
        "--read",
        dest,
        multiple=multiple,
        metavar="FILE",
        help="Read the capture from FILE ('-' standard input); same as giving FILE as an "
        "argument." + (" Repeatable." if multiple else ""),
    )


def write_option(help: str | None = None, dest: str = "write", **kw: Any) -> Callable[[F], F]:
    """``-w/--write FILE``: write a capture (pcapng) to FILE ('-' standard output)."""
    return click.option(
        "-w",
        "--write",
        dest,
        metavar="FILE",
        help=help or "Write a capture (pcapng) to FILE ('-' standard output).",
        **kw,
    )


def mount_options_option(help: str | None = None, dest: str = "options") -> Callable[[F], F]:
    """``-o/--options OPT[,OPT...]``: mount options, as for mount(8). Repeatable."""
    return click.option(
        "-o",
        "--options",
        dest,
        multiple=True,
        metavar="OPT[,OPT...]",
        help=help or "Mount options, as for mount(8) (ro, allow_other, ...). Repeatable.",
    )


def timeout_option(
    default: float | None = None, help: str | None = None, dest: str = "timeout"
) -> Callable[[F], F]:
    """``--timeout SECONDS``: how long the daemon may keep fusetrace waiting."""
    return click.option(
        "--timeout",
        dest,
        type=click.FloatRange(min=0, min_open=True),
        default=default,
        show_default=default is not None,
        metavar="SECONDS",
        help=help or "Give up on the daemon when it keeps fusetrace waiting this long.",
    )


def capture_paths(
    read: Iterable[str] | str | None, positional: Iterable[str] | str | None
) -> list[str]:
    """The captures named by ``-r`` and by position, in that order; a usage error if none."""

    def as_list(v: Iterable[str] | str | None) -> list[str]:
        if v is None:
            return []
        return [v] if isinstance(v, str) else list(v)

    paths = as_list(read) + as_list(positional)
    if not paths:
        raise click.UsageError("no capture given: name it with -r FILE or as FILE")
    return paths


def renamed(old_to_new: dict[str, str]) -> Callable[[click.Command], click.Command]:
    """Keep old option spellings working for one release, with a note on stderr.

    Applied above ``@click.command``: before parsing, each old spelling on the command line
    (up to a ``--``) is replaced by the new one, so the command sees only the new name.
    ``-o`` style short spellings also match glued values (``-ofile``); long ones ``--x=v``.
    """

    def decorate(command: click.Command) -> click.Command:
        parse = command.parse_args

        def parse_args(ctx: click.Context, args: list[str]) -> list[str]:
            # shell completion parses too: no notes then
            quiet = ctx.resilient_parsing
            return parse(ctx, rewrite(args, old_to_new, command.name or "", quiet=quiet))

        command.parse_args = parse_args  # type: ignore[method-assign]
        command.renamed_options = dict(old_to_new)  # type: ignore[attr-defined]
        return command

    return decorate


def rewrite(
    args: list[str], old_to_new: dict[str, str], command: str = "", *, quiet: bool = False
) -> list[str]:
    """``args`` with old option spellings replaced (see :func:`renamed`)."""
    out: list[str] = []
    it = iter(args)
    for arg in it:
        if arg == "--":
            out.append(arg)
            out.extend(it)
            break
        new_arg = arg
        for old, new in old_to_new.items():
            if arg == old:
                new_arg = new
            elif old.startswith("--") and arg.startswith(old + "="):
                new_arg = new + arg[len(old) :]
            elif (
                len(old) == 2 and not old.startswith("--") and arg.startswith(old) and len(arg) > 2
            ):
                new_arg = f"{new}={arg[2:]}" if new.startswith("--") else new + arg[2:]
            else:
                continue
            where = f"fusetrace {command}: " if command else "fusetrace: "
            if not quiet:
                click.echo(
                    f"{where}warning: {old} is deprecated and will be removed in the next "
                    f"release; use {new.split('=')[0]}",
                    err=True,
                )
            break
        out.append(new_arg)
    return out
