"""What a live reply must have in common with the recorded one (pure).

Error codes are always compared. Payloads are compared field by field, except the fields
that legitimately differ from one run of a daemon to the next; those are ignored by default
(:data:`DEFAULT_IGNORE`, each with its reason). ``--ignore`` adds patterns, ``--strict``
drops the defaults. Node ids and file handles are never compared by value: the engine
checks them through its recorded → live mapping instead.

A pattern names fields by whole dotted parts of their names: ``atime`` matches every access
time (``entry.attr.atime``, ``statx.stat.atime.tv_sec``), ``attr.size`` the size in every
attribute, ``entry.generation`` only the generation of an entry. File data (READ, READLINK, xattr
values) is compared byte for byte and reported with the first differing offset; directory
listings are compared by names and types, never by cookies, as a whole listing and as a set
unless strict (:func:`compare_listing`). Fields that follow the backing store's allocation
(:data:`ALLOCATION`: blocks, statfs counters) are the "allocation" policy, left out by
default.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from fusetrace.protocol.abi import errno_name
from fusetrace.replay.codec import Dirent, ReplyBody

#: pattern -> why it differs between runs of the same daemon on the same data.
DEFAULT_IGNORE: dict[str, str] = {
    "atime": "access times move with every run",
    "atimensec": "access times move with every run",
    "mtime": "modification times depend on when the data was written",
    "mtimensec": "modification times depend on when the data was written",
    "ctime": "change times depend on when the data was written",
    "ctimensec": "change times depend on when the data was written",
    "btime": "birth times depend on when the data was written",
    "entry_valid": "cache validity is the daemon's tuning, not its data",
    "entry_valid_nsec": "cache validity is the daemon's tuning, not its data",
    "attr_valid": "cache validity is the daemon's tuning, not its data",
    "attr_valid_nsec": "cache validity is the daemon's tuning, not its data",
    "generation": "inode generations are chosen per run",
    "attr.ino": "inode numbers differ when the backing store differs",
    "stat.ino": "inode numbers differ when the backing store differs",
    "padding": "padding carries no meaning",
    "dummy": "padding carries no meaning",
    "unused": "padding carries no meaning",
    "spare": "padding carries no meaning",
}

#: the "allocation" policy: fields that follow how the backing store allocated space and
#: inodes, not what the files hold; left out unless --compare-allocation (or --strict)
ALLOCATION: dict[str, str] = {
    "attr.blocks": "blocks allocated depend on the backing store's allocator and history",
    "stat.blocks": "blocks allocated depend on the backing store's allocator and history",
    "st.blocks": "file system counters change with everything else on it",
    "st.bfree": "file system counters change with everything else on it",
    "st.bavail": "file system counters change with everything else on it",
    "st.files": "file system counters change with everything else on it",
    "st.ffree": "file system counters change with everything else on it",
}

_INDEX = re.compile(r"\[\d+\]")


def _matches(path: str, pattern: str) -> bool:
    """``pattern`` names ``path`` or a struct above it by whole dotted parts, anywhere in
    the path; array indexes are ignored. ``atime`` matches ``entry.attr.atime`` and
    ``statx.stat.atime.tv_sec``, ``unused`` matches ``init.unused[3]``."""
    return f".{pattern}." in f".{_INDEX.sub('', path)}."


@lru_cache(maxsize=4096)
def _ignored(patterns: tuple[str, ...], path: str) -> bool:
    return any(_matches(path, p) for p in patterns)


@dataclass(frozen=True)
class MatchPolicy:
    """Which reply fields must be equal. Build it with :meth:`build`."""

    ignore: tuple[str, ...] = tuple(DEFAULT_IGNORE) + tuple(ALLOCATION)
    #: compare everything, and directory listings in order
    strict: bool = False

    @classmethod
    def build(
        cls, ignore: Iterable[str] = (), *, strict: bool = False, allocation: bool = False
    ) -> MatchPolicy:
        """``allocation``: compare the allocation fields (:data:`ALLOCATION`) too."""
        extra = tuple(p.strip() for item in ignore for p in item.split(",") if p.strip())
        base: tuple[str, ...] = ()
        if not strict:
            base = tuple(DEFAULT_IGNORE) + (() if allocation else tuple(ALLOCATION))
        return cls(ignore=base + extra, strict=strict)

    def ignores(self, path: str) -> bool:
        return _ignored(self.ignore, path)


@dataclass(frozen=True)
class FieldDiff:
    """One field that differs: its dotted name and both values, already rendered."""

    field: str
    recorded: str
    live: str


def error_name(error: int) -> str:
    """``0`` → ``"0"``; ``-2`` → ``"-2 ENOENT"``."""
    if error == 0:
        return "0"
    name = errno_name(-error)
    return f"{error} {name}" if not name.isdigit() else str(error)


def render(value: Any) -> str:
    if isinstance(value, bytes):
        text = value[:32].hex()
        return f"{len(value)} bytes {text}{'…' if len(value) > 32 else ''}"
    return str(value)


def _first_difference(a: bytes, b: bytes) -> int | None:
    """Offset of the first differing byte within the common length, None if none."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return None
    pos, step = 0, 4096
    while a[pos : pos + step] == b[pos : pos + step]:
        pos += step
    return next(i for i in range(pos, min(pos + step, n)) if a[i] != b[i])


def compare_data(
    recorded: bytes, live: bytes, *, recorded_len: int | None = None, field: str = "data"
) -> list[FieldDiff]:
    """Byte-for-byte comparison. ``recorded_len`` is the real length when the recording kept
    only a prefix (snap length): then only that prefix is compared, and the lengths."""
    full = len(recorded) if recorded_len is None else recorded_len
    diffs: list[FieldDiff] = []
    first = _first_difference(recorded, live)
    if first is not None:
        diffs.append(
            FieldDiff(
                field,
                f"{full} bytes, byte {first} = {recorded[first]:#04x}",
                f"{len(live)} bytes, first difference at offset {first} (byte {live[first]:#04x})",
            )
        )
    elif full != len(live):
        diffs.append(FieldDiff(f"{field}.length", f"{full} bytes", f"{len(live)} bytes"))
    return diffs


def _dirent_key(d: Dirent) -> tuple[bytes, int]:
    return (d.name, d.type)


def compare_dirents(recorded: list[Dirent], live: list[Dirent]) -> list[FieldDiff]:
    """Compare listings by (name, type), in order; cookies and inode numbers are ignored."""
    rec = [_dirent_key(d) for d in recorded]
    liv = [_dirent_key(d) for d in live]
    if rec == liv:
        return []
    diffs: list[FieldDiff] = []
    rec_names = {n for n, _ in rec}
    live_names = {n for n, _ in liv}
    missing = [n for n, _ in rec if n not in live_names]
    extra = [n for n, _ in liv if n not in rec_names]

    def names(items: list[bytes]) -> str:
        shown = ", ".join(n.decode("utf-8", "backslashreplace") for n in items[:8])
        return shown + (f", … ({len(items)} in all)" if len(items) > 8 else "")

    if missing or extra:
        diffs.append(
            FieldDiff(
                "entries",
                f"{len(rec)} entries" + (f"; only here: {names(missing)}" if missing else ""),
                f"{len(liv)} entries" + (f"; only here: {names(extra)}" if extra else ""),
            )
        )
    rec_types = dict(rec)
    for name, typ in liv:
        if name in rec_types and rec_types[name] != typ:
            diffs.append(
                FieldDiff(
                    f"entries[{name.decode('utf-8', 'backslashreplace')}].type",
                    str(rec_types[name]),
                    str(typ),
                )
            )
    if not diffs:
        diffs.append(
            FieldDiff("entries.order", names([n for n, _ in rec]), names([n for n, _ in liv]))
        )
    return diffs


def compare_listing(
    recorded: list[Dirent], live: list[Dirent], *, strict: bool = False
) -> list[FieldDiff]:
    """Compare a whole directory listing: as sets of (name, type) by default (the order is
    the daemon's choice: cryfs lists in a random order), in order when ``strict``."""
    if strict:
        return compare_dirents(recorded, live)
    rec = sorted(set(map(_dirent_key, recorded)))
    liv = sorted(set(map(_dirent_key, live)))
    if rec == liv:
        return []
    return compare_dirents([Dirent(n, t, 0) for n, t in rec], [Dirent(n, t, 0) for n, t in liv])


def compare_bodies(
    policy: MatchPolicy,
    recorded: ReplyBody,
    live: ReplyBody,
    *,
    mapped: Iterable[str] = (),
    recorded_len: int | None = None,
) -> list[FieldDiff]:
    """Compare two successful reply bodies of the same opcode under ``policy``.

    ``mapped`` names the fields the engine compares through its id mapping (skipped here);
    ``recorded_len`` is the recorded payload's real length if the capture cut it short.
    """
    diffs: list[FieldDiff] = []
    skip = set(mapped)
    if recorded.data is not None or live.data is not None:
        diffs += compare_data(recorded.data or b"", live.data or b"", recorded_len=recorded_len)
    cut = recorded_len is not None
    if cut:
        # the recording kept only a prefix: compare what it kept, and the data length
        paths = set(recorded.fields) & set(live.fields)
    else:
        paths = set(recorded.fields) | set(live.fields)
    for path in sorted(paths):
        if path in skip or policy.ignores(path):
            continue
        rv = recorded.fields.get(path, "(absent)")
        lv = live.fields.get(path, "(absent)")
        if rv != lv:
            diffs.append(FieldDiff(path, render(rv), render(lv)))
    for problem in live.problems:
        if cut or problem in recorded.problems:
            continue
        if "padding" in problem and policy.ignores("padding"):
            # uninitialised padding (mergerfs' dirents) varies from run to run
            continue
        diffs.append(FieldDiff("decode", "(clean)", problem))
    return diffs


def compare_errors(recorded: int, live: int) -> list[FieldDiff]:
    if recorded == live:
        return []
    return [FieldDiff("error", error_name(recorded), error_name(live))]
