"""A FUSE daemon whose root is a regular file, for mounts on a file (the kernel allows them;
libfuse's ``null`` example mounts on one). Speaks the protocol itself, on the descriptor
given as ``/dev/fd/N``: ``python filefs.py /dev/fd/N [TEXT]``; the file holds TEXT. At the end
of its session it exits with the status in ``FILEFS_EXIT`` (default 0)."""

from __future__ import annotations

import errno
import os
import sys

from fusetrace.protocol.abi import S_IFREG, Opcode
from fusetrace.protocol.encode import encode_reply
from fusetrace.protocol.header import parse_in_header

CONTENT = b"a file mounted on a file\n"


def serve(fd: int, content: bytes) -> None:
    attr = {"ino": 1, "mode": S_IFREG | 0o444, "nlink": 1, "size": len(content), "blksize": 4096}
    while True:
        try:
            data = os.read(fd, 1 << 17)
        except OSError as e:
            if e.errno in (errno.ENODEV, errno.ECONNRESET):
                return
            raise
        if not data:
            return
        h = parse_in_header(data)
        op, u = h.opcode, h.unique
        body: dict | None = None
        error = 0
        if op == Opcode.INIT:
            body = {"major": 7, "minor": 31, "max_write": 65536, "max_readahead": 65536}
        elif op == Opcode.GETATTR:
            body = {"attr_valid": 1, "attr": attr}
        elif op == Opcode.OPEN:
            body = {"fh": 1}
        elif op == Opcode.READ:  # fuse_read_in: fh, offset, size
            offset = int.from_bytes(data[48:56], "little")
            size = int.from_bytes(data[56:60], "little")
            os.write(fd, _reply(u, content[offset : offset + size]))
            continue
        elif op in (Opcode.FORGET, Opcode.BATCH_FORGET, Opcode.INTERRUPT):
            continue
        elif op in (Opcode.FLUSH, Opcode.RELEASE, Opcode.DESTROY):
            os.write(fd, _reply(u))
            continue
        else:
            error = -errno.ENOSYS
        os.write(fd, encode_reply(op, body, unique=u, error=error))


def _reply(unique: int, payload: bytes = b"") -> bytes:
    """A successful reply of ``payload`` as it is (READ data, or nothing)."""
    head = (16 + len(payload)).to_bytes(4, "little") + bytes(4) + unique.to_bytes(8, "little")
    return head + payload


if __name__ == "__main__":
    text = sys.argv[2].encode() if len(sys.argv) > 2 else CONTENT
    serve(int(sys.argv[1].rsplit("/", 1)[1]), text)
    sys.exit(int(os.environ.get("FILEFS_EXIT", "0")))
