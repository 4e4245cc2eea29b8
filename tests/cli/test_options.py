"""The shared option vocabulary: id and frame types, renamed spellings, and every command's
``--help`` speaking the same language (same flag, same meaning, same choices)."""

from __future__ import annotations

import click
import pytest

from fusetrace.cli import cli, commands, options

COMMANDS = commands.load()
for _c in COMMANDS:
    if _c.name not in cli.commands:
        cli.add_command(_c)

#: commands that gate a CI job on what they find: each has --fail-on
GATING = {"check", "decode", "record", "replay", "conform"}


@pytest.mark.parametrize(
    ("text", "value"),
    [("7004", 7004), ("0x1b5c", 0x1B5C), ("0X1B5C", 0x1B5C), ("0", 0), (str(2**64 - 1), 2**64 - 1)],
)
def test_ids_read_decimal_and_hex(text: str, value: int) -> None:
    assert options.ID.convert(text, None, None) == value


@pytest.mark.parametrize("text", ["0x", "1b5c", "-1", "12.5", str(2**64), "0o17"])
def test_bad_ids_are_usage_errors(text: str) -> None:
    with pytest.raises(click.BadParameter):
        options.ID.convert(text, None, None)


def test_frame_numbers_and_ranges() -> None:
    frames = options.FRAMES.convert("5,100-200,900-", None, None)
    assert [n for n in (1, 4, 5, 6, 99, 100, 150, 200, 201, 899, 900, 10**6) if n in frames] == [
        5,
        100,
        150,
        200,
        900,
        10**6,
    ]
    assert frames.last is None
    assert options.FRAMES.convert("3-4,10", None, None).last == 10


@pytest.mark.parametrize("text", ["0", "5-3", "x", "1-2-3", ","])
def test_bad_frames_are_usage_errors(text: str) -> None:
    with pytest.raises(click.BadParameter):
        options.FRAMES.convert(text, None, None)


def test_renamed_spellings_are_rewritten_with_a_note(capsys: pytest.CaptureFixture[str]) -> None:
    renames = {"-o": "--output", "--daemon-timeout": "--timeout"}
    args = ["-o", "f.xml", "--daemon-timeout=3", "-of2", "x", "--", "-o", "ro"]
    assert options.rewrite(args, renames, "check") == [
        "--output",
        "f.xml",
        "--timeout=3",
        "--output=f2",
        "x",
        "--",
        "-o",
        "ro",
    ]
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3
    assert err[0] == (
        "fusetrace check: warning: -o is deprecated and will be removed in the next release; "
        "use --output"
    )


def test_capture_paths() -> None:
    assert options.capture_paths(("a",), ("b", "c")) == ["a", "b", "c"]
    assert options.capture_paths(None, "x") == ["x"]
    with pytest.raises(click.UsageError):
        options.capture_paths((), ())


# ---- the vocabulary, across every command ----------------------------------------------


def option_table() -> dict[str, dict[str, click.Option]]:
    """command name -> every spelling of each of its options -> the option."""
    table: dict[str, dict[str, click.Option]] = {}
    for command in COMMANDS:
        spellings: dict[str, click.Option] = {}
        for p in command.params:
            if isinstance(p, click.Option) and not p.hidden:
                for o in p.opts + p.secondary_opts:
                    spellings[o] = p
        table[command.name or ""] = spellings
    return table


def help_text(command: click.Command) -> str:
    with click.Context(command, info_name=command.name, parent=click.Context(cli)) as ctx:
        return command.get_help(ctx)


def choices(p: click.Option) -> list[str]:
    assert isinstance(p.type, click.Choice)
    return list(p.type.choices)  # type: ignore[arg-type]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.name)
def test_every_help_speaks_the_shared_vocabulary(command: click.Command) -> None:
    spellings = option_table()[command.name or ""]
    text = help_text(command)
    for flag in spellings:
        assert flag in text, f"{command.name} --help does not show {flag}"
    # one meaning per short flag
    if "-w" in spellings:
        assert spellings["-w"].opts == ["-w", "--write"] and spellings["-w"].metavar == "FILE"
    if "-r" in spellings:
        assert spellings["-r"].opts == ["-r", "--read"] and spellings["-r"].metavar == "FILE"
    if "-o" in spellings:
        o = spellings["-o"]
        assert o.opts == ["-o", "--options"] and o.multiple, "-o is mount options only"
    for long, short in (("--write", "-w"), ("--read", "-r"), ("--options", "-o")):
        if long in spellings:
            assert short in spellings[long].opts
    if "--output" in spellings:
        assert spellings["--output"].opts == ["--output"]  # no short form: -o is taken
    # one output switch, one list of names, in one order
    assert "--report" not in spellings and "--json" not in spellings
    if "--format" in spellings:
        names = choices(spellings["--format"])
        assert set(names) <= set(options.FORMATS)
        assert names == sorted(names, key=options.FORMATS.index)
        assert spellings["--format"].default == "text"
        assert spellings["--format"].name == "fmt"
    # the gate
    if command.name in GATING:
        assert "--fail-on" in spellings, f"{command.name} gates but has no --fail-on"
    if "--fail-on" in spellings:
        p = spellings["--fail-on"]
        assert choices(p) == list(options.FAIL_ON) and p.default == "error"
    # one timeout name
    assert not [s for s in spellings if "timeout" in s and s != "--timeout"], "one timeout name"
    if "--timeout" in spellings:
        p = spellings["--timeout"]
        assert isinstance(p.type, click.FloatRange) and p.metavar == "SECONDS"
    # ids read decimal and 0x-hex
    for flag in ("--unique", "--nodeid", "--fh"):
        if flag in spellings:
            assert isinstance(spellings[flag].type, options.IdType), flag


def test_the_vocabulary_is_used_at_all() -> None:
    """Guards the test above against passing on commands that lost their options."""
    table = option_table()
    assert {n for n, s in table.items() if "--fail-on" in s} == GATING
    assert {n for n, s in table.items() if "-w" in s} >= {"record", "replay", "conform"}
    assert {n for n, s in table.items() if "-r" in s} >= {"decode", "check", "replay"}
    assert {n for n, s in table.items() if "-o" in s} == {"record", "conform"}
    assert {n for n, s in table.items() if "--timeout" in s} >= {"record", "replay", "conform"}
    formats = {n: choices(s["--format"]) for n, s in table.items() if "--format" in s}
    assert formats["check"] == ["text", "json", "junit"]
    assert formats["conform"] == ["text", "json", "junit"]
    assert formats["decode"] == ["text", "json", "jsonl", "parquet"]


@pytest.mark.parametrize(
    ("command", "args", "param", "value"),
    [
        ("check", ["-o", "r.xml", "a.pcapng"], "output", "r.xml"),
        (
            "record",
            ["--daemon-timeout", "2.5", "-w", "t", "/mnt", "--", "d"],
            "daemon_timeout",
            2.5,
        ),
        ("conform", ["--report", "j.xml", "/mnt", "--", "d"], "junit", "j.xml"),
        ("conform", ["--json", "r.json", "/mnt", "--", "d"], "json_path", "r.json"),
    ],
)
def test_old_spellings_still_parse_with_a_note(
    command: str, args: list[str], param: str, value: object, capsys: pytest.CaptureFixture[str]
) -> None:
    cmd = cli.commands[command]
    with cmd.make_context(command, list(args), parent=click.Context(cli)) as ctx:
        assert ctx.params[param] == value
    err = capsys.readouterr().err
    assert err.startswith(f"fusetrace {command}: warning: ") and "is deprecated" in err
