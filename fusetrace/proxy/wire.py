"""The few wire facts the forwarding path needs, taken from :mod:`fusetrace.protocol`.

Only ``struct`` here: the forwarding path reads the 40-byte ``fuse_in_header`` and the 16-byte
``fuse_out_header`` and nothing else (design.md §3). The INIT pair, once per mount, is read
and rewritten field by field at fixed offsets (protocol.md §3.1).
"""

from __future__ import annotations

import struct
import sys

from fusetrace.protocol.abi import FUSE_INT_REQ_BIT, InitFlag, Opcode
from fusetrace.protocol.header import (
    IN_HEADER_SIZE,
    OUT_HEADER_SIZE,
    in_header_struct,
    out_header_struct,
)
from fusetrace.protocol.registry import NOT_AWAITED_OPS

#: frames cross /dev/fuse in host byte order
HOST = sys.byteorder
#: fuse_in_header: len u32, opcode u32, unique u64, nodeid u64, uid, gid, pid u32,
#: total_extlen u16, padding u16
IN_HEADER = in_header_struct(HOST)
#: fuse_out_header: len u32, error i32, unique u64
OUT_HEADER = out_header_struct(HOST)
IN_HEADER_LEN = IN_HEADER_SIZE  # 40
OUT_HEADER_LEN = OUT_HEADER_SIZE  # 16

_O = "<" if HOST == "little" else ">"
#: len and opcode, the first 8 bytes of a request
IN_LEN_OPCODE = struct.Struct(_O + "II")
U32 = struct.Struct(_O + "I")

OP_FORGET = int(Opcode.FORGET)
OP_INIT = int(Opcode.INIT)
OP_INTERRUPT = int(Opcode.INTERRUPT)
OP_NOTIFY_REPLY = int(Opcode.NOTIFY_REPLY)
OP_BATCH_FORGET = int(Opcode.BATCH_FORGET)

#: requests the kernel waits on no reply for: FORGET, BATCH_FORGET, NOTIFY_REPLY, and
#: INTERRUPT, whose reply is optional (protocol.md §2, "NR"; §5.4)
NO_REPLY_OPCODES = NOT_AWAITED_OPS

#: bit 0 of a reply's unique marks the answer to an INTERRUPT
INT_REQ_BIT = FUSE_INT_REQ_BIT

#: INIT fields the proxy reads or rewrites: name -> (header length, struct, field). The
#: offsets below are these fields' offsets in the frame, as the schemas place them; they are
#: written out because the schemas need construct, whose import would cost more than the
#: rest of a recorder's start-up before the first frame (INIT) can pass. A test derives them
#: from the schemas and fails when one differs (tests/proxy/test_wire.py).
INIT_FIELDS = {
    "INIT_IN_FLAGS": (IN_HEADER_LEN, "fuse_init_in", "flags"),
    "INIT_IN_FLAGS2": (IN_HEADER_LEN, "fuse_init_in", "flags2"),
    "INIT_OUT_MAJOR": (OUT_HEADER_LEN, "fuse_init_out", "major"),
    "INIT_OUT_MINOR": (OUT_HEADER_LEN, "fuse_init_out", "minor"),
    "INIT_OUT_FLAGS": (OUT_HEADER_LEN, "fuse_init_out", "flags"),
    "INIT_OUT_MAX_WRITE": (OUT_HEADER_LEN, "fuse_init_out", "max_write"),
    "INIT_OUT_MAX_PAGES": (OUT_HEADER_LEN, "fuse_init_out", "max_pages"),
    "INIT_OUT_FLAGS2": (OUT_HEADER_LEN, "fuse_init_out", "flags2"),
}
INIT_IN_FLAGS = 52
INIT_IN_FLAGS2 = 56
INIT_OUT_MAJOR = 16
INIT_OUT_MINOR = 20
INIT_OUT_FLAGS = 28
INIT_OUT_MAX_WRITE = 36
INIT_OUT_MAX_PAGES = 44
INIT_OUT_FLAGS2 = 48


#: INIT flags (bits 0-31 in ``flags``)
FLAG_INIT_EXT = int(InitFlag.INIT_EXT)
#: INIT flags2 bits (bit 32 + n of the 64-bit set is bit n of ``flags2``)
FLAG2_PASSTHROUGH = int(InitFlag.PASSTHROUGH) >> 32
FLAG2_OVER_IO_URING = int(InitFlag.OVER_IO_URING) >> 32
#: what a daemon behind a socket cannot do: passthrough needs FUSE_DEV_IOC_BACKING_OPEN on
#: the device, io_uring needs uring commands on it (protocol.md §9)
SOCKET_UNSAFE_FLAGS2 = {
    FLAG2_PASSTHROUGH: "PASSTHROUGH",
    FLAG2_OVER_IO_URING: "OVER_IO_URING",
}


def flag2_names(bits: int) -> str:
    """``PASSTHROUGH|OVER_IO_URING`` for the socket-unsafe bits set in ``bits``."""
    return "|".join(name for bit, name in SOCKET_UNSAFE_FLAGS2.items() if bits & bit)


def without_unsafe_flags2(data: bytes, flags_at: int, flags2_at: int) -> tuple[bytes, int, int]:
    """An INIT request or reply (``flags`` and ``flags2`` at these offsets) with the
    socket-unsafe flags2 bits cleared: ``(frame, flags2 as it was, bits cleared)``. Bits are
    only read where INIT_EXT says flags2 is meant; with nothing to clear the frame is
    ``data`` itself."""
    (flags,) = U32.unpack_from(data, flags_at)
    (flags2,) = U32.unpack_from(data, flags2_at)
    unsafe = flags2 & sum(SOCKET_UNSAFE_FLAGS2) if flags & FLAG_INIT_EXT else 0
    if not unsafe:
        return data, flags2, 0
    out = bytearray(data)
    U32.pack_into(out, flags2_at, flags2 & ~unsafe)
    return bytes(out), flags2, unsafe
