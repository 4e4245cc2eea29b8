"""A daemon that never answers one opcode: for the step timeout of ``fusetrace conform``.

Usage: hangfs.py /dev/fd/N [OPCODE]   (behind ``fusetrace record``; ``{}`` on its command line)

Built on the tracker tests' deliberately faulty daemon: it answers INIT, GETATTR of the root
and LOOKUP (ENOENT) like that one, refuses the rest with ENOSYS, and swallows every request
of OPCODE (default STATFS).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from fusetrace.protocol.abi import Opcode  # noqa: E402
from fusetrace.protocol.header import parse_in_header  # noqa: E402
from tests.tracker.misbehave import Misbehaving  # noqa: E402


class Hang(Misbehaving):
    swallow = Opcode.STATFS

    def _handle(self, data: bytes) -> None:
        if parse_in_header(data).opcode == self.swallow:
            return  # never answered
        if parse_in_header(data).opcode == Opcode.INIT:
            h = parse_in_header(data)
            self._reply(Opcode.INIT, h.unique, {"major": 7, "minor": 45, "max_write": 65536})
            return
        super()._handle(data)


def main() -> int:
    fs = Hang(Path("."))
    if len(sys.argv) > 2:
        fs.swallow = Opcode[sys.argv[2]]
    fs.fd = int(sys.argv[1].rsplit("/", 1)[1])
    fs._serve()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
