"""The struct-based headers agree with the construct mirrors, in both byte orders."""

from __future__ import annotations

import pytest

from fusetrace.errors import DecodeError
from fusetrace.protocol.header import (
    IN_HEADER_SIZE,
    OUT_HEADER_SIZE,
    InHeader,
    OutHeader,
    pack_in_header,
    pack_out_header,
    parse_in_header,
    parse_out_header,
)
from fusetrace.protocol.schemas import plain, schemas

IN = InHeader(56, 1, 10, 1, 1000, 1001, 4242, 0, 0)
OUT = OutHeader(144, -2, 10)


@pytest.mark.parametrize("order", ["<", ">", "little", "big"])
def test_roundtrip_and_construct_mirror(order: str) -> None:
    raw = pack_in_header(IN, order)
    assert len(raw) == IN_HEADER_SIZE
    assert parse_in_header(raw, order) == IN
    o = "<" if order in ("<", "little") else ">"
    assert plain(schemas(o)["fuse_in_header"].parse(raw)) == IN._asdict()
    raw = pack_out_header(OUT, order)
    assert len(raw) == OUT_HEADER_SIZE
    assert parse_out_header(raw, order) == OUT
    assert plain(schemas(o)["fuse_out_header"].parse(raw)) == OUT._asdict()


def test_layout_little_endian() -> None:
    raw = pack_in_header(IN)
    assert raw[:4] == (56).to_bytes(4, "little") and raw[8:16] == (10).to_bytes(8, "little")
    assert pack_out_header(OUT)[4:8] == (-2).to_bytes(4, "little", signed=True)


def test_extra_bytes_are_ignored_by_the_header_parsers() -> None:
    assert parse_in_header(pack_in_header(IN) + b"body") == IN


def test_short_headers() -> None:
    with pytest.raises(DecodeError, match="cut short"):
        parse_in_header(bytes(39))
    with pytest.raises(DecodeError, match="cut short"):
        parse_out_header(bytes(15), ">")
