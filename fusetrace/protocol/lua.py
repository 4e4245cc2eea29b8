"""The Wireshark dissector's tables, generated from the registry, the ABI and the schemas.

``fusetrace/data/fuse.lua`` keeps its opcode, no-reply, notification, errno and flag tables and
its struct sizes and field offsets (compat variants included) between two marker lines; this
module writes that block (:func:`lua_block`) and puts it into a dissector's text
(:func:`with_block`). ``scripts/regen-lua`` rewrites the shipped file; a test fails when the
shipped block differs from what the protocol package says (design.md §2). Pure: text in,
text out.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

import construct as c

from fusetrace.protocol.abi import (
    RETIRED_OPCODES,
    FattrFlag,
    FopenFlag,
    InitFlag,
    NotifyCode,
    Opcode,
    errno_name,
)
from fusetrace.protocol.registry import NO_REPLY_OPS
from fusetrace.protocol.schemas import flat, schemas

BEGIN = "-- BEGIN generated tables (fusetrace.protocol.lua; regenerate with scripts/regen-lua)"
END = "-- END generated tables"
#: Linux errno numbers the table covers (1 .. EHWPOISON)
ERRNO_MAX = 133
WIDTH = 96
_LUA_KEYWORDS = frozenset(
    {
        "and",
        "break",
        "do",
        "else",
        "elseif",
        "end",
        "false",
        "for",
        "function",
        "goto",
        "if",
        "in",
        "local",
        "nil",
        "not",
        "or",
        "repeat",
        "return",
        "then",
        "true",
        "until",
        "while",
    }
)


def _key(name: str) -> str:
    """A Lua table key: bare when it may be, ``["end"]`` for a keyword."""
    return f'["{name}"]' if name in _LUA_KEYWORDS or not name.isidentifier() else name


def _wrap(head: str, items: Iterable[str], tail: str = "}") -> list[str]:
    """``head`` then the items joined with ", " in lines of at most WIDTH, then ``tail``."""
    lines = [head]
    indent = " " * (len(head) - len(head.lstrip()) + 3)
    line = indent
    for item in items:
        piece = f" {item},"
        if len(line) + len(piece) > WIDTH:
            lines.append(line)
            line = indent
        line += piece
    if line.strip():
        lines.append(line)
    lines.append(tail)
    return lines


def _keyed(name: str, pairs: Iterable[tuple[int, str]], comment: str) -> list[str]:
    return [f"-- {comment}", *_wrap(f"local {name} = {{", (f'[{k}] = "{v}"' for k, v in pairs))]


def _bits(name: str, flags: type[enum.Flag], comment: str) -> list[str]:
    """A Lua sequence from index 0: bit n's name at [n] (no holes, so ``#`` works)."""
    by_bit = {int(m.value).bit_length() - 1: m.name for m in flags if m.name}
    top = max(by_bit)
    names = [by_bit.get(b, f"BIT{b}") for b in range(top + 1)]
    items = [f'[0] = "{names[0]}"', *(f'"{n}"' for n in names[1:])]
    return [f"-- {comment}", *_wrap(f"local {name} = {{", items)]


def _struct_fields(schema: object) -> list[tuple[str, int]]:
    """Top-level fields of a construct Struct and their offsets."""
    out: list[tuple[str, int]] = []
    pos = 0
    if not isinstance(schema, c.Struct):
        return out
    for sub in schema.subcons:
        if sub.name:
            out.append((sub.name, pos))
        pos += sub.sizeof()
    return out


def lua_block() -> str:
    """The generated block, marker lines included."""
    out = [BEGIN, ""]
    ops = sorted([(int(op), op.name) for op in Opcode] + list(RETIRED_OPCODES.items()))
    out += _keyed("OPCODES", ops, "opcode -> name (abi; GETDIR and INVALIDATE are retired)")
    out += [""]
    no_reply = ", ".join(f"[{int(op)}] = true" for op in sorted(NO_REPLY_OPS))
    out += [
        "-- requests the daemon must not answer: they never enter the pairing table",
        f"local NO_REPLY = {{ {no_reply} }}",
        "",
    ]
    out += _keyed("NOTIFY_CODES", ((int(n), n.name) for n in NotifyCode), "notification codes")
    out += [""]
    out += _keyed(
        "ERRNO",
        ((n, errno_name(n)) for n in range(1, ERRNO_MAX + 1) if not errno_name(n).isdigit()),
        "Linux errno names (protocol.abi.errno_name)",
    )
    out += [""]
    out += _bits(
        "INIT_FLAGS", InitFlag, "INIT flag bits: bit n of `flags` is n, bit n of `flags2` is 32 + n"
    )
    out += [""]
    out += _bits("FATTR", FattrFlag, "setattr valid bits")
    out += [""]
    out += _bits("FOPEN", FopenFlag, "open reply flags")
    out += [""]
    sizes = flat("<")
    out += [
        "-- struct sizes on the wire (schemas; *_compat: the size for old minors)",
        *_wrap("local SIZES = {", (f"{n} = {sizes[n].size}" for n in sorted(sizes))),
        "",
        "-- offsets of each struct's top-level fields",
        "local OFFSETS = {",
    ]
    all_schemas = schemas("<")
    for n in sorted(sizes):
        fields = (f"{_key(f)} = {o}" for f, o in _struct_fields(all_schemas[n]))
        out += _wrap(f"    {n} = {{", fields, "    },")
    out += ["}", "", END]
    return "\n".join(out) + "\n"


def with_block(source: str) -> str:
    """``source`` (a dissector) with its generated block replaced by the current one.

    Raises ValueError when the markers are missing or out of order."""
    start = source.find(BEGIN)
    end = source.find(END)
    if start < 0 or end < start:
        raise ValueError("the dissector has no generated-tables block")
    end = source.index("\n", end) + 1
    return source[:start] + lua_block() + source[end:]


def block_of(source: str) -> str:
    """The generated block as it stands in ``source`` ("" without markers)."""
    start = source.find(BEGIN)
    end = source.find(END)
    if start < 0 or end < start:
        return ""
    return source[start : source.index("\n", end) + 1]
