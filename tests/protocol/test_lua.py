"""The dissector's generated tables: current, and what they are made of (no tshark needed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fusetrace.protocol.abi import Opcode, errno_name
from fusetrace.protocol.lua import BEGIN, END, block_of, lua_block, with_block
from fusetrace.protocol.registry import NO_REPLY_OPS

PLUGIN = Path(__file__).resolve().parents[2] / "fusetrace" / "data" / "fuse.lua"


def test_shipped_block_is_current() -> None:
    """Fails when the registry, the ABI or the schemas changed and fuse.lua was not
    regenerated (scripts/regen-lua)."""
    text = PLUGIN.read_text()
    assert block_of(text) == lua_block(), "fuse.lua is stale: run scripts/regen-lua"
    assert text.count(BEGIN) == 1 and text.count(END) == 1


def test_a_stale_block_is_noticed_and_replaced() -> None:
    text = PLUGIN.read_text()
    stale = text.replace('[15] = "READ"', '[15] = "READX"')
    assert block_of(stale) != lua_block()
    assert with_block(stale) == text
    with pytest.raises(ValueError):
        with_block("-- no markers")


def test_block_holds_the_protocol_tables() -> None:
    block = lua_block()
    opcodes = dict(re.findall(r'\[(\d+)\] = "([A-Z0-9_]+)"', block.split("local NO_REPLY")[0]))
    assert {int(k) for k in opcodes} >= {int(op) for op in Opcode}
    no_reply = re.search(r"local NO_REPLY = \{(.*)\}", block)
    assert no_reply is not None
    assert {int(n) for n in re.findall(r"\[(\d+)\]", no_reply.group(1))} == set(NO_REPLY_OPS)
    assert '[95] = "EOPNOTSUPP"' in block and errno_name(95) == "EOPNOTSUPP"
    assert "fuse_entry_out = 128" in block and "fuse_entry_out_compat = 120" in block
    assert '["end"] = 8' in block  # fuse_file_lock.end: a Lua keyword, quoted
