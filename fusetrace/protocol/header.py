"""The two frame headers, read with ``struct`` (the hot path: proxy and tracker use only these).

``fuse_in_header`` (40 bytes) starts every kernel → daemon message, ``fuse_out_header``
(16 bytes) every daemon → kernel message (protocol.md §1). The construct mirrors
``fuse_in_header`` / ``fuse_out_header`` in :mod:`fusetrace.protocol.schemas` describe the
same layouts; a test checks that they agree.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from fusetrace.errors import DecodeError

IN_HEADER_SIZE = 40
OUT_HEADER_SIZE = 16

_IN = {o: struct.Struct(o + "IIQQIIIHH") for o in ("<", ">")}
_OUT = {o: struct.Struct(o + "IiQ") for o in ("<", ">")}


class InHeader(NamedTuple):
    """``fuse_in_header``."""

    len: int
    opcode: int
    unique: int
    nodeid: int
    uid: int
    gid: int
    pid: int
    total_extlen: int = 0
    padding: int = 0


class OutHeader(NamedTuple):
    """``fuse_out_header``. ``error`` is signed: 0, a negative errno, or a notify code."""

    len: int
    error: int
    unique: int


def byte_order_char(order: str) -> str:
    """'<' or '>' from any of '<', '>', 'little', 'big'."""
    if order in ("<", "little"):
        return "<"
    if order in (">", "big"):
        return ">"
    raise ValueError(f"unknown byte order {order!r}")


def parse_in_header(data: bytes, order: str = "<") -> InHeader:
    """Read the 40-byte request header; DecodeError if fewer than 40 bytes."""
    try:
        return InHeader._make(_IN[order].unpack_from(data))
    except KeyError:
        return parse_in_header(data, byte_order_char(order))
    except struct.error:
        raise DecodeError(
            f"request header cut short: {len(data)} of {IN_HEADER_SIZE} bytes"
        ) from None


def parse_out_header(data: bytes, order: str = "<") -> OutHeader:
    """Read the 16-byte reply/notification header; DecodeError if fewer than 16 bytes."""
    try:
        return OutHeader._make(_OUT[order].unpack_from(data))
    except KeyError:
        return parse_out_header(data, byte_order_char(order))
    except struct.error:
        raise DecodeError(
            f"reply header cut short: {len(data)} of {OUT_HEADER_SIZE} bytes"
        ) from None


def pack_in_header(header: InHeader, order: str = "<") -> bytes:
    return _IN[byte_order_char(order)].pack(*header)


def pack_out_header(header: OutHeader, order: str = "<") -> bytes:
    return _OUT[byte_order_char(order)].pack(*header)


def in_header_struct(order: str = "<") -> struct.Struct:
    """The ``struct.Struct`` behind :func:`parse_in_header`, for callers that unpack in bulk."""
    return _IN[byte_order_char(order)]


def out_header_struct(order: str = "<") -> struct.Struct:
    return _OUT[byte_order_char(order)]
