"""Loading the raw-frame fixtures of tests/data/frames (see make_fixtures.py there)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusetrace.protocol.abi import InitFlag
from fusetrace.protocol.session import Negotiated

FRAMES = Path(__file__).resolve().parent.parent / "data" / "frames"


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


def all_fixtures() -> list[Fixture]:
    return [load(p) for p in sorted(FRAMES.glob("*.hex"))]


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
