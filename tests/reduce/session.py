"""Hand-built sessions (requests and replies made with the protocol encoder) for the reduce
and redact tests."""

from __future__ import annotations

from typing import Any

from fusetrace.frame import Direction, Frame
from fusetrace.protocol.abi import S_IFDIR, S_IFREG, Opcode
from fusetrace.protocol.encode import encode_notify, encode_reply, encode_request

INIT_IN = {"major": 7, "minor": 45, "max_readahead": 131072, "flags": 0, "flags2": 0}
INIT_OUT = {"major": 7, "minor": 45, "max_readahead": 131072, "max_write": 65536}


class Session:
    """Appends frames in order; ``call`` writes a request and its reply."""

    def __init__(self) -> None:
        self.records: list[Frame] = []
        self.unique = 0

    def _add(self, direction: Direction, data: bytes) -> int:
        i = len(self.records)
        self.records.append(Frame(i, 1_000_000 * (i + 1), direction, data, len(data)))
        return i

    def send(self, op: int, body: dict[str, Any] | None = None, nodeid: int = 0, **kw: Any) -> int:
        self.unique += 2
        return self._add(
            Direction.INBOUND, encode_request(op, body, unique=self.unique, nodeid=nodeid, **kw)
        )

    def call(
        self,
        op: int,
        body: dict[str, Any] | None = None,
        nodeid: int = 0,
        reply: dict[str, Any] | None = None,
        error: int = 0,
        **kw: Any,
    ) -> int:
        """The request's frame index (its reply follows it)."""
        i = self.send(op, body, nodeid, **kw)
        self._add(Direction.OUTBOUND, encode_reply(op, reply, unique=self.unique, error=error))
        return i

    def notify(self, code: int, body: dict[str, Any]) -> int:
        return self._add(Direction.OUTBOUND, encode_notify(code, body))

    def reply_again(self, op: int, unique: int, error: int) -> int:
        return self._add(Direction.OUTBOUND, encode_reply(op, None, unique=unique, error=error))

    # ---- shorthands ---------------------------------------------------------------------
    def init(self) -> int:
        return self.call(Opcode.INIT, INIT_IN, reply=INIT_OUT)

    def lookup(self, parent: int, name: str, nodeid: int, *, directory: bool = False) -> int:
        mode = (S_IFDIR | 0o755) if directory else (S_IFREG | 0o644)
        entry = {"nodeid": nodeid, "attr": {"ino": nodeid, "mode": mode, "nlink": 1}}
        return self.call(Opcode.LOOKUP, {"name": name}, parent, entry)

    def open(self, nodeid: int, fh: int, op: int = Opcode.OPEN) -> int:
        return self.call(op, {"flags": 0}, nodeid, {"fh": fh})

    def read(self, nodeid: int, fh: int, data: bytes) -> int:
        return self.call(Opcode.READ, {"fh": fh, "offset": 0, "size": 4096}, nodeid,
                         {"data": data})  # fmt: skip

    def release(self, nodeid: int, fh: int, op: int = Opcode.RELEASE) -> int:
        return self.call(op, {"fh": fh}, nodeid)

    def forget(self, nodeid: int, n: int) -> int:
        return self.send(Opcode.FORGET, {"nlookup": n}, nodeid)
