"""Frame factories for tests: one shipped set, used by fusetrace's own tests and by anyone
testing a checker rule or a decoder against hand-made conversations.

* :func:`record` wraps raw frame bytes as a :class:`~fusetrace.frame.Frame`.
* :class:`Play` drives a :class:`~fusetrace.tracker.Tracker` through a conversation built with
  the protocol encoders (the same definitions the decoder uses), so a playbook reads like the
  conversation it models::

      p = Play.session()               # INIT answered, as a real mount starts
      u = p.req(Opcode.LOOKUP, {"name": "a"}, nodeid=1)
      p.rep(Opcode.LOOKUP, entry(5), unique=u)
      p.rep(Opcode.LOOKUP, entry(5), unique=u)   # -> FT102

* :class:`Fixture`, :func:`load`, :func:`all_fixtures`: raw-frame fixtures in the ``.hex``
  format of tests/data/frames (``#!key: value`` metadata, ``#=path: json`` expectations, hex).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusetrace.frame import Direction, Frame
from fusetrace.protocol.abi import S_IFDIR, S_IFREG, InitFlag, Opcode
from fusetrace.protocol.encode import (
    encode_interrupt_reply,
    encode_notify,
    encode_reply,
    encode_request,
)
from fusetrace.protocol.session import Negotiated
from fusetrace.tracker import Finding, Tracker


def record(
    index: int,
    direction: Direction,
    data: bytes,
    channel: int = 0,
    t: int | None = None,
    orig: int | None = None,
    result: int | None = None,
) -> Frame:
    """A captured frame: ``t`` defaults to 1000 ns per index, ``orig`` to the data's length."""
    return Frame(
        index,
        t if t is not None else index * 1000,
        direction,
        data,
        orig if orig is not None else len(data),
        channel,
        result=result,
    )


#: what a 6.18 kernel offers (every flag it knows but the DAX/io_uring/virtiofs ones)
OFFERED = InitFlag.from_words(0xFFFFFFFF & ~(1 << 31) & ~(1 << 26) & ~(1 << 27), 0x7FD)
#: what a typical libfuse daemon accepts
ACCEPTED = (
    InitFlag.ASYNC_READ
    | InitFlag.POSIX_LOCKS
    | InitFlag.BIG_WRITES
    | InitFlag.MAX_PAGES
    | InitFlag.DO_READDIRPLUS
    | InitFlag.READDIRPLUS_AUTO
    | InitFlag.INIT_EXT
)


def attr(mode: int = S_IFREG | 0o644, size: int = 0, ino: int = 0) -> dict[str, Any]:
    return {"ino": ino, "mode": mode, "size": size, "nlink": 1, "blksize": 4096}


def entry(
    nodeid: int, mode: int = S_IFREG | 0o644, generation: int = 0, size: int = 0
) -> dict[str, Any]:
    return {"nodeid": nodeid, "generation": generation, "attr": attr(mode, size, nodeid)}


class Play:
    """One tracked connection driven by hand."""

    def __init__(self, **tracker_kw: Any) -> None:
        tracker_kw.setdefault("strict", True)
        self.tracker = Tracker(**tracker_kw)
        self.neg = Negotiated.default()
        self.index = 0
        self.t_ns = 1_700_000_000_000_000_000
        self.next_unique = 2
        self.findings: list[Finding] = []
        self.records: list[Frame] = []
        self.finished = False

    # ---- raw frames -------------------------------------------------------------------
    def feed(
        self,
        direction: Direction,
        data: bytes,
        *,
        channel: int = 0,
        orig_len: int | None = None,
        result: int | None = None,
    ) -> list[Finding]:
        """``result``: the kernel's answer to a daemon frame (0, an errno, None unknown)."""
        rec = Frame(
            self.index,
            self.t_ns,
            direction,
            data,
            len(data) if orig_len is None else orig_len,
            channel,
            result=result,
        )
        self.index += 1
        self.t_ns += 1000
        self.records.append(rec)
        out = self.tracker.feed(rec)
        self.findings.extend(out)
        return out

    def k(self, data: bytes, **kw: Any) -> list[Finding]:
        return self.feed(Direction.INBOUND, data, **kw)

    def d(self, data: bytes, **kw: Any) -> list[Finding]:
        return self.feed(Direction.OUTBOUND, data, **kw)

    # ---- protocol-level helpers -----------------------------------------------------------
    def alloc(self) -> int:
        u = self.next_unique
        self.next_unique += 2
        return u

    def req(
        self,
        opcode: int,
        body: dict[str, Any] | None = None,
        *,
        unique: int | None = None,
        nodeid: int = 1,
        channel: int = 0,
        **kw: Any,
    ) -> int:
        u = self.alloc() if unique is None else unique
        self.k(
            encode_request(opcode, body, unique=u, nodeid=nodeid, negotiated=self.neg, **kw),
            channel=channel,
        )
        return u

    def rep(
        self,
        opcode: int,
        body: dict[str, Any] | None = None,
        *,
        unique: int,
        error: int = 0,
        probe: bool = False,
        channel: int = 0,
        result: int | None = None,
    ) -> list[Finding]:
        return self.d(
            encode_reply(
                opcode, body, unique=unique, error=error, negotiated=self.neg, probe=probe
            ),
            channel=channel,
            result=result,
        )

    def call(
        self, opcode: int, body: dict[str, Any] | None = None, reply: Any = None, **kw: Any
    ) -> int:
        """A request and its successful reply; ``reply`` may be an int error."""
        u = self.req(opcode, body, **kw)
        if isinstance(reply, int):
            self.rep(opcode, unique=u, error=reply)
        else:
            self.rep(opcode, reply, unique=u)
        return u

    def intr_reply(self, target: int, error: int = -11) -> None:
        self.d(encode_interrupt_reply(target | 1, error, self.neg))

    def notify(
        self, code: int, body: dict[str, Any] | None = None, *, result: int | None = None
    ) -> None:
        self.d(encode_notify(code, body, negotiated=self.neg), result=result)

    def init(
        self,
        *,
        offered: int = OFFERED,
        reply: dict[str, Any] | None = None,
        unique: int = 2,
    ) -> None:
        self.next_unique = max(self.next_unique, unique + 2)
        o1, o2 = InitFlag(offered).words()
        self.req(
            Opcode.INIT,
            {"major": 7, "minor": 45, "max_readahead": 131072, "flags": o1, "flags2": o2},
            unique=unique,
            nodeid=0,
        )
        a1, a2 = ACCEPTED.words()
        body = {
            "major": 7,
            "minor": 45,
            "max_readahead": 131072,
            "flags": a1,
            "flags2": a2,
            "max_background": 12,
            "congestion_threshold": 9,
            "max_write": 131072,
            "time_gran": 1,
            "max_pages": 32,
        }
        body.update(reply or {})
        self.rep(Opcode.INIT, body, unique=unique)

    @classmethod
    def session(cls, **tracker_kw: Any) -> Play:
        p = cls(**tracker_kw)
        p.init()
        return p

    def lookup(self, nodeid: int, name: str = "f", *, parent: int = 1, **kw: Any) -> int:
        return self.call(Opcode.LOOKUP, {"name": name}, entry(nodeid, **kw), nodeid=parent)

    def mkdir(self, nodeid: int, name: str = "d") -> int:
        return self.call(
            Opcode.MKDIR, {"mode": 0o755, "name": name}, entry(nodeid, S_IFDIR | 0o755)
        )

    def forget(self, nodeid: int, n: int = 1) -> None:
        self.req(Opcode.FORGET, {"nlookup": n}, nodeid=nodeid)

    def open(self, nodeid: int, fh: int, open_flags: int = 0) -> int:
        return self.call(
            Opcode.OPEN, {"flags": 0}, {"fh": fh, "open_flags": open_flags}, nodeid=nodeid
        )

    def release(self, nodeid: int, fh: int, opcode: int = Opcode.RELEASE) -> int:
        return self.call(opcode, {"fh": fh}, None, nodeid=nodeid)

    # ---- results ----------------------------------------------------------------------------
    def finish(self) -> list[Finding]:
        out = self.tracker.finish()
        self.findings.extend(out)
        self.finished = True
        return out

    @property
    def codes(self) -> set[str]:
        return {f.rule for f in self.findings}


# ---- raw-frame fixtures -------------------------------------------------------------------
@dataclass
class Fixture:
    stem: str
    kind: str
    op: int
    negotiated: Negotiated
    data: bytes
    expect: dict[str, Any]


def load(path: Path) -> Fixture:
    meta: dict[str, str] = {}
    expect: dict[str, Any] = {}
    hexes: list[str] = []
    for line in path.read_text().splitlines():
        if line.startswith("#!"):
            key, value = line[2:].split(":", 1)
            meta[key.strip()] = value.strip()
        elif line.startswith("#="):
            key, value = line[2:].split(":", 1)
            expect[key.strip()] = json.loads(value)
        else:
            hexes.append(line.split("#", 1)[0])
    neg = Negotiated(
        byte_order=meta["byte_order"],
        minor=int(meta["minor"]),
        flags=InitFlag(int(meta["flags"])),
    )
    data = bytes.fromhex("".join(hexes))
    return Fixture(path.stem, meta["kind"], int(meta["op"]), neg, data, expect)


def all_fixtures(directory: Path) -> list[Fixture]:
    """Every ``*.hex`` fixture in ``directory`` (the project's are in tests/data/frames)."""
    return [load(p) for p in sorted(directory.glob("*.hex"))]


def lookup(decoded: Any, path: str) -> Any:
    """A value by dotted path: 'header.unique', 'attr.mode', 'entries.1.name'."""
    obj: Any = decoded
    parts = path.split(".")
    if parts[0] == "header":
        obj = decoded.header._asdict()
        parts = parts[1:]
    else:
        obj = decoded.body
    for part in parts:
        obj = obj[int(part)] if isinstance(obj, list) else obj[part]
    return obj
